"""Training and evaluation speed, side by side in one run: the HF Trainer as the notebook used it (a), the
Trainer tuned (b), this codebase with its defaults (c, `--long-doc truncate`) and with `--long-doc chunk` (d, every
window of a longer document; `--variants abcd`), on the same data, model, batch size and max length; (e) is (d) with
each batch's windows in one padded tensor and one backward pass, as before the window groups and parts of
data/batching.py, and (f) is (d) with its groups but without parts (`--variants cdef`).

    python bench/speed.py                           # SemEval tweets, MiniLM, batch 16, max length 300
    python bench/speed.py --rounds 1 --steps 60     # quicker (and noisier)
    python bench/speed.py --isa avx2                # as on a CPU without AVX-512 (and without fast bf16)
    python bench/speed.py --data ../shared/data/eurlex57k --label-column domains --train-examples 2000 \
        --eval-examples 400 --variants abcde   # EU laws

Each measurement runs in a fresh process (so peak memory is its own), in alternation a, b, c, b, c, b, c
((a) is 20x slower and one round of it is enough); the best round of each counts, as noise only slows a run
(on a shared 2-core machine one variant's rounds spread by 10%). Prints samples/s, real (non-pad) tokens/s,
peak memory, the ratios c/a and c/b, and MFU: model FLOP/s on the real tokens of the examples timed over this
machine's dense matmul peak for the dtype in use, measured in the same run; and, for ours, what share of that
matmul's rate one encoder layer's linear products alone reach at a batch's shapes, timed right after it.
`--profile-out` writes where ours spends a training step and an evaluation batch.
"""
import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
VARIANTS = {"a": "Trainer, notebook (max_length padding, fp32)",
            "b": "Trainer, tuned (dynamic padding, group_by_length, bf16 if fast)",
            "c": "this codebase, defaults (--long-doc truncate)",
            "d": "this codebase, --long-doc chunk (every window; samples are documents)",
            "e": "as (d), each batch's windows in one padded tensor (no window groups, no parts)",
            "f": "as (d), each batch in one backward pass (window groups, no parts)"}
COMPARED = {"c": "ab", "d": "abcef", "e": "abc", "f": "abc"}  # the ratios printed: (c)/(a), (c)/(b), (d)/(a), ...


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # the names printed -> torch's


def best_seconds(work, device, repeats: int) -> float:
    """The fastest of `repeats` runs of `work()` (after one untimed), waiting for a GPU to finish each."""
    import torch

    def once() -> float:
        start = time.perf_counter()
        work()
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    once()
    return min(once() for _ in range(repeats))


def matmul_peak(dtype_name: str, device: str, size: int = 4096, repeats: int = 5) -> float:
    """FLOP/s of a dense size^3 matmul in the dtype, best of `repeats`."""
    import torch

    a, b = (torch.randn(size, size, dtype=getattr(torch, DTYPES[dtype_name]), device=device) for _ in range(2))
    return 2 * size ** 3 / best_seconds(lambda: a @ b, device, repeats)


def model_flops(encoder, lengths) -> float:
    """Forward FLOPs over examples of these real (unpadded) lengths: 2 per weight per token (embeddings
    excluded) plus the attention products (4 * length^2 * hidden per layer)."""
    import numpy as np

    embedding_params = sum(p.numel() for p in encoder.get_input_embeddings().parameters())
    embedding_params += sum(p.numel() for n, p in encoder.named_parameters() if "embeddings" in n and "word" not in n)
    weights = sum(p.numel() for p in encoder.parameters()) - embedding_params
    cfg = encoder.config
    lengths = np.asarray(lengths, dtype=np.float64)
    return float(np.sum(2 * weights * lengths + 4 * lengths ** 2 * cfg.hidden_size * cfg.num_hidden_layers))


def work(encoder, lengths, prefix, samples=None) -> dict:
    """What a timed phase computed: its examples (`samples`, else one per sequence), their sequences' real
    tokens and forward FLOPs."""
    return {f"{prefix}_samples": len(lengths) if samples is None else samples, f"{prefix}_tokens": int(sum(lengths)),
            f"{prefix}_flops": model_flops(encoder, lengths)}


def load_data(args):
    from data import load_examples

    splits, names = load_examples(args.data, label_column=args.label_column, val_fraction=0.1, split_seed=0,
                                  log=lambda *a: None)
    train = splits["train"] if args.train_examples is None else splits["train"].select(
        range(min(args.train_examples, len(splits["train"]))))
    return train, splits["validation"].select(range(min(args.eval_examples, len(splits["validation"])))), names


