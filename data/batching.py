"""Token ids in flat arrays, batches of similar length, and padding to the longest example of a batch."""
import hashlib
import os

import numpy as np
import torch

from data.labels import Examples


class TokenizedExamples:
    """All token ids of a split in one int32 array with offsets (a list of lists would cost 10x the memory)."""

    def __init__(self, token_ids: np.ndarray, offsets: np.ndarray, labels: list[list[int]], num_labels: int):
        self.token_ids, self.offsets, self.labels, self.num_labels = token_ids, offsets, labels, num_labels
        self.lengths = np.diff(offsets)

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        return index


def tokenize(examples: Examples, tokenizer, max_length: int, num_labels: int,
             cache_dir: str | None = None) -> TokenizedExamples:
    """Tokenize once; the result is cached by tokenizer, max length and text content."""
    cache_file = None
    if cache_dir:
        key = hashlib.sha256(f"{_tokenizer_fingerprint(tokenizer)}|{max_length}".encode())
        for text in examples.texts:
            key.update(text.encode())
            key.update(b"\0")
        cache_file = os.path.join(cache_dir, f"tokens-{key.hexdigest()[:24]}.npz")
        if os.path.exists(cache_file):
            with np.load(cache_file) as cached:
                return TokenizedExamples(cached["token_ids"], cached["offsets"], examples.labels, num_labels)
    token_ids, offsets = _tokenize_in_batches(examples.texts, tokenizer, max_length)
    if cache_file:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{cache_file}.{os.getpid()}.tmp.npz"
        np.savez(tmp, token_ids=token_ids, offsets=offsets)
        os.replace(tmp, cache_file)
    return TokenizedExamples(token_ids, offsets, examples.labels, num_labels)


def _tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    content = backend.model.__getstate__() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
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


class Collator:
    """Pads a batch to its longest example (rounded up to `pad_to_multiple_of`) and builds multi-hot labels."""

    def __init__(self, examples: TokenizedExamples, pad_token_id: int, pad_to_multiple_of: int = 1):
        self.examples, self.pad_token_id, self.multiple = examples, pad_token_id, pad_to_multiple_of

    def __call__(self, indices) -> dict:
        ex = self.examples
        indices = np.asarray(indices)
        lengths = ex.lengths[indices]
        width = -(-int(lengths.max()) // self.multiple) * self.multiple
        input_ids = np.full((len(indices), width), self.pad_token_id, dtype=np.int64)
        for row, (i, n) in enumerate(zip(indices, lengths)):
            input_ids[row, :n] = ex.token_ids[ex.offsets[i]:ex.offsets[i] + n]
        labels = np.zeros((len(indices), ex.num_labels), dtype=np.float32)
        for row, i in enumerate(indices):
            labels[row, ex.labels[i]] = 1.0
        return {"input_ids": torch.from_numpy(input_ids),
                "attention_mask": torch.from_numpy(np.arange(width) < lengths[:, None]),
                "labels": torch.from_numpy(labels),
                "index": torch.from_numpy(indices.astype(np.int64))}


class LengthGroupedBatchSampler:
    """Shuffled batches of examples of similar length, so little of a batch is padding.

    Each epoch shuffles all examples (seeded by seed and epoch), cuts them into pools of `pool_batches`
    batches, sorts each pool by length, cuts it into batches and shuffles the batches. The order depends
    only on (seed, epoch), so a resumed run can skip the batches it has already seen. Under distributed
    training each rank takes every world_size-th batch.
    """

    def __init__(self, lengths, batch_size, seed=0, shuffle=True, pool_batches=64, rank=0, world_size=1):
        self.lengths, self.batch_size, self.seed, self.shuffle = np.asarray(lengths), batch_size, seed, shuffle
        self.pool_batches, self.rank, self.world_size = pool_batches, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0):
        """Batches of `epoch`, beginning at batch number `start` (to resume within an epoch)."""
        self.epoch, self.start = epoch, start

    def all_batches(self) -> list[np.ndarray]:
        n, size = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            batches = [order[i:i + size] for i in range(0, n, size)]
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
            order, pool, batches = rng.permutation(n), size * self.pool_batches, []
            for start in range(0, n, pool):
                chunk = order[start:start + pool]
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.world_size > 1:
            if self.shuffle:  # equal batch counts on every rank, or collective ops would wait forever
                batches += batches[:(-len(batches)) % self.world_size]
            batches = batches[self.rank::self.world_size]
        return batches

    def __iter__(self):
        yield from (batch.tolist() for batch in self.all_batches()[self.start:])

    def __len__(self):
        return len(self.all_batches()) - self.start
