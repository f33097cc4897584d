"""Evaluate a checkpoint on a split of its training data, or on other data with the same labels.

    python evaluate.py --ckpt runs/<run>/best.pt                      # the test split
    python evaluate.py --ckpt runs/<run>/best.pt --split validation
    python evaluate.py --ckpt runs/<run>/best.pt --data my_labelled.csv
"""
from engine.config import parse_flags, with_defaults
from engine.settings import EVALUATE_FIELDS


def main(argv=None) -> dict:
    flags = with_defaults(EVALUATE_FIELDS, parse_flags(EVALUATE_FIELDS, argv,
                                                       "Evaluate a multi-label classifier checkpoint."))
    from engine.serving.evaluate import evaluate_checkpoint
    from engine.cli import run_cli

    return run_cli(evaluate_checkpoint, flags)


if __name__ == "__main__":
    main()
