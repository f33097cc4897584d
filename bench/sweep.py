"""Compare training recipes by validation F1 on real data: each variant is one train.py run, same seed.

    python bench/sweep.py --data ../shared/data/semeval2018_ec --epochs 5 \
        --variant="" --variant="--pooling cls" --variant="--head-lr-mult 1"

Prints one row per variant: best validation micro-F1 and macro-F1, the epoch, seconds per epoch, and
milliseconds per document in training and in validation (its metrics and threshold tuning included).
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


def run_variant(common: list[str], variant: str, out_root: str) -> dict:
    out = os.path.join(out_root, str(abs(hash(variant))))
    argv = common + shlex.split(variant) + ["--output-dir", out, "--overwrite"]
    with contextlib.redirect_stderr(io.StringIO()):
        train.main(argv)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        epochs = [json.loads(line) for line in f]
    best = max(epochs, key=lambda r: r["val_micro_f1"])
    return {"variant": variant or "(defaults)", "micro_f1": best["val_micro_f1"], "macro_f1": best["val_macro_f1"],
            "epoch": best["epoch"], "s_per_epoch": sum(r["train_seconds"] for r in epochs) / len(epochs),
            "train_ms_per_doc": 1000 * sum(r["train_seconds"] for r in epochs) / sum(r["train_examples"] for r in epochs),
            "val_ms_per_doc": 1000 * best.get("val_seconds", float("nan")) / max(1, best.get("val_examples", 0)),
            "curve": [round(r["val_micro_f1"], 4) for r in epochs]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/semeval2018_ec")
    p.add_argument("--model", default="minilm")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--variant", action="append", default=None, help="extra train.py flags; repeat")
    p.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    args = p.parse_args()
    common = ["--model", args.model, "--data", args.data, "--epochs", str(args.epochs)]
    out_root = args.out or tempfile.mkdtemp(prefix="sweep-")
    print(f"{'variant':40s} {'micro_f1':>8s} {'macro_f1':>8s} {'epoch':>5s} {'s/epoch':>7s} {'ms/doc':>6s} "
          f"{'val ms/doc':>10s}  curve", flush=True)
    for variant in args.variant or [""]:
        r = run_variant(common, variant, out_root)
        print(f"{r['variant']:40s} {r['micro_f1']:8.4f} {r['macro_f1']:8.4f} {r['epoch']:5d} {r['s_per_epoch']:7.1f} "
              f"{r['train_ms_per_doc']:6.1f} {r['val_ms_per_doc']:10.1f}  {r['curve']}", flush=True)


if __name__ == "__main__":
    main()
