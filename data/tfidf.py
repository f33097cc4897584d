"""TF-IDF vectors of whole texts (words and word bigrams, sublinear tf, L2-normalised), as scikit-learn's
TfidfVectorizer computes them: the vocabulary and idf are fitted on the training split, and a text's vector is
computed here in plain Python from them. This file imports only the standard library and NumPy (scikit-learn only
to fit), so export.py copies it into an exported folder as `tfidf.py`, beside the vocabulary (`tfidf.json`) and,
for ONNX, the fused head's sparse TF-IDF weights (`tfidf_weights.npz`, `TfidfWeights`: the graph reads their
product with the vectors as its input `tfidf_scores`)."""
import json
import math
import re
from collections import Counter

import numpy as np

TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default: words of two or more letters or digits
FILE_NAME = "tfidf.json"
WEIGHTS_FILE = "tfidf_weights.npz"


class TfidfVocabulary:
    """`terms` (a vector's columns, in order) and their `idf`: a text -> its terms' sublinear counts (1 + log n)
    times their idf, L2-normalised; words and bigrams of lowercased words, as TfidfVectorizer(ngram_range=(1, 2),
    sublinear_tf=True) computes them."""

    def __init__(self, terms: list[str], idf, token_pattern: str = TOKEN_PATTERN, ngrams: int = 2):
        self.terms, self.idf = list(terms), np.asarray(idf, dtype=np.float32)
        self.token_pattern, self.ngrams = token_pattern, ngrams
        self.index = {term: i for i, term in enumerate(self.terms)}
        self._tokens = re.compile(token_pattern)
        if len(self.index) != len(self.terms) or self.idf.shape != (len(self.terms),):
            raise ValueError(f"a TF-IDF vocabulary needs one idf per distinct term ({len(self.terms)} terms, "
                             f"{len(self.index)} distinct, {self.idf.shape[0] if self.idf.ndim else 0} idf values)")

    def __len__(self):
        return len(self.terms)

    @classmethod
    def fit(cls, texts: list[str], max_terms: int, min_df: int = 2) -> "TfidfVocabulary":
        """The `max_terms` most frequent terms of `texts` found in at least `min_df` of them (fewer texts than
        that: in one), with their smoothed idf, by scikit-learn."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=min(min_df, len(texts)), sublinear_tf=True,
                                     max_features=max_terms, token_pattern=TOKEN_PATTERN, dtype=np.float32)
        try:
            vectorizer.fit(texts)
        except ValueError:  # no text holds a word of two letters: an empty vocabulary
            return cls([], np.zeros(0, dtype=np.float32))
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        return cls(terms, vectorizer.idf_.astype(np.float32))

    def vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(term indices, values) of one text's TF-IDF vector, indices ascending."""
        words = self._tokens.findall(text.lower())
        grams = list(words)
        for n in range(2, self.ngrams + 1):
            grams += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        counts = Counter(self.index[g] for g in grams if g in self.index)
        ids = np.fromiter(sorted(counts), dtype=np.int64, count=len(counts))
        values = np.array([(1.0 + math.log(counts[i])) * self.idf[i] for i in ids], dtype=np.float64)
        norm = math.sqrt(float(values @ values)) if len(values) else 0.0
        return ids, (values / norm if norm else values).astype(np.float32)

    def rows(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every text's vector as CSR arrays: (row offsets, term indices, values)."""
        vectors = [self.vector(text) for text in texts]
        offsets = np.zeros(len(vectors) + 1, dtype=np.int64)
        np.cumsum([len(ids) for ids, _ in vectors], out=offsets[1:])
        ids = np.concatenate([ids for ids, _ in vectors]) if vectors else np.zeros(0, dtype=np.int64)
        values = np.concatenate([v for _, v in vectors]) if vectors else np.zeros(0, dtype=np.float32)
        return offsets, ids.astype(np.int32), values.astype(np.float32)

    def batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The model inputs `tfidf_ids` (int64) and `tfidf_values` (float32) of `texts`: a row per text, padded
        with index 0 and value 0 to the longest."""
        return padded_rows(*self.rows(texts), np.arange(len(texts)))

    def state(self) -> dict:
        """Plain values for a checkpoint or tfidf.json."""
        return {"terms": self.terms, "idf": [float(v) for v in self.idf], "token_pattern": self.token_pattern,
                "ngrams": self.ngrams, "sublinear_tf": True, "norm": "l2", "lowercase": True}

    @classmethod
    def from_state(cls, state: dict) -> "TfidfVocabulary":
        return cls(state["terms"], state["idf"], state.get("token_pattern", TOKEN_PATTERN), state.get("ngrams", 2))

    @classmethod
    def load(cls, folder: str) -> "TfidfVocabulary":
        """The vocabulary of an exported folder (its tfidf.json)."""
        with open(f"{folder}/{FILE_NAME}", encoding="utf-8") as f:
            return cls.from_state(json.load(f))


def padded_rows(offsets: np.ndarray, ids: np.ndarray, values: np.ndarray, rows) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows `rows` as (ids, values) arrays of one row each, padded with index 0 and value 0 (which adds
    nothing to a sum) to the longest; at least one column."""
    rows = np.asarray(rows)
    lengths = offsets[rows + 1] - offsets[rows]
    width = max(1, int(lengths.max(initial=0)))
    out_ids, out_values = np.zeros((len(rows), width), dtype=np.int64), np.zeros((len(rows), width), dtype=np.float32)
    for r, (start, n) in enumerate(zip(offsets[rows], lengths)):
        out_ids[r, :n] = ids[start:start + n]
        out_values[r, :n] = values[start:start + n]
    return out_ids, out_values


def sparse_block_problem(offsets, labels, weights, num_labels: int) -> str | None:
    """What keeps CSR arrays over terms from being a terms x `num_labels` block, or None (a checkpoint's, an HF
    folder's and tfidf_weights.npz are all checked by it: torch reads sparse indices unchecked)."""
    offsets, labels, weights = np.asarray(offsets), np.asarray(labels), np.asarray(weights)
    kept = len(weights)
    if offsets.ndim != 1 or labels.ndim != 1 or weights.ndim != 1 or len(offsets) < 2 \
            or offsets.dtype.kind not in "iu" or labels.dtype.kind not in "iu" or offsets[0] != 0 \
            or offsets[-1] != kept or len(labels) != kept or (np.diff(offsets) < 0).any() \
            or (kept and not 0 <= labels.min() <= labels.max() < num_labels):
        return f"not {max(0, len(offsets) - 1)} terms x {num_labels} labels in CSR arrays"
    return None


class TfidfWeights:
    """The fused head's TF-IDF block, terms x labels, as CSR arrays over terms (`offsets`, `labels`, `weights`):
    `scores(ids, values)` is each padded TF-IDF row's product with it, what model/fused_head.py's `tfidf_scores`
    computes in torch."""

    def __init__(self, offsets, labels, weights, num_labels: int):
        self.offsets, self.labels = np.asarray(offsets), np.asarray(labels)
        self.weights, self.num_labels = np.asarray(weights, dtype=np.float32), int(num_labels)
        problem = sparse_block_problem(self.offsets, self.labels, self.weights, self.num_labels)
        if problem:
            raise ValueError(problem)

    def save(self, folder: str) -> None:
        with open(f"{folder}/{WEIGHTS_FILE}", "wb") as f:
            np.savez(f, offsets=self.offsets.astype(np.int32), labels=self.labels.astype(np.int32),
                     weights=self.weights, num_labels=np.int64(self.num_labels))

    @classmethod
    def load(cls, folder: str) -> "TfidfWeights":
        with np.load(f"{folder}/{WEIGHTS_FILE}", allow_pickle=False) as found:
            return cls(found["offsets"], found["labels"], found["weights"], int(found["num_labels"]))

    def scores(self, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        """rows x labels (float32) of rows of term indices and values (padding: value 0)."""
        out = np.zeros((len(ids), self.num_labels), dtype=np.float32)
        for r, (row_ids, row_values) in enumerate(zip(np.asarray(ids), np.asarray(values))):
            present = row_values != 0
            terms, term_values = row_ids[present], row_values[present].astype(np.float64)
            if len(terms) and (terms.min() < 0 or terms.max() >= len(self.offsets) - 1):
                raise ValueError(f"row {r}: a term index beyond the {len(self.offsets) - 1} terms")
            starts, lengths = self.offsets[terms], self.offsets[terms + 1] - self.offsets[terms]
            entries = np.arange(lengths.sum()) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
            out[r] = np.bincount(self.labels[entries], weights=np.repeat(term_values, lengths) * self.weights[entries],
                                 minlength=self.num_labels)
        return out
