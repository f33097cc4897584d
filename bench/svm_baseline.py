"""TF-IDF + one linear SVM per label on EURLEX57K at each EUROVOC level: the baseline every encoder figure is read
against, on the same splits, scored by the same metrics module (engine/metrics.py).

    python bench/svm_baseline.py --levels domains microthesauri                    # all 45,000 training laws
    python bench/svm_baseline.py --levels descriptors --max-train-samples 10000    # what fits in the time at hand

Words and bigrams (sublinear tf, terms in at least 2 laws), LinearSVC with C=1 per label (one-vs-rest); a label
is predicted where its margin is positive, and the margins rank the labels for P@k, RP@k and nDCG@k. Labels no
training law has get no classifier and are never predicted. Prints one row per level.
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data import load_examples  # noqa: E402
from engine.metrics import multilabel_metrics  # noqa: E402

COLUMNS = ("micro_f1", "macro_f1", "precision_at_1", "precision_at_5", "r_precision_at_5", "ndcg_at_5")


def multi_hot(labels, num_labels) -> np.ndarray:
    y = np.zeros((len(labels), num_labels), dtype=np.int8)
    for row, indices in enumerate(labels):
        y[row, indices] = 1
    return y


def fit_and_score(train, val, num_labels, args) -> tuple[dict, float]:
    from joblib import Parallel, delayed
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=args.max_features,
                                 dtype=np.float32)
    x_train, x_val = vectorizer.fit_transform(train.texts), vectorizer.transform(val.texts)
    y_train = multi_hot(train.labels, num_labels)
    trainable = np.flatnonzero((y_train.sum(0) > 0) & (y_train.sum(0) < len(y_train)))

    def fit(j):
        svm = LinearSVC(C=args.c).fit(x_train, y_train[:, j])
        return svm.coef_.ravel().astype(np.float32), float(svm.intercept_[0])

    fitted = Parallel(n_jobs=args.jobs)(delayed(fit)(j) for j in trainable)
    margins = np.full((len(val.texts), num_labels), -10.0, dtype=np.float32)
    if fitted:
        weights = np.stack([w for w, _ in fitted], axis=1)
        margins[:, trainable] = x_val @ weights + np.array([b for _, b in fitted], dtype=np.float32)
    probs = 1 / (1 + np.exp(-margins))  # at 0.5 exactly where the margin is positive; the ranking is the margins'
    return multilabel_metrics(probs, multi_hot(val.labels, num_labels), 0.5), time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "eurlex57k"))
    p.add_argument("--levels", nargs="+", default=["domains", "microthesauri", "descriptors"])
    p.add_argument("--max-train-samples", type=int, default=None, help="the first N training laws (a fair sample)")
    p.add_argument("--max-eval-samples", type=int, default=None, help="the first N validation laws")
    p.add_argument("--max-features", type=int, default=200_000)
    p.add_argument("--c", type=float, default=1.0)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    print(f"{'level':14s} {'labels':>6s} {'train':>6s} {'val':>5s} " + " ".join(f"{c:>16s}" for c in COLUMNS)
          + f" {'seconds':>8s}", flush=True)
    for level in args.levels:
        splits, names = load_examples(args.data, label_column=level, max_train_samples=args.max_train_samples,
                                      max_eval_samples=args.max_eval_samples, log=lambda *a: None)
        metrics, seconds = fit_and_score(splits["train"], splits["validation"], len(names), args)
        print(f"{level:14s} {len(names):6d} {len(splits['train']):6d} {len(splits['validation']):5d} "
              + " ".join(f"{metrics[c]:16.4f}" for c in COLUMNS) + f" {seconds:8.0f}", flush=True)


if __name__ == "__main__":
    main()
