"""Label raw text with a trained checkpoint.

    python predict.py --ckpt runs/<run>/best.pt "I can't wait for the weekend!" "This is awful."
    cat tweets.txt | python predict.py --ckpt runs/<run>/best.pt --json
    python predict.py --ckpt runs/<run>/best.pt --file tweets.csv --text-column Tweet
"""
import argparse
import json
import sys

from data import DataError, Examples, read_texts
from engine.cli import check_at_least_one, check_device, run_cli
from engine.flags import ShowDefaults
from engine.inference import Predictor, prediction_records
from engine.thresholds import choose_thresholds


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


def input_examples(args) -> Examples:
    if args.file and args.texts:
        raise DataError("give texts as arguments or --file, not both")
    if args.file:
        return read_texts(args.file, args.text_column)
    texts = args.texts or stdin_lines()
    if not texts:
        raise DataError("no text to label: give texts as arguments, --file, or lines on stdin")
    return Examples.unlabelled(texts)


def stdin_lines() -> list[str]:
    """The non-blank lines of standard input, which must be UTF-8."""
    lines = []
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(f"standard input: line {number}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        if line.strip():
            lines.append(line)
    return lines


def format_prediction(record: dict, limit: int = 100) -> str:
    text = record["text"].replace("\n", " ")
    shown = text[:limit] + ("…" if len(text) > limit else "")
    probs = record["probabilities"]
    labels = ", ".join(f"{name} {probs[name]:.2f}" for name in sorted(record["predicted"], key=lambda n: -probs[n]))
    if not labels:
        top = max(probs, key=probs.get)
        labels = f"(none; the likeliest is {top} {probs[top]:.2f})"
    return f"{shown}\n    {labels}"


def run(args) -> list[dict]:
    check_at_least_one(args, "batch_size")
    check_device(args.device)
    predictor = Predictor(args.ckpt, args.device, batch_size=args.batch_size)
    tuned = predictor.state.get("thresholds")
    spec = args.thresholds or ("tuned" if tuned else None)
    thresholds = choose_thresholds(spec, tuned, predictor.config["threshold"])
    examples = input_examples(args)
    probs, _, _ = predictor.probabilities(examples)
    records = list(prediction_records(examples.ids, probs, thresholds, predictor.label_names, texts=examples.texts))
    for record in records:
        print(json.dumps(record) if args.json else format_prediction(record))
    return records


def main(argv=None) -> list[dict]:
    return run_cli(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    main()
