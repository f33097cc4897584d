"""The fused head fitted to convergence over the training documents' TF-IDF vectors and embeddings."""
import time

import numpy as np
import torch

from data.tfidf import TfidfVocabulary
from engine.amp import autocast
from engine.config import ConfigError
from engine.distributed import gather_rows
from engine.embedding_cache import cached_embeddings
from engine.predictions import collect_probabilities
from engine.losses import log_odds
from engine.metrics import multilabel_metrics


def require_fit_library(features: str) -> None:
    """A run with a fused head needs liblinear-multicore for its fit: said before anything is read or trained."""
    import importlib.util

    if features != "encoder" and importlib.util.find_spec("liblinear") is None:
        raise ConfigError(f"--features {features}: the fused head is fitted with liblinear-multicore, which is not "
                          "installed: pip install -e '.[fused]' (make install does), or train --features encoder")


def fit_vocabulary(texts: list[str], max_terms: int, log=print) -> TfidfVocabulary:
    """The training split's TF-IDF vocabulary: at most `max_terms` terms."""
    start = time.perf_counter()
    vocabulary = TfidfVocabulary.fit(texts, max_terms)
    log(f"TF-IDF vocabulary: {len(vocabulary):,} terms of the training texts, {time.perf_counter() - start:.1f} s")
    return vocabulary


@torch.no_grad()
def collect_embeddings(model, loader, device, amp_dtype) -> np.ndarray:
    """Every document's normalised embedding (`normalized_embeddings`, fp32), in dataset order, the model in eval
    mode; under DDP the ranks' rows are gathered."""
    model.eval()
    rows, embeddings = [], []
    for batch in loader:
        window_doc = batch.get("window_doc")
        with autocast(device, amp_dtype):
            found = model.normalized_embeddings(batch["input_ids"].to(device),
                                                batch["attention_mask"].to(device),
                                                None if window_doc is None else window_doc.to(device),
                                                len(batch["labels"]), batch.get("window_groups"))
        embeddings.append(found.float().cpu().numpy())
        rows.append(batch["index"].numpy())
    rows, embeddings = gather_rows(np.concatenate(rows)), gather_rows(np.concatenate(embeddings))
    return embeddings[np.argsort(rows, kind="stable")]


def fused_features(tfidf_rows: tuple, tfidf_size: int, embeddings: np.ndarray, scale: float):
    """[TF-IDF vector, scale * normalised embedding, 1] per document, as one sparse matrix of the float32 values in
    float64 (liblinear's type); the last column is the bias's, regularised as LinearSVC's intercept is
    (liblinear's own -B bias left the intercept at 0 in liblinear-multicore 2.50's Python problem)."""
    import scipy.sparse as sp

    offsets, ids, values = tfidf_rows
    tfidf = sp.csr_matrix((values, ids, offsets), shape=(len(offsets) - 1, max(1, tfidf_size)))
    rest = np.concatenate([scale * embeddings, np.ones((len(embeddings), 1))], axis=1).astype(np.float32)
    features = sp.hstack([tfidf, sp.csr_matrix(rest)], format="csr", dtype=np.float64)
    features.sort_indices()
    return features


BLOCK = 64  # labels a forked process fits in turn (dual solver): fixed, so the weights do not depend on --workers
_FORKED = {}  # what a block's process inherits from the fit that forked it


