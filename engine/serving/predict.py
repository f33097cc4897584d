"""predict.py's work, imported once its flags have parsed: texts from the command line, a file or standard
input, labelled by a checkpoint's model with its thresholds."""
import json
import sys

from data.errors import DataError
from data.examples import Examples
from data.labels import read_texts
from engine.config import check_machine, check_values
from engine.settings import PREDICT_FIELDS
from engine.serving.decisions import prediction_records
from engine.serving.predictor import load_predictor
from engine.thresholds import choose_thresholds


def input_examples(flags: dict, trained_column: str | None) -> Examples:
    if flags["file"] and flags["texts"]:
        raise DataError("give texts as arguments or --file, not both")
    if flags["file"]:
        return read_texts(flags["file"], flags["text_column"], trained_column)
    texts = flags["texts"] or stdin_lines()
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
    """The text's start, then its labels, likeliest first (with a hierarchy, a line per level)."""
    text = record["text"].replace("\n", " ")
    shown = text[:limit] + ("…" if len(text) > limit else "")
    probs = record["probabilities"]
    levels = record["predicted"] if isinstance(record["predicted"], dict) else {"": record["predicted"]}
    lines = []
    for level, predicted in levels.items():
        labels = ", ".join(f"{name} {probs[name]:.2f}" for name in sorted(predicted, key=lambda n: -probs[n]))
        if not labels:
            top = max(probs, key=probs.get) if not level else None
            labels = f"(none; the likeliest is {top} {probs[top]:.2f})" if top else "(none)"
        lines.append(f"    {level + ': ' if level else ''}{labels}")
    return "\n".join([shown, *lines])


def label_texts(flags: dict) -> list[dict]:
    """predict.py's work: label the texts given, print one line (or JSON record) per text."""
    check_values(PREDICT_FIELDS, flags)
    check_machine(PREDICT_FIELDS, flags)
    predictor = load_predictor(flags["ckpt"], flags["device"], batch_size=flags["batch_size"])
    tuned = predictor.state["thresholds"]
    spec = flags["thresholds"] or ("tuned" if tuned else None)
    thresholds = choose_thresholds(spec, tuned, predictor.config["threshold"])
    examples = input_examples(flags, predictor.config["text_column"])
    probs, _, _ = predictor.probabilities(examples)
    records = list(prediction_records(examples.ids, probs, thresholds, predictor.label_names, texts=examples.texts,
                                      hierarchy=predictor.hierarchy, top_k=flags["top_k"],
                                      min_labels=flags["min_labels"]))
    for record in records:
        print(json.dumps(record) if flags["json"] else format_prediction(record))
    return records
