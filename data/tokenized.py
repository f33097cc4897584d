"""Examples as token ids in flat arrays (and TF-IDF vectors), tokenized once and cached; a text longer than the
window is truncated, cut to its head and tail, or split into overlapping windows."""
import hashlib
import json
import os
from typing import NamedTuple

import numpy as np

from data.errors import DataError
from data.examples import Examples, hash_texts
from data.tfidf import TfidfVocabulary


class LongDoc(NamedTuple):
    """What becomes of a text longer than `max_length` tokens (train.py's `--long-doc`, `--stride`,
    `--max-chunks`): `truncate` keeps its start; `head-tail` keeps the first quarter and the last three
    quarters of the token budget (Sun et al. 2019 found head 128 + tail 382 of 512 best for long reviews);
    `chunk` cuts it into windows of `max_length` tokens (special tokens included) that share `stride` tokens
    (None: `default_stride`), at most `max_chunks` from its start, each encoded on its own."""
    mode: str = "truncate"
    stride: int | None = None
    max_chunks: int = 8

    @classmethod
    def from_config(cls, cfg: dict) -> "LongDoc":
        return cls(cfg["long_doc"], cfg["stride"], cfg["max_chunks"])


class TokenizedExamples:
    """All token ids of a split in one int32 array with offsets (a list of lists would cost 10x the memory).
    With chunked documents the rows are windows and document i owns windows `doc_offsets[i]:doc_offsets[i+1]`
    (`doc_offsets` is None when every document is one window). `lengths`: tokens per document, all its windows
    together (what batching by length groups on). `tfidf`: each document's TF-IDF vector as CSR arrays (offsets,
    term indices, values), or None."""

    def __init__(self, token_ids: np.ndarray, offsets: np.ndarray, labels: list[list[int]], num_labels: int,
                 doc_offsets: np.ndarray | None = None, tfidf: tuple | None = None):
        self.token_ids, self.offsets, self.labels, self.num_labels = token_ids, offsets, labels, num_labels
        self.doc_offsets, self.tfidf = doc_offsets, tfidf
        self.cache_key = None  # with --cache-dir: its token cache's key (tokenizer, windows, texts), which keys more
        self.window_lengths = np.diff(offsets)
        self.lengths = self.window_lengths if doc_offsets is None else np.add.reduceat(
            self.window_lengths, doc_offsets[:-1]) if len(doc_offsets) > 1 else np.zeros(0, dtype=np.int64)

    def without_tfidf(self) -> "TokenizedExamples":
        """The same examples whose batches carry no TF-IDF vectors (training reads none)."""
        found = TokenizedExamples(self.token_ids, self.offsets, self.labels, self.num_labels, self.doc_offsets, None)
        found.cache_key = self.cache_key
        return found

    def max_windows(self) -> int:
        return 1 if self.doc_offsets is None else int(np.diff(self.doc_offsets).max(initial=0))

    def windows_of(self, index: int) -> range:
        return range(index, index + 1) if self.doc_offsets is None else range(
            self.doc_offsets[index], self.doc_offsets[index + 1])

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        return index


def tokenize(examples: Examples, tokenizer, max_length: int, num_labels: int, cache_dir: str | None = None,
             long_doc: LongDoc = LongDoc(), tfidf: TfidfVocabulary | None = None) -> TokenizedExamples:
    """Tokenize once (and with `tfidf`, compute each text's TF-IDF vector once); the result is cached by tokenizer,
    max length, long-document setting, TF-IDF vocabulary and text content."""
    cache_file = None
    if cache_dir:
        setting = "" if long_doc.mode == "truncate" else f"|{long_doc}"
        digest = hashlib.sha256(f"{_tokenizer_fingerprint(tokenizer)}|{max_length}{setting}".encode())
        if tfidf is not None:
            digest.update(b"|tfidf|" + json.dumps(tfidf.state()).encode())
        key = hash_texts(digest, examples.texts)
        cache_file = os.path.join(cache_dir, f"tokens-{key.hexdigest()[:24]}.npz")
        cached = _read_cache(cache_file, len(examples), tfidf is not None)
        if cached is not None:
            found = TokenizedExamples(*cached[:2], examples.labels, num_labels, *cached[2:])
            found.cache_key = key.hexdigest()[:24]
            return found
    doc_offsets = None
    if long_doc.mode == "truncate":
        token_ids, offsets = _tokenize_in_batches(examples.texts, tokenizer, max_length)
    else:
        token_ids, offsets, doc_offsets = _windows(examples.texts, tokenizer, max_length, long_doc)
    rows = tfidf.rows(examples.texts) if tfidf is not None else None
    if cache_file:
        arrays = {"token_ids": token_ids, "offsets": offsets}
        if doc_offsets is not None:
            arrays["doc_offsets"] = doc_offsets
        if rows is not None:
            arrays.update(zip(TFIDF_ARRAYS, rows))
        write_cache(cache_file, arrays)
    found = TokenizedExamples(token_ids, offsets, examples.labels, num_labels, doc_offsets, rows)
    found.cache_key = key.hexdigest()[:24] if cache_file else None
    return found


