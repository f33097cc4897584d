"""What the fused head (--features both) costs beside the encoder alone, in one process on the same laws: TF-IDF
vectors (computed once per law, then cached) against tokenizing; training batches that carry the vectors against
batches without them, and evaluation through the fused head against the encoder's own head (each timed in turns);
the fit after each epoch (the training laws' embedding pass and the per-label SVMs) against a training epoch; peak
memory of the fit and of evaluation (the process's high-water mark, reset before each); checkpoint sizes.

    python bench/fused_cost.py --label-column descriptors --max-train-samples 2000 --max-eval-samples 1000
"""
import argparse
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data import build_loader, load_examples  # noqa: E402
from data.tokenized import tokenize  # noqa: E402
from engine.config import make_config  # noqa: E402
from engine.training.head_fit import fit_fused_head, fit_vocabulary  # noqa: E402
from engine.predictions import collect_probabilities  # noqa: E402
from engine.training.loop import accumulate_gradients  # noqa: E402
from engine.losses import training_loss  # noqa: E402
from engine.training.run_config import for_device  # noqa: E402
from engine.training.state import build_train_state  # noqa: E402
from model.encoders import load_tokenizer  # noqa: E402


def high_water_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def reset_high_water() -> float:
    """Resets the process's peak RSS to its RSS now (Linux: clear_refs 5); returns it in MB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return high_water_mb()


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "eurlex57k"))
    p.add_argument("--label-column", default="domains")
    p.add_argument("--model", default="minilm")
    p.add_argument("--max-train-samples", type=int, default=2000)
    p.add_argument("--max-eval-samples", type=int, default=1000)
    p.add_argument("--train-batches", type=int, default=12, help="training batches timed per round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = make_config(model=args.model, data=args.data, label_column=args.label_column, features="both",
                      max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples, cache_dir="")
    device = torch.device("cpu")
    cfg = for_device(cfg, device)
    splits, names = load_examples(args.data, label_column=args.label_column, max_train_samples=args.max_train_samples,
                                  max_eval_samples=args.max_eval_samples, log=lambda *a: None)
    train, val = splits["train"], splits["validation"]
    tokenizer = load_tokenizer(args.model)
    seconds = {"tokenize": timed(lambda: tokenize(train, tokenizer, cfg["max_length"], len(names)))}
    vocabulary = None

    def fit():
        nonlocal vocabulary
        vocabulary = fit_vocabulary(train.texts, cfg["tfidf_terms"], log=lambda *a: None)

    seconds["vocabulary"] = timed(fit)
    seconds["vectors"] = timed(lambda: vocabulary.rows(train.texts))
    train_set, val_set = (tokenize(s, tokenizer, cfg["max_length"], len(names), tfidf=vocabulary) for s in (train, val))
    pad = tokenizer.pad_token_id
    loaders = {name: build_loader(ex, cfg["batch_size"], pad, True, cfg["seed"]) for name, ex in
               (("with", train_set), ("without", train_set.without_tfidf()))}
    state = build_train_state(cfg, len(names), 1000, device, len(vocabulary))
    loss_fn, _, prior = training_loss(cfg, train.labels, len(names), device)
    print(f"{args.label_column}: {len(train)} training laws, {len(val)} validation laws, {len(names)} labels, "
          f"{len(vocabulary):,} TF-IDF terms; {torch.get_num_threads()} threads, amp {cfg['amp_dtype']}")

    train_time = {"with": 0.0, "without": 0.0}
    docs = {"with": 0, "without": 0}
    for round_ in range(args.rounds + 1):  # the first round warms up, untimed
        for name in ("without", "with"):
            state.model.train()
            batches = iter(loaders[name])
            for _ in range(args.train_batches if round_ else 2):
                batch = next(batches)
                start = time.perf_counter()
                accumulate_gradients(state.model, batch, loss_fn, device, state.amp_dtype)
                state.optimizer.step()
                state.optimizer.zero_grad(set_to_none=True)
                if round_:
                    train_time[name] += time.perf_counter() - start
                    docs[name] += len(batch["labels"])
    train_ms = {name: 1000 * train_time[name] / docs[name] for name in docs}

    fit_loader = build_loader(train_set, cfg["eval_batch_size"], pad, False)
    before = reset_high_water()
    fitted = fit_fused_head(state.model, fit_loader, train_set.tfidf, train.labels, cfg, prior, device,
                            state.amp_dtype, log=lambda *a: None)
    fit_peak = high_water_mb() - before

    val_loader = build_loader(val_set, cfg["eval_batch_size"], pad, False)
    eval_time, eval_peak = {"encoder": 0.0, "fused": 0.0}, {"encoder": 0.0, "fused": 0.0}
    for _ in range(args.rounds):
        for name in ("encoder", "fused"):
            state.model.fused.ready = name == "fused"
            before = reset_high_water()
            eval_time[name] += timed(lambda: collect_probabilities(state.model, val_loader, device, state.amp_dtype))
            eval_peak[name] = max(eval_peak[name], high_water_mb() - before)
    eval_ms = {name: 1000 * eval_time[name] / (args.rounds * len(val)) for name in eval_time}

    weights = state.model.state_dict()
    fused_mb = sum(t.numel() * t.element_size() for k, t in weights.items() if k.startswith("fused.")) / 2 ** 20
    with tempfile.TemporaryDirectory() as folder:
        sizes = {}
        for name, kept in (("encoder", {k: v for k, v in weights.items() if not k.startswith("fused.")}),
                           ("both", {**weights, "tfidf": vocabulary.state()})):
            torch.save(kept, os.path.join(folder, name))
            sizes[name] = os.path.getsize(os.path.join(folder, name)) / 2 ** 20

    n = len(train)
    print(f"TF-IDF vectors: {1000 * seconds['vectors'] / n:.2f} ms a law (tokenizing: "
          f"{1000 * seconds['tokenize'] / n:.2f} ms), vocabulary {seconds['vocabulary']:.1f} s; once per law, cached")
    print(f"training, ms a law: encoder batches {train_ms['without']:.1f}, batches with TF-IDF vectors "
          f"{train_ms['with']:.1f} ({train_ms['with'] / train_ms['without']:.3f}x)")
    print(f"evaluation, ms a law: encoder's head {eval_ms['encoder']:.2f}, fused head {eval_ms['fused']:.2f} "
          f"({eval_ms['fused'] / eval_ms['encoder']:.3f}x); peak memory +{eval_peak['encoder']:.0f} MB and "
          f"+{eval_peak['fused']:.0f} MB")
    epoch = train_ms["without"] * n / 1000
    print(f"the fit after an epoch: embedding pass {fitted['embed_seconds']:.1f} s "
          f"({1000 * fitted['embed_seconds'] / n:.1f} ms a law), SVMs {fitted['fit_seconds']:.1f} s; together "
          f"{(fitted['embed_seconds'] + fitted['fit_seconds']) / epoch:.2f}x a training epoch of these laws "
          f"({epoch:.0f} s); peak memory of the fit +{fit_peak:.0f} MB")
    print(f"fused head weights {fused_mb:.0f} MB; checkpoint weights {sizes['encoder']:.0f} MB (encoder) -> "
          f"{sizes['both']:.0f} MB (fused, with the vocabulary)")


if __name__ == "__main__":
    main()
