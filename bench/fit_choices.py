"""The fused head's fit, side by side on the same features (a law's TF-IDF vector and its frozen MiniLM embedding,
as a `--epochs 0` run builds them): each way of fitting one squared-hinge SVM per label, its time on this machine,
and its validation micro / macro-F1, P@5, RP@5 and nDCG@5 at margin 0 (TF-IDF weights |w| < each --prune set to 0,
as the head stores them). docs/results.md (EU law, the fit) has the runs.

    python bench/fit_choices.py --level descriptors --max-train-samples 10000 --methods liblinear-dual sklearn
    methods: sklearn (LinearSVC per label in joblib's processes, the fit before #46), liblinear-dual and
    liblinear-primal (engine/training/head_fit.py's fit_head, --svm-solver dual / primal: liblinear-multicore on
    one problem built once), liblinear-dual-threads (-s 1 on threads, as LibMultiLabel's train_1vsrest: fast, but
    its weights depend on which thread fitted what), libmultilabel-tree (LibMultiLabel's label tree, which predicts
    by its own search over the tree, not by one linear head)
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
from data.tfidf import TfidfVocabulary  # noqa: E402
from data.tokenized import tokenize  # noqa: E402
from engine.amp import dtype_from_name  # noqa: E402
from engine.config import make_config  # noqa: E402
from engine.metrics import multilabel_metrics  # noqa: E402
from engine.training import head_fit  # noqa: E402
from engine.training.run_config import for_device  # noqa: E402
from model.classifier import build_model  # noqa: E402
from model.encoders import load_tokenizer  # noqa: E402

COLUMNS = ("micro_f1", "macro_f1", "precision_at_5", "r_precision_at_5", "ndcg_at_5")
METHODS = ("sklearn", "liblinear-dual", "liblinear-primal", "liblinear-dual-threads", "libmultilabel-tree")


def features(args) -> tuple[dict, dict, int]:
    """{split: CSR features}, {split: 0/1 targets}, the number of TF-IDF columns; cached in --cache."""
    path = os.path.join(args.cache, f"{args.level}-{args.max_train_samples}-{args.max_eval_samples}-"
                                    f"{args.max_terms}-{args.scale}-bias.npz")
    splits, names = load_examples(args.data, label_column=args.level, max_train_samples=args.max_train_samples,
                                  max_eval_samples=args.max_eval_samples, log=lambda *a: None)
    targets = {}
    for split in ("train", "validation"):
        targets[split] = np.zeros((len(splits[split]), len(names)), dtype=np.int8)
        for row, labels in enumerate(splits[split].labels):
            targets[split][row, labels] = 1
    if os.path.exists(path):
        stored = np.load(path, allow_pickle=False)
        x = {s: sp.csr_matrix((stored[f"{s}_data"], stored[f"{s}_indices"], stored[f"{s}_indptr"]),
                              shape=tuple(stored[f"{s}_shape"])) for s in targets}
        return x, targets, int(stored["terms"])
    cfg = for_device(make_config(model=args.model, features="encoder"), torch.device("cpu"))
    model, tokenizer = build_model(cfg, len(names)), load_tokenizer(args.model)
    vocabulary = TfidfVocabulary.fit(splits["train"].texts, args.max_terms)
    x = {}
    for split in targets:
        start = time.perf_counter()
        loader = build_loader(tokenize(splits[split], tokenizer, cfg["max_length"], len(names)), 64,
                              tokenizer.pad_token_id, False)
        embeddings = head_fit.collect_embeddings(model, loader, torch.device("cpu"), dtype_from_name(cfg["amp_dtype"]))
        print(f"{split}: {len(embeddings):,} laws embedded in {time.perf_counter() - start:.0f} s", flush=True)
        x[split] = head_fit.fused_features(vocabulary.rows(splits[split].texts), len(vocabulary), embeddings,
                                           args.scale)
    os.makedirs(args.cache, exist_ok=True)
    np.savez(path, terms=len(vocabulary), **{f"{s}_{k}": getattr(m, k) for s, m in x.items()
                                             for k in ("data", "indices", "indptr")},
             **{f"{s}_shape": np.array(m.shape) for s, m in x.items()})
    return x, targets, len(vocabulary)


def fit_liblinear(x, y: np.ndarray, c: float, solver: int, jobs: int) -> tuple[np.ndarray, np.ndarray]:
    """One liblinear problem (the feature nodes built once) and one SVM per label on `jobs` threads (liblinear
    releases the GIL), as LibMultiLabel's train_1vsrest; the bias is the features' last column (regularised, as
    LinearSVC's)."""
    from concurrent.futures import ThreadPoolExecutor
    from ctypes import c_double

    from liblinear.liblinearutil import parameter, problem, train

    base = problem(np.ones(x.shape[0]), x)  # the last column is the bias's (head_fit.fused_features)
    param = parameter(f"-s {solver} -c {c} -q")
    weights = np.zeros((x.shape[1] - 1, y.shape[1]), dtype=np.float32)
    bias = np.zeros(y.shape[1], dtype=np.float32)

    def fit(j):
        prob = base.copy()
        prob.y = (c_double * prob.l)(*(2.0 * y[:, j] - 1))
        model = train(prob, param)
        w = np.ctypeslib.as_array(model.w, (x.shape[1],))
        sign = -1.0 if model.get_labels()[0] == -1 else 1.0
        weights[:, j], bias[j] = sign * w[:-1], sign * w[-1]

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(fit, range(y.shape[1])))
    return weights, bias


