"""evaluate.py's work, imported once its flags have parsed: a checkpoint evaluated on a split of its training
data or on other data with its labels, the metrics printed and written beside it."""
import os
import sys

from data import load_examples
from data.errors import DataError
from data.reading import file_format
from engine.files import atomic_write, json_text, write_json
from engine.config import check_machine, check_values
from engine.settings import EVALUATE_FIELDS
from engine.serving.decisions import prediction_records
from engine.serving.predictor import load_predictor
from engine.metrics import multilabel_metrics, per_label_report
from engine.thresholds import choose_thresholds

REPORT_ROWS = 40
LEVEL_HEADLINE = ("micro_f1", "macro_f1", "precision_at_1", "precision_at_5", "r_precision_at_5", "ndcg_at_5")
HEADLINE = ("loss", "micro_f1", "macro_f1", "weighted_f1", "samples_f1", "micro_precision", "micro_recall",
            "roc_auc_micro", "roc_auc_macro", "subset_accuracy", "hamming_loss", "jaccard_samples", "lrap",
            "precision_at_1", "precision_at_3", "precision_at_5", "r_precision_at_5", "ndcg_at_1", "ndcg_at_3",
            "ndcg_at_5", "mean_r_precision")


def load_eval_examples(flags, cfg, label_names, fingerprints: dict | None = None, hierarchy=None):
    """The examples to evaluate: `--data` (a file is evaluated whole) or the training data's `--split`, carved
    as in training."""
    data = flags["data"] or cfg["data"]
    single_file = flags["data"] is not None and os.path.isfile(flags["data"])
    splits, _ = load_examples(
        data, cfg["data_config"], cfg["text_column"], cfg["label_column"], cfg["label_separator"],
        label_names=label_names, val_fraction=0.0 if single_file else cfg["val_fraction"],
        split_seed=cfg["split_seed"], log=lambda *a: print(*a, file=sys.stderr), hierarchy=hierarchy)
    if single_file and flags["split"]:
        raise DataError(f"--split {flags['split']}: --data {flags['data']} is a file, evaluated whole; --split names a "
                        "split of the training data or of a --data folder")
    split = "train" if single_file else flags["split"] or "test"
    if split not in splits:
        raise DataError(f"--split {split}: {data} has no such split (it has: {', '.join(splits)})")
    examples = splits[split]
    limit = flags["max_eval_samples"] if flags["max_eval_samples"] is not None else cfg["max_eval_samples"]
    if single_file:  # another file: the training run's limit is not its own, a --max-eval-samples given is
        limit = flags["max_eval_samples"]
    if limit is not None and (split != "train" or single_file) and limit < len(examples):
        examples = examples.select(range(limit))
    expected = (fingerprints or {}).get("validation")
    if split == "validation" and expected and not flags["data"] and flags["max_eval_samples"] is None \
            and examples.fingerprint() != expected:
        raise DataError(f"--split {split}: the {split} split of {data} read now ({len(examples)} examples) is not the "
                        "one the run used (the data changed since); evaluate the data as it is with --data FILE")
    return examples, (flags["data"] if single_file else f"{data} [{split}]")


def format_report(metrics: dict, per_label: list[dict], source: str, n: int, rows: int = REPORT_ROWS,
                  levels=()) -> str:
    """The headline metrics (and each of the `levels`' own), and the per-label table, most frequent labels first; past
    `rows` labels the table stops there (the JSON written beside it holds every label)."""
    lines = [f"{source}: {n} examples, {len(per_label)} labels"]
    lines += [f"  {key:16s} {metrics[key]:.4f}" for key in HEADLINE if key in metrics]
    shown = [key for key in LEVEL_HEADLINE if f"{next(iter(levels), '')}_{key}" in metrics]
    if levels:
        lines.append(f"\n  {'level':8s} {'labels':>6s} " + " ".join(f"{key:>16s}" for key in shown))
        lines += [f"  {level:8s} {len(columns):6d} " + " ".join(f"{metrics[f'{level}_{key}']:16.4f}" for key in shown)
                  for level, columns in levels.items()]
    absent = [row["label"] for row in per_label if row["support"] == 0]
    if absent:
        shown = ", ".join(absent[:10]) + (f", ... ({len(absent)} in all)" if len(absent) > 10 else "")
        lines.append(f"  labels without positives here: {shown}")
    table = per_label if len(per_label) <= rows else per_label[:rows]
    width = max(len(row["label"]) for row in table)
    lines.append(f"\n  {'label':{width}s} {'support':>7s} {'prec':>6s} {'recall':>6s} {'f1':>6s} {'thresh':>6s}")
    lines += [f"  {r['label']:{width}s} {r['support']:7d} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} "
              f"{r['threshold']:6.3f}" for r in table]
    if len(table) < len(per_label):
        lines.append(f"  ... {len(per_label) - len(table)} less frequent labels: every label is in the JSON file")
    return "\n".join(lines)


