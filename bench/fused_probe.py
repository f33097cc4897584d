"""How to fit a head over a law's TF-IDF vector and a frozen encoder's embedding: squared-hinge SVMs (liblinear's
LinearSVC, as the fused head) against logistic regression (liblinear, the BCE loss), over C, the embedding's scale,
the vocabulary's size and DiSMEC's pruning of the TF-IDF weights (|w| < p set to 0), each scored on validation at
the SVM's own threshold (margin 0). The embeddings are the pretrained encoder's (mean-pooled, L2-normalised); scale 0
is the TF-IDF alone, -1 the embedding alone. docs/results.md (EU law) has the runs.

    python bench/fused_probe.py --level domains --solver svm lr --scale 0 1 2 3 -1 --c 1
    python bench/fused_probe.py --level descriptors --scale 0 --prune 0 0.01 0.03 0.1
"""
import argparse
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data import build_loader, load_examples  # noqa: E402
from data.tokenized import tokenize  # noqa: E402
from data.tfidf import TfidfVocabulary  # noqa: E402
from engine.amp import dtype_from_name  # noqa: E402
from engine.config import make_config  # noqa: E402
from engine.training.head_fit import collect_embeddings  # noqa: E402
from engine.metrics import multilabel_metrics  # noqa: E402
from engine.training.run_config import for_device  # noqa: E402
from model.classifier import build_model  # noqa: E402
from model.encoders import load_tokenizer  # noqa: E402

COLUMNS = ("micro_f1", "macro_f1", "precision_at_5", "r_precision_at_5", "ndcg_at_5")


def fit_labels(solver: str, c: float, x, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from joblib import Parallel, delayed
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    def fit(j):
        model = LinearSVC(C=c, random_state=0) if solver == "svm" else LogisticRegression(C=c, solver="liblinear")
        model.fit(x, y[:, j])
        return model.coef_.ravel().astype(np.float32), float(model.intercept_[0])

    fitted = Parallel(n_jobs=2, prefer="threads")(delayed(fit)(j) for j in range(y.shape[1]))
    return np.stack([w for w, _ in fitted], axis=1), np.array([b for _, b in fitted], dtype=np.float32)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "eurlex57k"))
    p.add_argument("--level", default="domains")
    p.add_argument("--model", default="minilm")
    p.add_argument("--max-train-samples", type=int, default=2000)
    p.add_argument("--max-eval-samples", type=int, default=1000)
    p.add_argument("--solver", nargs="+", default=["svm"], choices=("svm", "lr"))
    p.add_argument("--scale", nargs="+", type=float, default=[2.0])
    p.add_argument("--c", nargs="+", type=float, default=[1.0])
    p.add_argument("--max-terms", nargs="+", type=int, default=[200_000])
    p.add_argument("--prune", nargs="+", type=float, default=[0.0])
    args = p.parse_args()
    splits, names = load_examples(args.data, label_column=args.level, max_train_samples=args.max_train_samples,
                                  max_eval_samples=args.max_eval_samples, log=lambda *a: None)
    cfg = make_config(model=args.model, features="encoder")
    device = torch.device("cpu")
    cfg = for_device(cfg, device)
    model, tokenizer = build_model(cfg, len(names)), load_tokenizer(args.model)
    targets, embeddings = {}, {}
    for split in ("train", "validation"):
        loader = build_loader(tokenize(splits[split], tokenizer, cfg["max_length"], len(names)), 64,
                              tokenizer.pad_token_id, False)
        embeddings[split] = collect_embeddings(model, loader, device, dtype_from_name(cfg["amp_dtype"]))
        targets[split] = np.zeros((len(splits[split]), len(names)), dtype=np.int8)
        for row, labels in enumerate(splits[split].labels):
            targets[split][row, labels] = 1
    trainable = np.flatnonzero((targets["train"].sum(0) > 0) & (targets["train"].sum(0) < len(targets["train"])))
    print(f"{args.level}: {len(names)} labels ({len(trainable)} with an SVM), {len(splits['train'])} training and "
          f"{len(splits['validation'])} validation laws")
    print(f"{'terms':>7s} {'scale':>5s} {'solver':>6s} {'C':>5s} {'prune':>5s} {'kept':>6s} "
          + " ".join(f"{c:>16s}" for c in COLUMNS) + f" {'fit s':>6s}")
    for max_terms in args.max_terms:
        vocabulary = TfidfVocabulary.fit(splits["train"].texts, max_terms)
        tfidf = {split: sp.csr_matrix(tuple(reversed(vocabulary.rows(splits[split].texts))),
                                      shape=(len(splits[split]), len(vocabulary))) for split in embeddings}
        for scale in args.scale:
            x = {split: tfidf[split] if scale == 0 else sp.csr_matrix(embeddings[split]) if scale < 0 else
                 sp.hstack([tfidf[split], sp.csr_matrix(scale * embeddings[split])], format="csr")
                 for split in embeddings}
            for solver in args.solver:
                for c in args.c:
                    start = time.perf_counter()
                    weights, bias = fit_labels(solver, c, x["train"], targets["train"][:, trainable])
                    seconds = time.perf_counter() - start
                    for prune in args.prune:
                        pruned = weights.copy()
                        terms = len(vocabulary) if scale >= 0 else 0
                        pruned[:terms][np.abs(pruned[:terms]) < prune] = 0
                        margins = np.full(targets["validation"].shape, -10.0, dtype=np.float32)
                        margins[:, trainable] = x["validation"] @ pruned + bias
                        m = multilabel_metrics(1 / (1 + np.exp(-margins)), targets["validation"], 0.5)
                        kept = (pruned[:terms] != 0).mean() if terms else 1.0
                        print(f"{len(vocabulary):7d} {scale:5.1f} {solver:>6s} {c:5.1f} {prune:5.2f} {kept:6.3f} "
                              + " ".join(f"{m[k]:16.4f}" for k in COLUMNS) + f" {seconds:6.0f}", flush=True)


if __name__ == "__main__":
    main()