def fit_head(features, labels: list[list[int]], c: float, prior: torch.Tensor, jobs: int, terms: int,
             prune: float, solver: str = "dual", start=None) -> tuple[dict, np.ndarray, np.ndarray]:
    """One L2-regularised squared-hinge SVM per label (one-vs-rest, as bench/svm_baseline.py) over `features` (their
    first `terms` columns the TF-IDF terms, the last the bias's: `fused_features`), by liblinear-multicore on one
    problem built once (LibMultiLabel's way: LinearSVC converted the features again for every label). `solver`:
    dual, liblinear's dual coordinate descent (LinearSVC's), the fastest from scratch; its shuffles draw from one
    process-wide seed, so BLOCK labels are fitted in turn by a process forked for them, `jobs` at a time, which
    makes the weights the same however many there are. primal, liblinear's trust-region Newton method (-s 2), which
    draws nothing random and so runs `jobs` labels at a time on threads (liblinear releases the GIL), and which
    starts each label from `start(label)` (the last fit's weights, `warm_start`): the problem is convex, so a warm
    start reaches the same optimum. docs/results.md (EU law, the fit) measures both. The TF-IDF weights below
    `prune` in size are dropped. Returns the TF-IDF block as CSR arrays over terms (model.fused_head.SPARSE_KEYS),
    the embedding block (embedding x labels) and the biases. A label that every training document has, or none,
    gets no SVM: weights 0 and its prior's log-odds as its bias. The margins are the head's logits: a label is
    predicted at 0.5 where its margin is positive."""
    from liblinear.liblinearutil import problem

    num_docs, width = features.shape
    positives = [[] for _ in range(len(prior))]
    for row, indices in enumerate(labels):
        for j in indices:
            positives[j].append(row)
    fitted = [j for j, docs in enumerate(positives) if 0 < len(docs) < num_docs]
    _FORKED.update(base=problem(np.ones(num_docs), features), positives=positives, width=width, terms=terms,
                   prune=prune, options=f"-s {2 if solver == 'primal' else 1} -c {c} -q",
                   start=start if solver == "primal" else None)
    try:
        if solver == "primal":
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max(1, jobs)) as pool:
                results = list(pool.map(fit_label, fitted))
        else:
            import multiprocessing

            blocks = [fitted[i:i + BLOCK] for i in range(0, len(fitted), BLOCK)]
            with multiprocessing.get_context("fork").Pool(max(1, jobs), maxtasksperchild=1) as pool:
                results = [found for block in pool.imap(fit_block, blocks) for found in block]
    finally:
        _FORKED.clear()
    embedding = np.zeros((width - 1 - terms, len(prior)), dtype=np.float32)
    bias = log_odds(prior).numpy().astype(np.float32)
    kept = {}
    for j, (terms_kept, values, embedding_part, label_bias) in zip(fitted, results):
        kept[j], embedding[:, j], bias[j] = (terms_kept, values), embedding_part, label_bias
    return sparse_columns(kept, terms, len(prior)), embedding, bias


def fit_block(block: list[int]) -> list[tuple]:
    return [fit_label(j) for j in block]