def default_output(flags) -> str:
    """eval-<checkpoint>-<split>.json beside the checkpoint, or eval-<checkpoint>-<data file>.json: one file per
    source, so evaluating other data never overwrites an earlier result."""
    stem = os.path.splitext(os.path.basename(flags["ckpt"]))[0]
    source = flags["split"] or "test"
    if flags["data"]:
        source = os.path.splitext(os.path.basename(os.path.normpath(flags["data"])))[0]
        if not os.path.isfile(flags["data"]):
            source += f"-{flags['split'] or 'test'}"
    return os.path.join(os.path.dirname(os.path.abspath(flags["ckpt"])), f"eval-{stem}-{source}.json")


def refuse_writing_over_inputs(outputs: dict, inputs: list[str]) -> None:
    """No output file may be the checkpoint, the data file, a file in the data folder, or another output."""
    real = {flag: os.path.realpath(path) for flag, path in outputs.items() if path}
    if len(set(real.values())) < len(real):
        raise DataError(f"{' and '.join(real)}: name the same file; give each its own")
    for flag, path in real.items():
        for source in (os.path.realpath(p) for p in inputs if p and os.path.exists(p)):
            data_file_there = os.path.isdir(source) and os.path.dirname(path) == source and file_format(path, True)
            if path == source or data_file_there:
                raise DataError(f"{flag} {outputs[flag]}: would write over {source}, which this evaluation reads "
                                "(a data folder's files are its splits); name another file")


def evaluate_checkpoint(flags: dict) -> dict:
    """evaluate.py's work: the checkpoint's model on the chosen data, the metrics printed and written."""
    check_values(EVALUATE_FIELDS, flags)
    check_machine(EVALUATE_FIELDS, flags)
    predictor = load_predictor(flags["ckpt"], flags["device"], flags["amp"], flags["batch_size"], compile=True)
    cfg, label_names = predictor.config, predictor.label_names
    refuse_writing_over_inputs({"--output": flags["output"] or default_output(flags),
                                "--save-predictions": flags["save_predictions"]}, [flags["ckpt"], flags["data"] or cfg["data"]])
    threshold = choose_thresholds(flags["thresholds"], predictor.state["thresholds"], cfg["threshold"])
    hierarchy = predictor.hierarchy
    examples, source = load_eval_examples(flags, cfg, label_names, predictor.state.get("data_fingerprints"), hierarchy)
    cache_dir = cfg["cache_dir"] if flags["cache_dir"] is None else flags["cache_dir"]
    probs, targets, loss = predictor.probabilities(examples, cache_dir or None, with_loss=True)
    metrics = {"loss": loss, **multilabel_metrics(probs, targets, threshold, hierarchy)}
    per_label = per_label_report(probs, targets, threshold, label_names, hierarchy)
    print(format_report(metrics, per_label, source, len(examples), levels=hierarchy.levels if hierarchy else {}))
    output = flags["output"] or default_output(flags)
    result = {"checkpoint": flags["ckpt"], "data": source, "examples": len(examples), "thresholds": threshold,
              "metrics": metrics, "per_label": per_label}
    write_json(output, result)
    print(f"metrics written to {output}")
    if flags["save_predictions"]:
        records = prediction_records(examples.ids, probs, threshold, label_names, gold=examples.labels,
                                     hierarchy=hierarchy)
        atomic_write(flags["save_predictions"],
                     lambda f: f.writelines((json_text(r) + "\n").encode() for r in records))
        print(f"predictions written to {flags['save_predictions']}")
    return result
