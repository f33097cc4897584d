"""Compare training recipes by validation F1 on real data: each variant is one train.py run, same seed.

    python bench/sweep.py --data ../shared/data/semeval2018_ec --epochs 5 \
        --variant="" --variant="--pooling cls" --variant="--head-lr-mult 1"
    python bench/sweep.py --data ../shared/data/eurlex57k --epochs 3 \
        --flags="--label-column domains --max-train-samples 1500 --max-eval-samples 1000" \
        --variant="--long-doc truncate" --variant=""

Prints one row per variant, at its best epoch by validation micro-F1: micro-F1 and macro-F1 (at --threshold, and
with the thresholds tuned on validation), P@1, P@5, RP@5 and nDCG@5, the epoch, seconds per epoch, and
milliseconds per document in training and in validation (its metrics and threshold tuning included). A run with a
fused head adds a row for the head that did not predict at that epoch (the encoder's own, or with --features auto
the fused one where the encoder's scored better), and its wall time (training, the fused head's embedding pass and
fit, validation) over all epochs.
"""
import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402


RANKING = ("precision_at_1", "precision_at_5", "r_precision_at_5", "ndcg_at_5")


def run_variant(common: list[str], variant: str, out_root: str) -> dict:
    out = os.path.join(out_root, str(abs(hash(variant))))
    argv = common + shlex.split(variant) + ["--output-dir", out, "--overwrite"]
    with contextlib.redirect_stderr(io.StringIO()):
        train.main(argv)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        epochs = [json.loads(line) for line in f]
    best = max(epochs, key=lambda r: r["val_micro_f1"])
    return {"variant": variant or "(defaults)", **{k: best[f"val_{k}"] for k in RANKING},
            "micro_f1": best["val_micro_f1"], "macro_f1": best["val_macro_f1"],
            "tuned_micro_f1": best["val_tuned_micro_f1"], "tuned_macro_f1": best["val_tuned_macro_f1"],
            "epoch": best["epoch"], "s_per_epoch": sum(r.get("train_seconds", 0) for r in epochs) / len(epochs),
            "train_ms_per_doc": 1000 * sum(r.get("train_seconds", 0) for r in epochs)
            / max(1, sum(r.get("train_examples", 0) for r in epochs)),
            "val_ms_per_doc": 1000 * best.get("val_seconds", float("nan")) / max(1, best.get("val_examples", 0)),
            "curve": [round(r["val_micro_f1"], 4) for r in epochs],
            "wall_s": sum(r.get("train_seconds", 0) + r.get("train_embed_seconds", 0) + r.get("train_fit_seconds", 0)
                          + r.get("val_seconds", 0) for r in epochs),
            "fit_s": sum(r.get("train_embed_seconds", 0) + r.get("train_fit_seconds", 0) for r in epochs),
            "other": {(name, k): best[f"val_{name}_{k}"] for name in ("encoder", "fused")
                      for k in ("micro_f1", "macro_f1", *RANKING) if f"val_{name}_{k}" in best}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/semeval2018_ec")
    p.add_argument("--model", default="minilm")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--flags", default="", help="train.py flags for every variant")
    p.add_argument("--variant", action="append", default=None, help="extra train.py flags; repeat")
    p.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    args = p.parse_args()
    common = ["--model", args.model, "--data", args.data, "--epochs", str(args.epochs), *shlex.split(args.flags)]
    out_root = args.out or tempfile.mkdtemp(prefix="sweep-")
    print(f"{'variant':40s} {'micro_f1':>8s} {'macro_f1':>8s} {'tuned':>6s} {'tuned':>6s} {'P@1':>6s} {'P@5':>6s} "
          f"{'RP@5':>6s} {'nDCG@5':>6s} {'epoch':>5s} {'s/epoch':>7s} {'ms/doc':>6s} {'val ms/doc':>10s}  curve",
          flush=True)
    for variant in args.variant or [""]:
        r = run_variant(common, variant, out_root)
        print(f"{r['variant']:40s} {r['micro_f1']:8.4f} {r['macro_f1']:8.4f} {r['tuned_micro_f1']:6.4f} "
              f"{r['tuned_macro_f1']:6.4f} " + " ".join(f"{r[k]:6.4f}" for k in RANKING)
              + f" {r['epoch']:5d} {r['s_per_epoch']:7.1f} {r['train_ms_per_doc']:6.1f} {r['val_ms_per_doc']:10.1f}"
              f"  {r['curve']}  wall {r['wall_s']:.0f} s (fused head: {r['fit_s']:.0f} s)", flush=True)
        if r["other"]:  # the head that did not predict, at that epoch
            name = next(iter(r["other"]))[0]
            e = {k: v for (n, k), v in r["other"].items() if n == name}
            label = "  (its encoder's own head)" if name == "encoder" else "  (its fused head, not chosen)"
            print(f"{label:40s} {e['micro_f1']:8.4f} {e['macro_f1']:8.4f} {'':6s} {'':6s} "
                  + " ".join(f"{e[k]:6.4f}" for k in RANKING), flush=True)


if __name__ == "__main__":
    main()
