"""Evaluate a checkpoint on a split of its training data, or on other data with the same labels.

    python evaluate.py --ckpt runs/<run>/best.pt                      # the test split
    python evaluate.py --ckpt runs/<run>/best.pt --split validation
    python evaluate.py --ckpt runs/<run>/best.pt --data my_labelled.csv
"""
import argparse

from engine.flags import ShowDefaults


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(formatter_class=ShowDefaults,
                                description="Evaluate a multi-label classifier checkpoint.")
    p.add_argument("--ckpt", required=True, help="a best.pt or last.pt")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"],
                   help="split of the training data to evaluate")
    p.add_argument("--data", default=None, help="other data (file or folder) labelled with the checkpoint's labels")
    p.add_argument("--thresholds", default=None,
                   help="tuned (per label, tuned on validation in training), global (the tuned global one), or a "
                        "number; default: the training run's --threshold")
    p.add_argument("--batch-size", type=int, default=None, help="default: the training run's eval batch size")
    p.add_argument("--max-eval-samples", type=int, default=None, help="default: the training run's")
    p.add_argument("--amp", default=None, choices=["auto", "bf16", "fp16", "off"], help="default: the training run's")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--output", default=None, help="metrics JSON (default: beside the checkpoint)")
    p.add_argument("--save-predictions", default=None, help="JSON lines: id, gold, predicted, probabilities")
    return p


def main(argv=None) -> dict:
    args = get_args_parser().parse_args(argv)  # --help, or a misspelt flag, answers here: before torch is imported
    from engine.cli import run_cli
    from engine.evaluation import evaluate_from_flags

    return run_cli(evaluate_from_flags, args)


if __name__ == "__main__":
    main()
