"""Every multi-label metric in one place, computed once per evaluation, each named in one style: lower case,
words joined by `_` (`micro_f1`, `precision_at_5`, `r_precision_at_5`, `ndcg_at_5`, `mean_r_precision`), so each also reads as a
flag value, a JSON key and a TensorBoard tag. Papers write P@5, nDCG@5 and mRP; older runs logged those
names, which engine/formats.py reads as today's.

Ranking metrics (precision and nDCG at k, mean R-Precision, LRAP) are averaged over the documents that have at least one gold label;
ROC-AUC macro over the labels that have both positives and negatives in the split. Labels with no positive
in the split are counted under `labels_without_positives` instead of breaking a metric (their names are the
per-label report's rows of support 0).
"""
import numpy as np
from sklearn import metrics as skm

TOP_K = (1, 3, 5)


def binarize(probs: np.ndarray, thresholds, hierarchy=None) -> np.ndarray:
    """0/1 predictions: a probability at or above its label's threshold (a number, or one per label); with a
    `hierarchy` (data/hierarchy.py) a predicted label brings its ancestors."""
    preds = (probs >= np.asarray(thresholds, dtype=np.float64)).astype(np.int64)
    return preds if hierarchy is None else hierarchy.roll_up(preds)


def multilabel_metrics(probs: np.ndarray, targets: np.ndarray, thresholds=0.5, hierarchy=None) -> dict:
    """`probs` and `targets` are (documents, labels); `thresholds` a number or one per label. With a `hierarchy`,
    each level's F1 and ranking metrics too, under its name (`level_1_micro_f1`)."""
    targets = targets.astype(np.int64)
    preds = binarize(probs, thresholds, hierarchy)
    out = {}
    for level, columns in (hierarchy.levels.items() if hierarchy is not None else ()):
        out.update({f"{level}_{name}": value for name, value in level_metrics(
            probs[:, columns], targets[:, columns], preds[:, columns]).items()})
    for average in ("micro", "macro", "weighted", "samples"):
        out.update({f"{average}_{name}": value for name, value in _averaged(targets, preds, average).items()})
    out["subset_accuracy"] = (targets == preds).all(1).mean()
    out["hamming_loss"] = (targets != preds).mean()
    tp, fp, fn = _counts(targets, preds, axis=1)
    out["jaccard_samples"] = _ratio(tp, tp + fp + fn).mean()
    out.update(_roc_auc(probs, targets))
    out.update(ranking_metrics(probs, targets))
    out["labels_without_positives"] = int((targets.sum(0) == 0).sum())
    if hierarchy is not None:  # 0 by construction (a predicted label brings its ancestors): counted, not assumed
        out["inconsistent_predictions"] = hierarchy.inconsistent(preds)
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}


def level_metrics(probs: np.ndarray, targets: np.ndarray, preds: np.ndarray) -> dict:
    """One level's micro and macro F1, precision and recall, and its ranking metrics."""
    out, targets = {}, targets.astype(np.int64)
    for average in ("micro", "macro"):
        out.update({f"{average}_{name}": value for name, value in _averaged(targets, preds, average).items()})
    out.update(ranking_metrics(probs, targets))
    return {k: float(v) for k, v in out.items()}


def _counts(targets, preds, axis: int):
    """True positives, false positives and false negatives per label (axis 0) or per document (axis 1)."""
    tp = (targets & preds).sum(axis)
    return tp, preds.sum(axis) - tp, targets.sum(axis) - tp


def _ratio(a, b) -> np.ndarray:
    """a / b, and 0 where b is 0 (scikit-learn's zero_division=0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def _averaged(targets, preds, average: str) -> dict:
    """F1, precision and recall of 0/1 matrices as scikit-learn averages them for multi-label indicators, in
    NumPy: one label is multi-label too here (scikit-learn takes a single column for a binary task and would
    average in the negative class)."""
    tp, fp, fn = _counts(targets, preds, axis=1 if average == "samples" else 0)
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    scores = {"f1": _ratio(2 * tp, 2 * tp + fp + fn), "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn)}
    if average == "weighted":
        support = tp + fn
        return {name: float(_ratio((value * support).sum(), support.sum())) for name, value in scores.items()}
    return {name: float(np.mean(value)) for name, value in scores.items()}


def f1_scores(probs: np.ndarray, targets: np.ndarray, thresholds, hierarchy=None) -> dict:
    """Micro and macro F1 (and each level's, with a `hierarchy`)."""
    preds, targets = binarize(probs, thresholds, hierarchy), targets.astype(np.int64)
    out = {f"{average}_f1": _averaged(targets, preds, average)["f1"] for average in ("micro", "macro")}
    for level, columns in (hierarchy.levels.items() if hierarchy is not None else ()):
        out.update({f"{level}_{average}_f1": _averaged(targets[:, columns], preds[:, columns], average)["f1"]
                    for average in ("micro", "macro")})
    return out


def _roc_auc(probs, targets) -> dict:
    positives = targets.sum(0)
    both = (positives > 0) & (positives < len(targets))
    if not both.any():
        return {"roc_auc_micro": float("nan"), "roc_auc_macro": float("nan")}
    probs, targets = probs[:, both], targets[:, both]
    return {"roc_auc_micro": float(_auc(probs.reshape(-1, 1), targets.reshape(-1, 1))[0]),
            "roc_auc_macro": float(_auc(probs, targets).mean())}


def _auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC-AUC of each column from the ranks of its scores (Mann-Whitney, ties counted half), as scikit-learn's
    roc_auc_score gives it, in seconds instead of minutes at 4,000 labels x 6,000 documents."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=0)
    p = positive.sum(0).astype(np.float64)
    n = len(positive) - p
    return ((ranks * positive).sum(0) - p * (p + 1) / 2) / (p * n)


def ranking_metrics(probs: np.ndarray, targets: np.ndarray) -> dict:
    """Over the documents with a gold label; none with a single label, where there is nothing to rank."""
    has_gold = targets.sum(1) > 0
    probs, targets = probs[has_gold], targets[has_gold]
    if len(targets) == 0 or targets.shape[1] < 2:
        return {}
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked_gold = np.take_along_axis(targets, order, axis=1)
    out = {}
    n_gold = targets.sum(1)
    for k in TOP_K:
        if k <= targets.shape[1]:
            hits = ranked_gold[:, :k].sum(1)
            out[f"precision_at_{k}"] = hits.mean() / k
            out[f"r_precision_at_{k}"] = (hits / np.minimum(k, n_gold)).mean()  # RP@k: of min(k, R) gold labels
            out[f"ndcg_at_{k}"] = skm.ndcg_score(targets, probs, k=k)
    hits_at_r = np.array([row[:r].sum() for row, r in zip(ranked_gold, n_gold)])
    out["mean_r_precision"] = (hits_at_r / n_gold).mean()  # R-Precision: precision in the top R, R gold labels
    out["lrap"] = skm.label_ranking_average_precision_score(targets, probs)
    return out


def per_label_report(probs, targets, thresholds, label_names, hierarchy=None) -> list[dict]:
    """One row per label (support, precision, recall, F1, threshold), most frequent first."""
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (targets.shape[1],))
    preds = binarize(probs, thresholds, hierarchy)
    tp, fp, fn = _counts(targets.astype(np.int64), preds, axis=0)
    precision, recall, f1, support = _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn), tp + fn
    rows = [{"label": name, "support": int(s), "precision": float(p), "recall": float(r), "f1": float(f),
             "threshold": float(t)} for name, s, p, r, f, t in zip(label_names, support, precision, recall, f1,
                                                                    thresholds)]
    return sorted(rows, key=lambda row: -row["support"])
