"""Label raw text with a trained checkpoint.

    python predict.py --ckpt runs/<run>/best.pt "I can't wait for the weekend!" "This is awful."
    cat tweets.txt | python predict.py --ckpt runs/<run>/best.pt --json
    python predict.py --ckpt runs/<run>/best.pt --file tweets.csv --text-column Tweet
"""
from engine.config import parse_flags, with_defaults
from engine.settings import PREDICT_FIELDS


def main(argv=None) -> list[dict]:
    flags = with_defaults(PREDICT_FIELDS, parse_flags(PREDICT_FIELDS, argv,
                                                      "Label texts with a multi-label classifier checkpoint."))
    from engine.cli import run_cli
    from engine.serving.predict import label_texts

    return run_cli(label_texts, flags)


if __name__ == "__main__":
    main()