def fit_label(j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Label j's SVM on the problem `fit_head` built -> (TF-IDF terms kept, their weights, the embedding's weights,
    the bias)."""
    from ctypes import POINTER, c_double

    from liblinear.liblinearutil import parameter, train

    width, terms, start = _FORKED["width"], _FORKED["terms"], _FORKED["start"]
    y = np.full(_FORKED["base"].l, -1.0)
    y[_FORKED["positives"][j]] = 1.0
    prob, param = _FORKED["base"].copy(), parameter(_FORKED["options"])
    prob.y = y.ctypes.data_as(POINTER(c_double))
    init = None if start is None else start(j)
    if init is not None:
        param.init_sol = init.ctypes.data_as(POINTER(c_double))
    model = train(prob, param)
    w = np.ctypeslib.as_array(model.w, (width,)).astype(np.float32)
    if model.get_labels()[0] == -1:  # liblinear's first label is the positive one
        w = -w
    terms_kept = np.flatnonzero(np.abs(w[:terms]) >= _FORKED["prune"]).astype(np.int32)
    return terms_kept, w[terms_kept], w[terms:width - 1], float(w[width - 1])


def sparse_columns(columns: dict, terms: int, num_labels: int) -> dict:
    """{label: (term indices, weights)} -> the terms x labels block as CSR arrays over terms (model.fused_head.SPARSE_KEYS)."""
    found = sorted(columns)
    rows = np.concatenate([columns[j][0] for j in found]) if found else np.zeros(0, dtype=np.int32)
    values = np.concatenate([columns[j][1] for j in found]) if found else np.zeros(0, dtype=np.float32)
    cols = np.concatenate([np.full(len(columns[j][0]), j, dtype=np.int32) for j in found]) if found else rows
    order = np.argsort(rows, kind="stable")  # by term, then (as concatenated) by label
    offsets = np.zeros(max(1, terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=max(1, terms)), out=offsets[1:])
    if offsets[-1] >= 2 ** 31:
        raise ValueError(f"the fused head keeps {offsets[-1]:,} TF-IDF weights, more than int32 indexes: raise "
                         "--tfidf-prune or lower --tfidf-terms")
    return {"tfidf_offsets": torch.from_numpy(offsets.astype(np.int32)),
            "tfidf_labels": torch.from_numpy(cols[order].astype(np.int32)),
            "tfidf_weights": torch.from_numpy(values[order].astype(np.float32))}


def warm_start(fused, scale: float):
    """The fused head's weights as the fit's starting point: label j -> its weights over `fused_features`'s columns
    (fp64: the TF-IDF block as stored, pruned; the embedding's unscaled, as the features hold it scaled; the bias),
    zeros before the first fit. Built a column at a time: the dense block would take GBs at thousands of labels."""
    import scipy.sparse as sp

    terms = fused.tfidf_size
    tfidf = sp.csr_matrix((fused.tfidf_weights.cpu().numpy(), fused.tfidf_labels.cpu().numpy(),
                           fused.tfidf_offsets.cpu().numpy()), shape=(terms, fused.num_labels)).tocsc()
    rest = np.concatenate([fused.embedding_weight.cpu().numpy().T / scale, fused.bias.cpu().numpy()[None]])

    def column(j: int) -> np.ndarray:
        found = np.zeros(terms + len(rest))
        start, end = tfidf.indptr[j], tfidf.indptr[j + 1]
        found[tfidf.indices[start:end]] = tfidf.data[start:end]
        found[terms:] = rest[:, j]
        return found

    return column


def fit_fused_head(model, loader, tfidf_rows: tuple, labels: list[list[int]], cfg: dict, prior: torch.Tensor,
                   device, amp_dtype, log=print, tokens_key: str | None = None) -> dict:
    """Fit `model.fused` (model/fused_head.py) over the training documents of `loader` (in dataset order, no
    shuffling): their embeddings now, their TF-IDF vectors (`tfidf_rows`, CSR arrays), scaled by
    cfg["embedding_scale"] against each other, C = cfg["svm_c"]. Every DDP rank fits the same head from the
    gathered rows. A frozen encoder's (--epochs 0) embeddings are cached in cfg["cache_dir"] beside the token ids
    (`tokens_key`: engine/embedding_cache.py), so that a run at another level, or with other fit settings, reads
    them. Returns the seconds spent embedding and fitting."""
    start = time.perf_counter()
    cache_dir = cfg["cache_dir"] if cfg["epochs"] == 0 else None
    embeddings = cached_embeddings(lambda: collect_embeddings(model, loader, device, amp_dtype), cache_dir,
                                   tokens_key, model, cfg, device, amp_dtype, len(labels), log)
    embedded = time.perf_counter()
    fused, scale = model.fused, cfg["embedding_scale"]
    features = fused_features(tfidf_rows, fused.tfidf_size, embeddings, scale)
    start_from = warm_start(fused, scale) if cfg["svm_solver"] == "primal" else None
    fused.activate(False)
    tfidf, embedding, bias = fit_head(features, labels, cfg["svm_c"], prior, torch.get_num_threads(),
                                      fused.tfidf_size, cfg["tfidf_prune"], cfg["svm_solver"], start_from)
    fused.set_weights(tfidf, torch.from_numpy(embedding.T * scale), torch.from_numpy(bias))
    seconds = {"embed_seconds": embedded - start, "fit_seconds": time.perf_counter() - embedded}
    kept = len(fused.tfidf_weights) / max(1, fused.tfidf_size * fused.num_labels)
    log(f"fused head fitted on {len(embeddings):,} documents x {features.shape[1]:,} features: "
        f"{seconds['embed_seconds']:.1f} s embedding, {seconds['fit_seconds']:.1f} s fitting; "
        f"{len(fused.tfidf_weights):,} TF-IDF weights kept ({kept:.1%}, |w| >= {cfg['tfidf_prune']:g})")
    return seconds


HEADLINE = ("loss", "micro_f1", "macro_f1", "precision_at_1", "precision_at_5", "r_precision_at_5", "ndcg_at_5")


def score_heads(state, loader, loss_fn, cfg: dict, fused_probs, fused_metrics: dict, hierarchy=None) -> tuple:
    """Validation of a run with a fitted fused head: the encoder's own head (the one training runs through) scored
    too, in one more pass with the fused head set aside; with --features auto, the fused head stays active only if
    it scores at least the encoder head's --select-metric (on tweets it did not: docs/results.md). Returns the
    predicting head's (probabilities, metrics), the other head's headline metrics added under its name, and
    `fused_head` 1 or 0. A fused run's encoder head scores exactly what a --features encoder run does
    (tests/test_fused.py): what the fused head adds is measured in one run."""
    fused = state.model.fused
    fused.ready = False
    try:
        probs, targets, loss = collect_probabilities(state.eval_model, loader, state.device, state.amp_dtype, loss_fn,
                                                     hierarchy)
    finally:
        fused.ready = True
    encoder_metrics = {"loss": loss, **multilabel_metrics(probs, targets, cfg["threshold"], hierarchy)}
    metric = cfg["select_metric"]
    if cfg["features"] == "auto" and encoder_metrics[metric] > fused_metrics[metric]:
        fused.activate(False)
        chosen, other, name = (probs, encoder_metrics), fused_metrics, "fused"
    else:
        chosen, other, name = (fused_probs, fused_metrics), encoder_metrics, "encoder"
    return chosen[0], {**chosen[1], **{f"{name}_{k}": other[k] for k in HEADLINE if k in other},
                       "fused_head": float(fused.ready)}
