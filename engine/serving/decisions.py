"""From probabilities to decisions: thresholds, then at most --top-k and at least --min-labels per level, then each
predicted label's ancestors; and predictions as JSON-ready records."""
import numpy as np

from engine.metrics import binarize

def decide(probs: np.ndarray, thresholds, hierarchy=None, top_k: int | None = None,
           min_labels: int | None = None) -> np.ndarray:
    """0/1 decisions: at the thresholds; then, in each level (all labels without a hierarchy), at most the `top_k`
    likeliest of those and at least the `min_labels` likeliest of all; then each predicted label's ancestors (which
    may pass `top_k` at a coarser level: a label is never predicted without them)."""
    predicted = binarize(probs, thresholds)
    levels = hierarchy.levels.values() if hierarchy is not None else [np.arange(probs.shape[1])]
    for columns in levels:
        rank = np.empty((len(probs), len(columns)), dtype=np.int64)  # 0 for each document's likeliest label here
        np.put_along_axis(rank, np.argsort(-probs[:, columns], axis=1, kind="stable"), np.arange(len(columns))[None], 1)
        part = predicted[:, columns]
        if top_k is not None:
            part &= rank < top_k
        if min_labels is not None:
            part |= rank < min_labels
        predicted[:, columns] = part
    return predicted if hierarchy is None else hierarchy.roll_up(predicted)


def prediction_records(ids, probs, thresholds, label_names, gold=None, texts=None, hierarchy=None, top_k=None,
                       min_labels=None):
    """One JSON-ready dict per example: id, (text), (gold labels), predicted labels (with a hierarchy, a list per
    level: `{"level_1": [...], ...}`), probabilities."""
    predicted = decide(probs, thresholds, hierarchy, top_k, min_labels)
    levels = {level: set(columns.tolist()) for level, columns in hierarchy.levels.items()} if hierarchy else None
    for i, example_id in enumerate(ids):
        record = {"id": example_id}
        if texts is not None:
            record["text"] = texts[i]
        if gold is not None:
            record["gold"] = [label_names[j] for j in gold[i]]
        chosen = np.flatnonzero(predicted[i])
        record["predicted"] = ([label_names[j] for j in chosen] if levels is None else
                               {level: [label_names[j] for j in chosen if j in columns]
                                for level, columns in levels.items()})
        record["probabilities"] = {name: round(float(p), 6) for name, p in zip(label_names, probs[i])}
        yield record
