"""Label raw text with a trained checkpoint.

    python predict.py --ckpt runs/<run>/best.pt "I can't wait for the weekend!" "This is awful."
    cat tweets.txt | python predict.py --ckpt runs/<run>/best.pt --json
    python predict.py --ckpt runs/<run>/best.pt --file tweets.csv --text-column Tweet
"""
import argparse

from engine.flags import ShowDefaults


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(formatter_class=ShowDefaults,
                                description="Label texts with a multi-label classifier checkpoint.")
    p.add_argument("texts", nargs="*", help="texts to label; none: --file, or one text per line on stdin")
    p.add_argument("--ckpt", required=True, help="a best.pt or last.pt")
    p.add_argument("--file", default=None, help="a .txt (one text per line), csv, tsv, jsonl or parquet file")
    p.add_argument("--text-column", default=None, help="for csv, tsv, jsonl, parquet (default: as in training)")
    p.add_argument("--thresholds", default=None,
                   help="tuned (per label; the default where the checkpoint has them), global, or a number")
    p.add_argument("--json", action="store_true", help="one JSON line per text")
    p.add_argument("--batch-size", type=int, default=None, help="default: the training run's eval batch size")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    return p


def main(argv=None) -> list[dict]:
    args = get_args_parser().parse_args(argv)  # --help, or a misspelt flag, answers here: before torch is imported
    from engine.cli import run_cli
    from engine.prediction import predict_from_flags

    return run_cli(predict_from_flags, args)


if __name__ == "__main__":
    main()