TFIDF_ARRAYS = ("tfidf_offsets", "tfidf_ids", "tfidf_values")


def _read_cache(path: str, n_docs: int, with_tfidf: bool = False):
    """(token_ids, offsets, doc_offsets or None, TF-IDF rows or None) of a cache file, or None where there is none
    or it is torn, empty or not ours (a crash, a full disk, another program): it is then tokenized again and
    rewritten."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as cached:
            token_ids, offsets = cached["token_ids"], cached["offsets"]
            doc_offsets = cached["doc_offsets"] if "doc_offsets" in cached else None
            tfidf = tuple(cached[name] for name in TFIDF_ARRAYS) if with_tfidf else None
    except Exception:  # numpy raises OSError, ValueError, EOFError, KeyError or zipfile's errors on a bad file
        return None
    rows = n_docs if doc_offsets is None else int(doc_offsets[-1]) if len(doc_offsets) == n_docs + 1 else -1
    if offsets.ndim != 1 or len(offsets) != rows + 1 or offsets[-1] != len(token_ids) or offsets[0] != 0:
        return None
    if tfidf is not None and (len(tfidf[0]) != n_docs + 1 or tfidf[0][-1] != len(tfidf[1]) or len(tfidf[1]) != len(tfidf[2])):
        return None
    return token_ids, offsets, doc_offsets, tfidf


def write_cache(path: str, arrays: dict, what: str = "token cache") -> None:
    """The cache is an optimization: a folder that cannot be made or written, or fills up, costs a note on
    stderr and the next run's tokenizing (or embedding), never the run (nor a temporary file left behind)."""
    import sys

    tmp = f"{path}.{os.getpid()}.tmp.npz"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        print(f"note: --cache-dir {os.path.dirname(path)}: the {what} cannot be written "
              f"({e.strerror or e}); going on without it", file=sys.stderr)
        try:
            os.remove(tmp)
        except OSError:
            pass


def _tokenizer_fingerprint(tokenizer) -> str:
    """All that decides the token ids: a fast tokenizer's whole definition (normalizer, pre-tokenizer, vocabulary,
    added tokens, post-processor), or a slow one's vocabulary (added tokens included) and settings."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # without the truncation and padding a call leaves set: they are per call
        definition = json.loads(backend.to_str())
        content = json.dumps({k: v for k, v in definition.items() if k not in ("truncation", "padding")},
                             sort_keys=True)
    else:
        content = repr(sorted(tokenizer.get_vocab().items())) + repr(sorted(map(repr, tokenizer.init_kwargs.items())))
    return hashlib.sha256(f"{type(tokenizer).__name__}|{content}".encode()).hexdigest()


def _tokenize_in_batches(texts, tokenizer, max_length, batch_size=2000):
    """Token ids of every text (truncated), in one flat int32 array with offsets. Fast tokenizers encode a
    batch in parallel; nothing but the tokenizer is needed (no `datasets`)."""
    lengths, parts = [], []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length,
                            return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        lengths.extend(len(ids) for ids in encoded)
        parts.append(np.fromiter((i for ids in encoded for i in ids), dtype=np.int32))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)), offsets


def default_stride(text_budget: int) -> int:
    """Tokens consecutive windows share unless `--stride` says: a quarter of a window's text."""
    return text_budget // 4


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text ([CLS] and [SEP] for BERT)."""
    with_special = tokenizer("a")["input_ids"]
    content = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(content) + 1):
        if with_special[start:start + len(content)] == content:
            return with_special[:start], with_special[start + len(content):]
    raise ValueError(f"{type(tokenizer).__name__}: cannot tell its special tokens from the text's")


def _windows(texts, tokenizer, max_length: int, long_doc: LongDoc, batch_size: int = 500):
    """Token ids and offsets of the rows (head-tail: one per text; chunk: every text's windows), and for chunk
    the row where each text's windows start (`doc_offsets`)."""
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    step = budget - (default_stride(budget) if long_doc.stride is None else long_doc.stride)
    if long_doc.mode == "chunk" and step < 1:  # train.py refuses it (resolve_window); an edited config may not
        raise DataError(f"stride {long_doc.stride}: windows of max_length {max_length} hold {budget} tokens of text; "
                        "the stride must be smaller (the run's config)")
    rows, docs = [], [0]
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], add_special_tokens=False, return_attention_mask=False,
                            return_token_type_ids=False, verbose=False)["input_ids"]
        for ids in encoded:
            if long_doc.mode == "head-tail":
                head = budget // 4
                parts = [ids if len(ids) <= budget else ids[:head] + ids[len(ids) - (budget - head):]]
            else:
                last = max(1, min(long_doc.max_chunks, 1 + -(-max(0, len(ids) - budget) // step)))
                parts = [ids[i * step:i * step + budget] for i in range(last)]
            rows += [prefix + part + suffix for part in parts]
            docs.append(len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    token_ids = np.fromiter((i for r in rows for i in r), dtype=np.int32, count=int(offsets[-1]))
    return token_ids, offsets, np.asarray(docs, dtype=np.int64) if long_doc.mode == "chunk" else None
