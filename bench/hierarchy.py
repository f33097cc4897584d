"""One model over every EUROVOC level (`--label-hierarchy`) against one model per level, on the same laws.

    python bench/hierarchy.py --out /tmp/hier --flags="--max-train-samples 2000 --max-eval-samples 1000 --epochs 3"

Runs train.py four times (EURLEX57K domains, microthesauri, descriptors, then descriptors with eurovoc.json as the
hierarchy), each at the defaults plus --flags, and prints per level the single-level model's and the hierarchical
model's micro / macro-F1, P@5 and RP@5 at each run's best epoch, and the training wall times. Then, on the
hierarchical model's best.pt and the validation laws, each way of making its output consistent: none, roll-up of the
probabilities, roll-up of the decisions, both (what predict.py does), at 0.5 and at the tuned thresholds.
"""
import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "eurlex57k")
LEVELS = {"domains": "level_1", "microthesauri": "level_2", "descriptors": "level_3"}
SHOWN = ("micro_f1", "macro_f1", "precision_at_5", "r_precision_at_5")


def run(out: str, argv: list[str]) -> tuple[dict, float]:
    """(the best epoch's metrics.jsonl record, the wall time of the run)."""
    if os.path.exists(os.path.join(out, "metrics.jsonl")) and os.path.exists(os.path.join(out, "wall_s")):
        with open(os.path.join(out, "wall_s")) as f:
            wall = float(f.read())
    else:
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            train.main(argv + ["--output-dir", out, "--overwrite"])
        wall = time.perf_counter() - start
        with open(os.path.join(out, "wall_s"), "w") as f:
            f.write(str(wall))
    with open(os.path.join(out, "metrics.jsonl")) as f:
        epochs = [json.loads(line) for line in f]
    return max(epochs, key=lambda r: r["val_micro_f1"]), wall


def consistency_table(ckpt: str, max_eval: int | None) -> list[str]:
    import numpy as np

    from engine.serving.evaluate import load_eval_examples
    from engine.serving.predictor import load_predictor
    from engine.metrics import binarize, level_metrics

    predictor = load_predictor(ckpt)
    hierarchy = predictor.hierarchy
    flags = {"data": None, "split": "validation", "max_eval_samples": max_eval}
    examples, _ = load_eval_examples(flags, predictor.config, predictor.label_names, None, hierarchy)
    predictor.hierarchy = None  # the model's own probabilities, not rolled up
    raw, targets, _ = predictor.probabilities(examples)
    rolled = hierarchy.roll_up(raw)
    tuned = np.asarray(predictor.state["thresholds"]["per_label"])
    lines = ["| roll-up | thresholds | " + " | ".join(f"{level} micro / macro-F1" for level in LEVELS)
             + " | inconsistent decisions |", "|---" * (3 + len(LEVELS)) + "|"]
    for name, probs, decisions in (("none", raw, None), ("probabilities", rolled, None), ("decisions", raw, hierarchy),
                                   ("both (shipped)", rolled, hierarchy)):
        for label, thresholds in (("0.5", 0.5), ("tuned", tuned)):
            preds = binarize(probs, thresholds, decisions)
            scores = [level_metrics(probs[:, c], targets[:, c], preds[:, c]) for c in hierarchy.levels.values()]
            lines.append(f"| {name} | {label} | " + " | ".join(f"{m['micro_f1']:.4f} / {m['macro_f1']:.4f}"
                                                           for m in scores)
                         + f" | {hierarchy.inconsistent(preds)} |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DATA)
    p.add_argument("--model", default="minilm")
    p.add_argument("--flags", default="--max-train-samples 2000 --max-eval-samples 1000 --epochs 3")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    common = ["--model", args.model, "--data", args.data, *shlex.split(args.flags)]
    hierarchy_argv = common + ["--label-column", "descriptors", "--label-hierarchy",
                               os.path.join(args.data, "eurovoc.json")]
    hier, hier_wall = run(os.path.join(args.out, "hierarchy"), hierarchy_argv)
    print(f"hierarchical model: {hier_wall:.0f} s, best epoch {hier['epoch']}, inconsistent decisions "
          f"{hier.get('val_inconsistent_predictions')}", flush=True)
    singles = {}
    for column in LEVELS:
        singles[column] = run(os.path.join(args.out, column), common + ["--label-column", column])
        print(f"{column}: {singles[column][1]:.0f} s, best epoch {singles[column][0]['epoch']}", flush=True)
    print(f"\n| level | model | {' | '.join(SHOWN)} | best epoch |\n|---|---|" + "---|" * (len(SHOWN) + 1))
    for column, level in LEVELS.items():
        single, _ = singles[column]
        cells = [f"{single.get(f'val_{k}', float('nan')):.4f}" for k in SHOWN]
        print(f"| {column} | one model per level | {' | '.join(cells)} | {single['epoch']} |")
        cells = [f"{hier.get(f'val_{level}_{k}', float('nan')):.4f}" for k in SHOWN]
        print(f"| | one model, every level | {' | '.join(cells)} | {hier['epoch']} |")
    three = sum(wall for _, wall in singles.values())
    print(f"\ntraining wall time: three single-level models {three:.0f} s, the hierarchical model {hier_wall:.0f} s "
          f"({hier_wall / three:.2f}x)\n")
    max_eval = next((int(v) for k, v in zip(common, common[1:]) if k == "--max-eval-samples"), None)
    print("\n".join(consistency_table(os.path.join(args.out, "hierarchy", "best.pt"), max_eval)))


if __name__ == "__main__":
    main()