def run_trainer(args, variant) -> dict:
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainerCallback,
                              TrainingArguments, default_data_collator)
    from transformers.utils import logging

    from model.cpu_fast import cpu_bf16_is_fast
    from model.encoders import load_tokenizer, resolve_model

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    train, val, names = load_data(args)
    tokenizer = load_tokenizer(args.model)
    tuned = variant == "b"
    cuda = torch.cuda.is_available()
    bf16 = tuned and (torch.cuda.is_bf16_supported() if cuda else cpu_bf16_is_fast())

    def as_dataset(examples):
        """A list of feature dicts, as the notebook's `datasets.map` made them (the Trainer takes any sequence)."""
        multi_hot = np.zeros((len(examples), len(names)), dtype=np.float32)
        for i, labels in enumerate(examples.labels):
            multi_hot[i, labels] = 1
        encoded = tokenizer(examples.texts, truncation=True, max_length=args.max_length,
                            padding=False if tuned else "max_length")
        return [{**{key: values[i] for key, values in encoded.items()}, "labels": multi_hot[i].tolist()}
                for i in range(len(examples))]

    train_ds, val_ds = as_dataset(train), as_dataset(val)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(args.model), num_labels=len(names), problem_type="multi_label_classification",
        dtype=torch.float32)  # fp32 master weights, as ours, whatever the folder stores (bench/gpu_payload.py: fp16)
    steps = args.steps if tuned else args.notebook_steps
    marks = {}

    collated = []  # real lengths of every batch the Trainer collates, in order

    def counting(collate):
        def collate_and_count(features):
            batch = collate(features)
            collated.append(batch["attention_mask"].sum(1).tolist())
            return batch
        return collate_and_count

    class Clock(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            if state.global_step == args.warmup_steps:
                marks["start"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.eval_batch_size,
            max_steps=args.warmup_steps + steps, learning_rate=5e-5, weight_decay=0.01, bf16=bf16, use_cpu=not cuda,
            train_sampling_strategy="group_by_length" if tuned else "random", report_to="none", save_strategy="no",
            eval_strategy="no", logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=0)
        collator = counting(DataCollatorWithPadding(tokenizer) if tuned else default_data_collator)
        trainer = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=collator, callbacks=[Clock()])
        trainer.train()
        train_seconds = time.perf_counter() - marks["start"]
        eval_ds = val_ds[:args.eval_examples]
        trainer.predict(eval_ds[:args.eval_batch_size])
        start = time.perf_counter()
        trainer.predict(eval_ds)
        eval_seconds = time.perf_counter() - start
    # batch i of the collation order is trained at step i + 1; the clock ran over steps warmup + 1 ... warmup + steps
    timed = [n for batch in collated[args.warmup_steps:args.warmup_steps + steps] for n in batch]
    evaluated = [sum(row["attention_mask"]) for row in eval_ds]
    return {"train_seconds": train_seconds, "eval_seconds": eval_seconds, "dtype": "bf16" if bf16 else "fp32",
            "attention": model.config._attn_implementation, **work(model.base_model, timed, "train"), **work(model.base_model, evaluated, "eval")}


