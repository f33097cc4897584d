"""Thresholds for labels too rare to tune: the fallbacks compared on held-out halves of the validation split.

    python bench/rare_thresholds.py --data /tmp/rare/data --ckpt /tmp/rare/run0/best.pt [--ckpt ...]

`--data` is a folder that bench/rare_labels.py wrote (its validation split is the shipped one) and each
`--ckpt` a run trained on it. Each repeat splits the validation tweets in two halves at random: thresholds are
tuned on one half, where love, pessimism, surprise and trust keep only `--keep` positive tweets each (the
others that carry them are left out, as a rare label's validation positives would be few), and scored on the
other half, untouched. Compared: threshold 0.5; every label tuned alone, however few its positives
(`--tune-min-positives 1`); labels under 5 positives at the tuned global threshold (`--tune-fallback global`);
and at one threshold tuned on all of them pooled (`--tune-fallback pooled`). Prints the mean over repeats of
micro-F1, macro-F1 and the rare labels' macro-F1 on the scoring halves.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from rare_labels import RARE, scores  # noqa: E402

FALLBACKS = {"threshold 0.5": None, "each label tuned alone (min positives 1)": (1, "global"),
             "under 5 positives: the global threshold": (5, "global"),
             "under 5 positives: one pooled threshold": (5, "pooled")}


def tuning_half(targets: np.ndarray, rows: np.ndarray, rare: list[int], keep: int, rng) -> np.ndarray:
    """`rows` less the tweets that carry a rare label beyond the first `keep` of its positives (shuffled)."""
    dropped = set()
    for j in rare:
        positives = [i for i in rows if targets[i, j] and i not in dropped]
        rng.shuffle(positives)
        dropped |= set(positives[keep:])
    return np.array([i for i in rows if i not in dropped])


def compare(probs, targets, names, keep: int, repeats: int, seed: int) -> dict:
    from engine.thresholds import tune_thresholds

    rng = np.random.default_rng(seed)
    rare = [names.index(name) for name in RARE]
    results = {name: [] for name in FALLBACKS}
    for _ in range(repeats):
        order = rng.permutation(len(targets))
        tune_rows, score_rows = order[: len(order) // 2], order[len(order) // 2:]
        tune_rows = tuning_half(targets, tune_rows, rare, keep, rng)
        for name, setting in FALLBACKS.items():
            if setting is None:
                thresholds = 0.5
            else:
                min_positives, fallback = setting
                thresholds = tune_thresholds(probs[tune_rows], targets[tune_rows], "micro_f1", min_positives,
                                             fallback=fallback)["per_label"]
            results[name].append(scores(probs[score_rows], targets[score_rows], thresholds, names))
    return {name: {key: float(np.mean([r[key] for r in runs])) for key in runs[0]} for name, runs in results.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a folder bench/rare_labels.py wrote")
    p.add_argument("--ckpt", action="append", required=True, help="a run's best.pt; repeat")
    p.add_argument("--keep", type=int, default=3, help="positives each rare label keeps in the tuning half")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from data import load_examples
    from engine.serving.predictor import load_predictor

    print(f"{'checkpoint / thresholds':60s} {'micro':>6s} {'macro':>6s} {'rare':>6s}")
    totals = {name: [] for name in FALLBACKS}
    for ckpt in args.ckpt:
        predictor = load_predictor(ckpt)
        splits, _ = load_examples(args.data, label_names=predictor.label_names, log=lambda *a: None)
        probs, targets, _ = predictor.probabilities(splits["validation"])
        print(ckpt, flush=True)
        for name, r in compare(probs, targets, predictor.label_names, args.keep, args.repeats, args.seed).items():
            totals[name].append(r)
            print(f"  {name:58s} {r['micro_f1']:6.4f} {r['macro_f1']:6.4f} {r['rare_macro_f1']:6.4f}", flush=True)
    if len(args.ckpt) > 1:
        print(f"mean over the {len(args.ckpt)} checkpoints")
        for name, runs in totals.items():
            mean = {key: np.mean([r[key] for r in runs]) for key in runs[0]}
            print(f"  {name:58s} {mean['micro_f1']:6.4f} {mean['macro_f1']:6.4f} {mean['rare_macro_f1']:6.4f}")


if __name__ == "__main__":
    main()