def fit_sklearn(x, y: np.ndarray, c: float, jobs: int) -> tuple[np.ndarray, np.ndarray]:
    """The fit before #46: scikit-learn's LinearSVC per label, in `jobs` worker processes (joblib), each label's
    fit converting the features to liblinear's own form again."""
    from joblib import Parallel, delayed
    from sklearn.svm import LinearSVC

    def fit(j):
        svm = LinearSVC(C=c, random_state=0).fit(x, y[:, j])
        return svm.coef_[0].astype(np.float32), float(svm.intercept_[0])

    fitted = Parallel(n_jobs=jobs)(delayed(fit)(j) for j in range(y.shape[1]))
    return np.stack([w for w, _ in fitted], axis=1), np.array([b for _, b in fitted], dtype=np.float32)


def fit_tree(x, y: np.ndarray, c: float, validation) -> np.ndarray:
    """LibMultiLabel's label tree: its scores of the validation laws (a tree predicts by its own beam search)."""
    import libmultilabel.linear as linear

    model = linear.train_tree(sp.csr_matrix(y), x, f"-s 1 -c {c} -B 1 -q", verbose=False)
    return np.asarray(linear.predict_values(model, validation))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "eurlex57k"))
    p.add_argument("--level", default="descriptors")
    p.add_argument("--model", default="minilm")
    p.add_argument("--max-train-samples", type=int, default=2000)
    p.add_argument("--max-eval-samples", type=int, default=1000)
    p.add_argument("--max-terms", type=int, default=200_000)
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--c", type=float, default=2.0)
    p.add_argument("--prune", nargs="+", type=float, default=[0.0, 0.01, 0.03])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--cache", default=os.path.join(ROOT, "..", "bench-cache"))
    args = p.parse_args()
    x, targets, terms = features(args)
    counts = targets["train"].sum(0)
    trainable = np.flatnonzero((counts > 0) & (counts < len(counts)))
    print(f"{args.level}: {targets['train'].shape[1]:,} labels ({len(trainable):,} with an SVM), "
          f"{x['train'].shape[0]:,} training laws x {x['train'].shape[1]:,} features ({terms:,} terms, "
          f"{x['train'].nnz:,} stored), {x['validation'].shape[0]:,} validation laws; CPU {os.cpu_count()} cores")
    print(f"{'method':>20s} {'fit s':>7s} {'prune':>6s} {'kept':>6s} " + " ".join(f"{c:>16s}" for c in COLUMNS), flush=True)
    for method in args.methods:
        start = time.perf_counter()
        margins = np.full(targets["validation"].shape, -10.0, dtype=np.float32)
        kept = float("nan")
        if method == "libmultilabel-tree":
            margins = fit_tree(x["train"][:, :-1], targets["train"], args.c, x["validation"][:, :-1]).astype(np.float32)
        else:
            y = targets["train"][:, trainable]
            if method == "sklearn":
                weights, bias = fit_sklearn(x["train"][:, :-1], y, args.c, args.jobs)
            elif method == "liblinear-dual-threads":
                weights, bias = fit_liblinear(x["train"], y, args.c, 1, args.jobs)
            else:  # what the fused head runs (engine/training/head_fit.py), unpruned here to prune below
                labels = [np.flatnonzero(row).tolist() for row in y]
                prior = torch.tensor(y.mean(0), dtype=torch.float32)
                tfidf, embedding, bias = head_fit.fit_head(x["train"], labels, args.c, prior, args.jobs, terms, 0.0,
                                                           method.removeprefix("liblinear-"))
                block = sp.csr_matrix(tuple(tfidf[k].numpy() for k in ("tfidf_weights", "tfidf_labels",
                                                                       "tfidf_offsets")), shape=(terms, y.shape[1]))
                weights = np.concatenate([block.toarray(), embedding])
        seconds = time.perf_counter() - start
        for prune in args.prune if method != "libmultilabel-tree" else [0.0]:
            if method != "libmultilabel-tree":
                pruned = weights.copy()
                pruned[:terms][np.abs(pruned[:terms]) < prune] = 0
                kept = float((pruned[:terms] != 0).mean())
                margins[:, trainable] = x["validation"][:, :-1] @ pruned + bias
            m = multilabel_metrics(1 / (1 + np.exp(-margins)), targets["validation"], 0.5)
            print(f"{method:>20s} {seconds:7.1f} {prune:6.3f} {kept:6.3f} " + " ".join(f"{m[k]:16.4f}" for k in COLUMNS),
                  flush=True)


if __name__ == "__main__":
    main()