class FirstBatches:
    """The first `n` batches of a loader (collation included), as train_one_epoch expects a sized loader."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)

    def __len__(self):
        return self.n


def ours_training(args, variant: str):
    """(c), (d), (e) or (f) built by the trainer's own functions (its data, kernels, state and loss) -> the config, the
    data, the state, `run_steps(n)` (the next n batches trained, as a part of its own) and `timed`, the real
    lengths of every window trained so far."""
    import torch

    from engine.config import make_config, parse_flags, quiet
    from engine.settings import TRAIN_FIELDS
    from engine.training.loop import train_one_epoch
    from engine.losses import training_loss
    from engine.training.run_config import resolved_for_machine
    from engine.training.run_data import build_data, read_run_examples
    from engine.training.state import build_train_state
    from model import cpu_fast
    from model.encoders import load_encoder_config, load_tokenizer

    # the encoder's loop, as the Trainer runs it (bench/fused_cost.py measures what the fused head adds)
    cfg = make_config(**{"features": "encoder", **parse_flags(TRAIN_FIELDS, args.ours_flags), "model": args.model,
                         "data": args.data,
                         "max_length": args.max_length, "batch_size": args.batch_size,
                         "eval_batch_size": args.eval_batch_size, "max_eval_samples": args.eval_examples,
                         "max_train_samples": args.train_examples,
                         "label_column": args.label_column, "long_doc": "truncate" if variant == "c" else "chunk",
                         "cache_dir": ""})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    examples, tokenizer = read_run_examples(cfg, None, quiet), load_tokenizer(cfg["model"])
    cfg = resolved_for_machine(cfg, device, 1, tokenizer, load_encoder_config(cfg["model"]), len(examples.label_names))
    cpu_fast.prepare(cfg, device)
    data = build_data(cfg, examples, tokenizer, device, log=quiet)
    if variant in "ef":
        data.train_loader.collate_fn.part_tokens = None
    if variant == "e":
        for collate in (data.train_loader.collate_fn, data.val_loader.collate_fn):
            collate.group_tokens = None
    torch.manual_seed(cfg["seed"])
    state = build_train_state(cfg, len(data.label_names), args.warmup_steps + args.steps, device)
    state.wrap(False, cfg["compiled"])
    loss_fn, _, _ = training_loss(cfg, data.splits["train"].labels, len(data.label_names), device)
    timed = []  # real lengths of the trained windows

    def counted(iterator):
        for batch in iterator:
            for part in batch.get("parts", [batch]):
                timed.extend(part["attention_mask"].sum(1).tolist())  # every window's tokens, when chunked
            yield batch

    batches = counted(iter(data.train_loader))  # consecutive FirstBatches continue where the last one stopped

    def run_steps(n):  # each a part of its own: its counts are its own
        chunk = FirstBatches(batches, n)
        state.progress.update(batches_done=0, examples_done=0, tokens_done=0)
        return train_one_epoch(state, chunk, loss_fn, clip_grad=cfg["clip_grad"], log_every=10 ** 9)

    return cfg, data, state, run_steps, timed


def run_ours(args, variant: str) -> dict:
    """(c), (d), (e) or (f), timed."""
    import numpy as np

    from engine.predictions import collect_probabilities

    cfg, data, state, run_steps, timed = ours_training(args, variant)
    model, amp_dtype, device = state.model, state.amp_dtype, next(state.model.parameters()).device
    val_loader, val_set = data.val_loader, data.val_loader.dataset
    run_steps(args.warmup_steps)
    timed.clear()
    stats = run_steps(args.steps)
    timed_lengths = list(timed)  # the profiled steps below are not timed
    if args.profile_out:
        def train_steps():
            run_steps(args.profile_steps)
            return args.profile_steps

        def evaluate_batches():
            collect_probabilities(state.eval_model, FirstBatches(val_loader, args.profile_steps), device, amp_dtype)
            return min(args.profile_steps, len(val_loader))

        try:
            lines = profile(train_steps, "training steps", device)
            lines += profile(evaluate_batches, "evaluation batches", device)
        except Exception as e:  # the profile is a diagnosis: the timings above still count
            lines = [f"profiling failed: {type(e).__name__}: {e}"]
        with open(args.profile_out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    collect_probabilities(state.eval_model, FirstBatches(val_loader, 1), device, amp_dtype)
    start = time.perf_counter()
    collect_probabilities(state.eval_model, val_loader, device, amp_dtype)
    eval_seconds = time.perf_counter() - start
    assert variant != "c" or len(timed_lengths) == stats["examples"]
    dtype = "fp32" if amp_dtype is None else cfg["amp_dtype"]
    rows = {phase: int(batch * (np.mean(lengths) if len(lengths) else args.max_length)) for phase, batch, lengths in (
        ("train", args.batch_size, timed_lengths), ("eval", args.eval_batch_size, val_set.window_lengths))}
    return {"train_seconds": stats["seconds"], "eval_seconds": eval_seconds, "linear_rows": rows,
            "linear_share": {phase: linear_share(model.encoder, n, dtype, device, args.peak_size)
                             for phase, n in rows.items()},
            "dtype": dtype, "attention": cfg["attention_impl"],
            **work(model.encoder, timed_lengths, "train", stats["examples"]),
            **work(model.encoder, val_set.window_lengths.tolist(), "eval", len(val_set))}


def profile(run, label: str, device) -> list[str]:
    """Where `run()` (the work named by `label`) spends its time: the share of the wall clock the device computes
    (on a GPU, kernels' time over the wall clock: far below 1, the GPU waits on the host), and the ops with the
    most device time and the most host time."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        n = run()
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    lines = [f"{label} profiled: {n}, {wall * 1e3 / n:.1f} ms each"]
    if cuda:
        gpu = [e for e in events if e.device_type == DeviceType.CUDA and not e.is_user_annotation]
        kernels = sum(e.self_device_time_total for e in gpu) / 1e6
        lines.append(f"GPU kernels: {kernels * 1e3 / n:.1f} ms each, {kernels / wall:.0%} of the wall clock; "
                     f"{sum(e.count for e in gpu) / n:.0f} kernels each")
        lines += ["", "by GPU time:", events.table(sort_by="self_device_time_total", row_limit=20)]
    return lines + ["", "by host time:", events.table(sort_by="self_cpu_time_total", row_limit=20), ""]


def linear_share(encoder, rows: int, dtype_name: str, device, peak_size: int, repeats: int = 5) -> float:
    """One encoder layer's dense products on `rows` token rows (four hidden x hidden: query, key, value, output;
    the feed-forward pair through the intermediate width), in the dtype -> their FLOP/s over a peak_size^3
    matmul's (`matmul_peak`), the two timed one after the other: how near the peak the model's own matmul shapes
    can come on this machine, whatever its speed at the moment (MFU divides by the peak)."""
    import torch
    import torch.nn.functional as F

    dtype = getattr(torch, DTYPES[dtype_name])
    hidden, inner = encoder.config.hidden_size, encoder.config.intermediate_size
    shapes = [(hidden, hidden)] * 4 + [(hidden, inner), (inner, hidden)]
    inputs = {k: torch.randn(rows, k, dtype=dtype, device=device) for k in (hidden, inner)}
    weights = [torch.randn(n, k, dtype=dtype, device=device) for k, n in shapes]

    def layer():
        for (k, _), w in zip(shapes, weights):
            F.linear(inputs[k], w)

    layer_rate = sum(2 * rows * k * n for k, n in shapes) / best_seconds(layer, device, repeats)
    return layer_rate / matmul_peak(dtype_name, str(device), peak_size, repeats)


def worker(args):
    result = run_ours(args, args.worker) if args.worker in "cdef" else run_trainer(args, args.worker)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import torch

    if torch.cuda.is_available():
        result["peak_rss_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20  # on a GPU, the GPU's memory counts
    print("RESULT " + json.dumps(result), flush=True)


def measure(args, variant) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--worker", variant] + [
        a for a in sys.argv[1:] if a != "--worker"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "semeval2018_ec"))
    p.add_argument("--model", default="minilm")
    p.add_argument("--label-column", default=None, help="the label list to read (EURLEX57K: domains, ...)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=300)
    p.add_argument("--steps", type=int, default=150, help="timed training steps for (b) and (c)")
    p.add_argument("--notebook-steps", type=int, default=12, help="timed training steps for (a), which is slow")
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--eval-examples", type=int, default=684, help="the same validation examples for every variant")
    p.add_argument("--train-examples", type=int, default=None,
                   help="the first N training examples only (default: all), the same for every variant")
    p.add_argument("--peak-size", type=int, default=4096, help="matrix size of the matmul that measures the peak")
    p.add_argument("--rounds", type=int, default=3, help="rounds of (b) and (c); the best counts (noise only slows)")
    p.add_argument("--notebook-rounds", type=int, default=1, help="rounds of (a), which is 20x slower")
    p.add_argument("--variants", default="abc")
    p.add_argument("--isa", default="native", choices=["native", "avx2"],
                   help="avx2: limit PyTorch's, MKL's and oneDNN's kernels to AVX2, as on an AVX2-only CPU "
                        "(bf16 then counts as unsupported, so (b) and (c) train in fp32)")
    p.add_argument("--profile-out", default=None,
                   help="ours: profile --profile-steps more training steps and evaluation batches, "
                        "and write the tables to this file")
    p.add_argument("--profile-steps", type=int, default=10)
    p.add_argument("--ours-flags", nargs=argparse.REMAINDER, default=[], help="extra train.py flags for (c) and (d); last")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.isa == "avx2":  # read when torch loads: set here, before the import, and inherited by the workers
        os.environ.update(ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2", ONEDNN_MAX_CPU_ISA="AVX2")
    if args.worker:
        return worker(args)

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else cpu_name()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, kernels {torch.backends.cpu.get_cpu_capability()}")
    print(f"batch {args.batch_size} (evaluation {args.eval_batch_size}), max length {args.max_length}"
          + (f"; (c) and (d) with {' '.join(args.ours_flags)}" if args.ours_flags else ""))
    # the peak before and after the rounds, the higher counts: a single measurement on a busy host ran 20% low
    likely = ["fp32", "bf16", "fp16"] if device == "cuda" else ["fp32"] + (
        ["bf16"] if torch.ops.mkldnn._is_mkldnn_bf16_supported() else [])
    before = {dtype: matmul_peak(dtype, device, args.peak_size) for dtype in likely}
    results = {variant: [] for variant in args.variants}
    for round_ in range(args.rounds):
        for variant in args.variants:
            if variant == "a" and round_ >= args.notebook_rounds:
                continue
            r = measure(args, variant)
            results[variant].append(r)
            print(f"round {round_ + 1} ({variant}): train {rate(r['train_samples'] / r['train_seconds'])} samples/s, "
                  f"eval {rate(r['eval_samples'] / r['eval_seconds'])} samples/s, peak {r['peak_rss_mb']:.0f} MB",
                  flush=True)
    best = {variant: best_rounds(runs) for variant, runs in results.items()}
    peaks = {dtype: max(before.get(dtype, 0.0), matmul_peak(dtype, device, args.peak_size))
             for dtype in sorted({r["dtype"] for r in best.values()})}
    print(f"\nmatmul peak ({args.peak_size}^3, best before and after): " + ", ".join(f"{d} {v / 1e9:.0f} GFLOP/s" for d, v in peaks.items()))
    report(best, peaks)


def rate(per_second: float) -> str:
    """Three significant figures at least: a base encoder on a CPU trains well under one document a second."""
    return f"{per_second:.1f}" if per_second >= 100 else f"{per_second:.3g}"


def best_rounds(runs) -> dict:
    """Per phase, the round with the most samples/s, with its real tokens/s and model FLOP/s (training counts
    forward + backward as 3x the forward FLOPs)."""
    best = {"dtype": runs[0]["dtype"], "attention": runs[0]["attention"], "peak_rss_mb": min(r["peak_rss_mb"] for r in runs)}
    for phase, passes in (("train", 3), ("eval", 1)):
        r = max(runs, key=lambda r: r[f"{phase}_samples"] / r[f"{phase}_seconds"])
        seconds = r[f"{phase}_seconds"]
        best.update({f"{phase}_sps": r[f"{phase}_samples"] / seconds, f"{phase}_tps": r[f"{phase}_tokens"] / seconds,
                     f"{phase}_fps": passes * r[f"{phase}_flops"] / seconds,
                     f"{phase}_mean_tokens": r[f"{phase}_tokens"] / r[f"{phase}_samples"]})
    if "linear_share" in runs[0]:
        best["linear_rows"] = runs[0]["linear_rows"]
        best["linear_share"] = {phase: max(r["linear_share"][phase] for r in runs) for phase in ("train", "eval")}
    return best


def report(best, peaks):
    print(f"{'':82s} {'train/s':>8s} {'tok/s':>7s} {'MFU':>5s} {'eval/s':>8s} {'tok/s':>7s} {'MFU':>5s} {'peak MB':>8s}")
    for variant, r in best.items():
        peak = peaks[r["dtype"]]
        label = f"({variant}) {VARIANTS[variant]} [{r['dtype']}, {r['attention']}]"
        print(f"{label:82s} {rate(r['train_sps']):>8s} {r['train_tps']:7.0f} {r['train_fps'] / peak:5.0%} "
              f"{rate(r['eval_sps']):>8s} {r['eval_tps']:7.0f} {r['eval_fps'] / peak:5.0%} {r['peak_rss_mb']:8.0f}")
    for ours, others in COMPARED.items():
        for other in others:
            if ours in best and other in best:
                ratios = {key: best[ours][key] / best[other][key] for key in ("train_sps", "train_tps", "eval_sps", "eval_tps")}
                print(f"({ours})/({other}): training {ratios['train_sps']:.2f}x (real tokens/s {ratios['train_tps']:.2f}x), "
                      f"evaluation {ratios['eval_sps']:.2f}x (real tokens/s {ratios['eval_tps']:.2f}x)")
    for variant, r in best.items():
        if "linear_share" in r:
            print(f"({variant}) an encoder layer's linear products alone, forward, at a batch's token rows, timed "
                  f"beside the peak's matmul: " + ", ".join(
                      f"{phase} ({r['linear_rows'][phase]} rows) {r['linear_share'][phase]:.0%} of its rate"
                      for phase in ("train", "eval")))
    print("real tokens per timed example: " + ", ".join(
        f"({v}) train {r['train_mean_tokens']:.1f} eval {r['eval_mean_tokens']:.1f}" for v, r in best.items()))
    print("MFU: model FLOP/s on the real tokens of the examples each variant timed (training: forward + backward "
          "= 3x forward) over the matmul peak of its dtype")


if __name__ == "__main__":
    main()
