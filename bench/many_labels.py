"""What an epoch's validation costs beyond the forward passes at EURLEX57K's descriptor level (all 6,000 validation
laws, every descriptor of train and validation as a label): the metrics, threshold tuning, TensorBoard details,
the metrics.jsonl line and evaluate.py's console report, each timed, against MiniLM's forward passes over the
same laws (timed on `--forward-laws` of them and scaled to all).

    python bench/many_labels.py                     # descriptors; --level domains for the 21 labels
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(name, rows, work):
    before, start = peak_mb(), time.perf_counter()
    result = work()
    rows.append((name, time.perf_counter() - start, peak_mb() - before))
    return result


def forward_seconds(examples, num_labels: int, args) -> float:
    """MiniLM's forward passes (evaluation, --max-length 300, truncating) over `args.forward_laws` laws."""
    import torch

    from data import build_loader
    from data.tokenized import tokenize
    from engine.config import make_config
    from engine.predictions import collect_probabilities
    from engine.training.run_config import for_device
    from model.classifier import build_model
    from model.encoders import load_tokenizer

    cfg = make_config(model=args.model, long_doc="truncate", features="encoder")
    device = torch.device("cpu")
    cfg = for_device(cfg, device)
    tokenizer = load_tokenizer(args.model)
    subset = examples.select(range(args.forward_laws))
    loader = build_loader(tokenize(subset, tokenizer, 300, num_labels, None), 64, tokenizer.pad_token_id, False)
    model = build_model(cfg, num_labels).eval()
    start = time.perf_counter()
    collect_probabilities(model, loader, device, None)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "eurlex57k"))
    p.add_argument("--level", default="descriptors")
    p.add_argument("--model", default="minilm")
    p.add_argument("--forward-laws", type=int, default=128)
    args = p.parse_args()

    from data import load_examples
    from engine.serving.evaluate import format_report
    from engine.training.logger import RunLogger
    from engine.metrics import binarize, f1_scores, multilabel_metrics, per_label_report
    from engine.thresholds import tune_thresholds

    splits, names = load_examples(args.data, label_column=args.level, log=lambda *a: None)
    val = splits["validation"]
    targets = np.zeros((len(val), len(names)), dtype=np.float32)
    for row, labels in enumerate(val.labels):
        targets[row, labels] = 1
    rng = np.random.default_rng(0)  # probabilities with the shape a trained model's have: most labels near 0
    logits = rng.normal(-5, 1.5, targets.shape) + targets * rng.normal(4, 2, targets.shape)
    probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
    rows = []
    metrics = timed("every metric (engine/metrics.py)", rows, lambda: multilabel_metrics(probs, targets, 0.5))
    thresholds = timed("thresholds tuned (micro_f1, pooled)", rows, lambda: tune_thresholds(probs, targets))
    timed("F1 at the tuned thresholds", rows, lambda: (f1_scores(probs, targets, thresholds["per_label"]),
                                                      f1_scores(probs, targets, thresholds["global"])))
    with tempfile.TemporaryDirectory() as folder:
        logger = RunLogger(folder)
        timed("TensorBoard: PR curves and examples", rows, lambda: (logger.validation_details(
            probs, targets, names, val, binarize(probs, 0.5), 1), logger.writer.flush()))
        logger.close()
        event_kb = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(folder) for f in fs) / 1024
    per_label = timed("per-label report", rows, lambda: per_label_report(probs, targets, 0.5, names))
    report = timed("evaluate.py's console report", rows, lambda: format_report(metrics, per_label, "validation",
                                                                              len(val)))
    record = json.dumps({f"val_{k}": v for k, v in metrics.items()})
    forward = forward_seconds(val, len(names), args) * len(val) / args.forward_laws

    print(f"{args.level}: {len(names)} labels, {len(val)} validation laws, {targets.sum(0).astype(bool).sum()} "
          f"labels with validation positives")
    for name, seconds, grown in rows:
        print(f"  {name:40s} {seconds:8.2f} s   peak memory +{grown:.0f} MB")
    print(f"  {'all of the above':40s} {sum(s for _, s, _ in rows):8.2f} s")
    print(f"  {'forward passes (MiniLM, 300 tokens, fp32)':40s} {forward:8.1f} s   (timed on {args.forward_laws} "
          "laws, scaled to all)")
    print(f"  TensorBoard event file: {event_kb:.0f} KB; metrics.jsonl line: {len(record) / 1024:.1f} KB; "
          f"console report: {len(report.splitlines())} lines; peak RSS {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
