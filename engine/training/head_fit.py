"""The fused head fitted to convergence over the training documents' TF-IDF vectors and embeddings."""
import time
import warnings

import numpy as np
import torch

from data.tfidf import TfidfVocabulary
from engine.amp import autocast
from engine.distributed import gather_rows
from engine.predictions import collect_probabilities
from engine.losses import log_odds
from engine.metrics import multilabel_metrics

WEIGHT_BUDGET_BYTES = 1 << 30
"""The TF-IDF block of the fused head is dense (terms x labels, fp32): its vocabulary is cut to the most frequent
terms that keep it within this, so that the sparse part adds at most about 1 GiB to a run or a server (what that
costs at each EUROVOC level: docs/results.md, EU law)."""


def fit_vocabulary(texts: list[str], max_terms: int, num_labels: int, log=print) -> TfidfVocabulary:
    """The training split's TF-IDF vocabulary: at most `max_terms` terms, and at most what WEIGHT_BUDGET_BYTES
    holds at `num_labels` labels."""
    budget = max(1, WEIGHT_BUDGET_BYTES // (4 * num_labels))
    start = time.perf_counter()
    vocabulary = TfidfVocabulary.fit(texts, min(max_terms, budget))
    cut = f" (at most {budget:,} at {num_labels:,} labels: terms x labels x 4 bytes within 1 GiB)" \
        if budget < max_terms else ""
    log(f"TF-IDF vocabulary: {len(vocabulary):,} terms of the training texts{cut}, "
        f"{time.perf_counter() - start:.1f} s")
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
    """[TF-IDF vector, scale * normalised embedding] per document, as one sparse matrix of the float32 values in
    float64: liblinear's type, which LinearSVC would otherwise copy the matrix into once per label."""
    import scipy.sparse as sp

    offsets, ids, values = tfidf_rows
    tfidf = sp.csr_matrix((values, ids, offsets), shape=(len(offsets) - 1, max(1, tfidf_size)))
    features = sp.hstack([tfidf, sp.csr_matrix((scale * embeddings).astype(np.float32))], format="csr",
                         dtype=np.float64)
    features.sort_indices()
    return features


SMALL_FIT = 20_000_000  # labels x stored features below which the SVMs are fitted in this process


def fit_label(features, y: np.ndarray, c: float) -> tuple[np.ndarray, float, bool]:
    """One label's squared-hinge SVM -> (weights, bias, whether it stopped at liblinear's iteration limit)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    with warnings.catch_warnings():  # counted by the caller, not printed once per label
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm = LinearSVC(C=c, random_state=0).fit(features, y)
    return svm.coef_[0].astype(np.float32), float(svm.intercept_[0]), bool(svm.n_iter_ >= svm.max_iter)


def fit_head(features, labels: list[list[int]], c: float, prior: torch.Tensor, jobs: int,
             tfidf_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """One L2-regularised squared-hinge SVM per label (liblinear, one-vs-rest, as bench/svm_baseline.py) over
    `features` (their first `len(tfidf_weight)` columns the TF-IDF terms). The TF-IDF block of the weights is
    written into `tfidf_weight` (terms x labels: the fused head's own buffer, so that the GiB it takes at thousands
    of labels is not held twice); returns the embedding block (embedding x labels), the biases, and how many
    labels' fits stopped at liblinear's iteration limit. The margins are the head's logits: a label is predicted at
    0.5 where its margin is positive. A label that every training document has, or none, gets no SVM: weights 0 and
    its prior's log-odds as its bias. Squared hinge beat logistic regression at every C tried (docs/results.md, EU
    law). `jobs` worker processes, not threads: liblinear draws from C's one global rand(), which threads fitting
    side by side would share, so that two runs would differ by about 1e-6; a process reseeds its own for each
    label, and joblib memory-maps the features for them once."""
    from joblib import Parallel, delayed

    terms, num_labels = tfidf_weight.shape
    y = np.zeros((num_labels, features.shape[0]), dtype=np.int8)
    for row, indices in enumerate(labels):
        y[indices, row] = 1
    counts = y.sum(1)
    tfidf_weight[:] = 0
    embedding = np.zeros((features.shape[1] - terms, num_labels), dtype=np.float32)
    bias = log_odds(prior).numpy().astype(np.float32)
    fitted = np.flatnonzero((counts > 0) & (counts < features.shape[0]))
    stopped = 0
    if len(fitted) * features.nnz < SMALL_FIT:  # not worth starting worker processes
        jobs = 1
    results = Parallel(n_jobs=jobs, return_as="generator")(delayed(fit_label)(features, y[j], c) for j in fitted)
    for j, (weights, intercept, limit) in zip(fitted, results):
        tfidf_weight[:, j], embedding[:, j], bias[j] = weights[:terms], weights[terms:], intercept
        stopped += limit
    return embedding, bias, stopped


def fit_fused_head(model, loader, tfidf_rows: tuple, labels: list[list[int]], cfg: dict, prior: torch.Tensor,
                   device, amp_dtype, log=print) -> dict:
    """Fit `model.fused` (model/fused_head.py) over the training documents of `loader` (in dataset order, no
    shuffling): their embeddings now, their TF-IDF vectors (`tfidf_rows`, CSR arrays), scaled by
    cfg["embedding_scale"] against each other, C = cfg["svm_c"]. Every DDP rank fits the same head from the
    gathered rows. Returns the seconds spent embedding and fitting."""
    start = time.perf_counter()
    embeddings = collect_embeddings(model, loader, device, amp_dtype)
    embedded = time.perf_counter()
    tfidf_size = model.fused.tfidf_weight.shape[0]
    features = fused_features(tfidf_rows, tfidf_size, embeddings, cfg["embedding_scale"])
    jobs = torch.get_num_threads()
    model.fused.activate(False)
    buffer = model.fused.tfidf_weight
    tfidf_weight = buffer.numpy() if buffer.device.type == "cpu" else np.zeros(tuple(buffer.shape), dtype=np.float32)
    embedding, bias, stopped = fit_head(features, labels, cfg["svm_c"], prior, jobs, tfidf_weight)
    if stopped:
        log(f"note: {stopped} of the labels' SVMs stopped at liblinear's iteration limit before converging (a "
            "lower --svm-c converges sooner)")
    if buffer.device.type != "cpu":
        buffer.copy_(torch.from_numpy(tfidf_weight))
    model.fused.set_weights(torch.from_numpy(embedding.T * cfg["embedding_scale"]), torch.from_numpy(bias))
    seconds = {"embed_seconds": embedded - start, "fit_seconds": time.perf_counter() - embedded}
    log(f"fused head fitted on {len(embeddings):,} documents x {features.shape[1]:,} features: "
        f"{seconds['embed_seconds']:.1f} s embedding, {seconds['fit_seconds']:.1f} s fitting")
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
