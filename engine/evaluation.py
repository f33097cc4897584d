"""evaluate.py's work, imported once its flags have parsed: a checkpoint evaluated on a split of its training
data or on other data with its labels, the metrics printed and written beside it."""
import json
import os
import sys

from data import DataError, load_examples
from engine.checkpoint import atomic_write, write_json
from engine.cli import check_at_least_one, check_device, check_output_file
from engine.inference import Predictor, prediction_records
from engine.metrics import multilabel_metrics, per_label_report
from engine.thresholds import choose_thresholds

HEADLINE = ("loss", "micro_f1", "macro_f1", "weighted_f1", "samples_f1", "micro_precision", "micro_recall",
            "roc_auc_micro", "roc_auc_macro", "subset_accuracy", "hamming_loss", "jaccard_samples", "lrap",
            "precision_at_1", "precision_at_3", "precision_at_5", "ndcg_at_1", "ndcg_at_3", "ndcg_at_5",
            "mean_r_precision")


def load_eval_examples(args, cfg, label_names):
    """The examples to evaluate: `--data` (a file is evaluated whole) or the training data's `--split`, carved
    as in training."""
    data = args.data or cfg["data"]
    single_file = args.data is not None and os.path.isfile(args.data)
    splits, _ = load_examples(
        data, cfg["data_config"], cfg["text_column"], cfg["label_column"], cfg["label_separator"],
        label_names=label_names, val_fraction=0.0 if single_file else cfg["val_fraction"],
        split_seed=cfg["split_seed"], log=lambda *a: print(*a, file=sys.stderr))
    split = "train" if single_file else args.split
    if split not in splits:
        raise DataError(f"--split {args.split}: {data} has no such split (it has: {', '.join(splits)})")
    examples = splits[split]
    limit = args.max_eval_samples if args.max_eval_samples is not None else cfg.get("max_eval_samples")
    if limit is not None and split != "train" and limit < len(examples):
        examples = examples.select(range(limit))
    return examples, (args.data if single_file else f"{data} [{split}]")


def format_report(metrics: dict, per_label: list[dict], source: str, n: int) -> str:
    lines = [f"{source}: {n} examples"]
    lines += [f"  {key:16s} {metrics[key]:.4f}" for key in HEADLINE if key in metrics]
    if metrics.get("labels_without_positives"):
        lines.append(f"  labels without positives here: {', '.join(map(str, metrics['labels_without_positives']))}")
    width = max(len(row["label"]) for row in per_label)
    lines.append(f"\n  {'label':{width}s} {'support':>7s} {'prec':>6s} {'recall':>6s} {'f1':>6s} {'thresh':>6s}")
    lines += [f"  {r['label']:{width}s} {r['support']:7d} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} "
              f"{r['threshold']:6.3f}" for r in per_label]
    return "\n".join(lines)


def check_args(args) -> None:
    """Everything that can be checked before the checkpoint and the data are read."""
    check_at_least_one(args, "batch_size", "max_eval_samples")
    check_device(args.device)
    check_output_file(args.output, "--output")
    check_output_file(args.save_predictions, "--save-predictions")


def default_output(args) -> str:
    """eval-<checkpoint>-<split>.json beside the checkpoint, or eval-<checkpoint>-<data file>.json: one file per
    source, so evaluating other data never overwrites an earlier result."""
    stem = os.path.splitext(os.path.basename(args.ckpt))[0]
    source = args.split
    if args.data:
        source = os.path.splitext(os.path.basename(os.path.normpath(args.data)))[0]
        if not os.path.isfile(args.data):
            source += f"-{args.split}"
    return os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), f"eval-{stem}-{source}.json")


def evaluate_from_flags(args) -> dict:
    """evaluate.py's work: the checkpoint's model on the chosen data, the metrics printed and written."""
    check_args(args)
    predictor = Predictor(args.ckpt, args.device, args.amp, args.batch_size)
    cfg, label_names = predictor.config, predictor.label_names
    threshold = choose_thresholds(args.thresholds, predictor.state.get("thresholds"), cfg["threshold"])
    examples, source = load_eval_examples(args, cfg, label_names)
    probs, targets, loss = predictor.probabilities(examples, cfg.get("cache_dir") or None)
    metrics = {"loss": loss, **multilabel_metrics(probs, targets, threshold, label_names)}
    per_label = per_label_report(probs, targets, threshold, label_names)
    print(format_report(metrics, per_label, source, len(examples)))
    output = args.output or default_output(args)
    result = {"checkpoint": args.ckpt, "data": source, "examples": len(examples), "thresholds": threshold,
              "metrics": metrics, "per_label": per_label}
    write_json(output, result)
    print(f"metrics written to {output}")
    if args.save_predictions:
        records = prediction_records(examples.ids, probs, threshold, label_names, gold=examples.labels)
        atomic_write(args.save_predictions, lambda f: f.writelines((json.dumps(r) + "\n").encode() for r in records))
        print(f"predictions written to {args.save_predictions}")
    return result
