"""Which thresholds to apply, and what to tune them for, scored on laws the tuning never saw.

    python bench/threshold_objective.py --ckpt /work/sweeps/eu1/<run>/best.pt --data ../shared/data/eurlex57k \
        --label-column domains --max-eval-samples 4000 --skip 1000

Predicts the first `--max-eval-samples` validation examples once, less the first `--skip` (those that chose the
run's best epoch); each repeat splits them in two random halves,
tunes on one (as train.py does on its validation split: `--tune-min-positives 5`, `--tune-fallback pooled`) and
scores the other. Compared: the fixed threshold 0.5, the tuned global threshold and the per-label thresholds,
each tuned for micro-F1 and for macro-F1 (`--tune-objective`). Prints the mean over repeats (and the spread)
of micro-F1 and macro-F1 on the scoring halves.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compare(probs: np.ndarray, targets: np.ndarray, repeats: int, seed: int) -> dict:
    from engine.metrics import f1_scores
    from engine.thresholds import tune_thresholds

    rng = np.random.default_rng(seed)
    results = {}
    for _ in range(repeats):
        order = rng.permutation(len(targets))
        tune_rows, score_rows = order[: len(order) // 2], order[len(order) // 2:]
        choices = {"0.5": 0.5}
        for objective in ("micro_f1", "macro_f1"):
            tuned = tune_thresholds(probs[tune_rows], targets[tune_rows], objective)
            choices[f"global, tuned for {objective}"] = tuned["global"]
            choices[f"per label, tuned for {objective}"] = tuned["per_label"]
        for name, thresholds in choices.items():
            results.setdefault(name, []).append(f1_scores(probs[score_rows], targets[score_rows], thresholds))
    return {name: {key: (float(np.mean([r[key] for r in runs])), float(np.std([r[key] for r in runs])))
                   for key in ("micro_f1", "macro_f1")} for name, runs in results.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a run's best.pt")
    p.add_argument("--data", required=True)
    p.add_argument("--label-column", default=None)
    p.add_argument("--max-eval-samples", type=int, default=None)
    p.add_argument("--skip", type=int, default=0, help="leave out the first N (those the run validated on)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from data import load_examples
    from engine.serving.predictor import load_predictor

    predictor = load_predictor(args.ckpt)
    splits, _ = load_examples(args.data, label_column=args.label_column, label_names=predictor.label_names,
                              max_eval_samples=args.max_eval_samples, log=lambda *a: None)
    validation = splits["validation"].select(range(args.skip, len(splits["validation"])))
    probs, targets, _ = predictor.probabilities(validation)
    print(f"{len(targets)} validation examples, {targets.shape[1]} labels; halves of {len(targets) // 2}, "
          f"{args.repeats} repeats")
    print(f"{'thresholds':36s} {'micro-F1':>16s} {'macro-F1':>16s}")
    for name, r in compare(probs, targets, args.repeats, args.seed).items():
        print(f"{name:36s} " + " ".join(f"{r[k][0]:7.4f} +- {r[k][1]:.4f}" for k in ("micro_f1", "macro_f1")))


if __name__ == "__main__":
    main()
