"""Batches of whole documents: similar lengths together (LengthGroupedBatchSampler), padded to the longest
(Collator), a chunked batch's windows in groups of similar length, and a training batch cut into parts."""
import numpy as np
import torch

from data.tfidf import padded_rows
from data.tokenized import TokenizedExamples

GROUP_COST_TOKENS = 64
"""What one more encoder call costs, in padded tokens, when a chunked batch's windows are cut into groups of
similar length (`window_groups`); on a CPU a call of a few rows costs far less than its padding (docs/results.md,
Long documents)."""


def window_groups(widths: np.ndarray, max_tokens: int, group_cost: int = GROUP_COST_TOKENS) -> list[tuple[int, int]]:
    """The padded widths of windows sorted longest first -> consecutive groups as (end row, width), each encoded
    on its own at its own width, that spend the fewest padded tokens plus `group_cost` per group, none over
    `max_tokens` (rows x width; a single window always fits). Exact, by dynamic programming."""
    widths = np.asarray(widths, dtype=np.int64)
    n = len(widths)
    best, cut = np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        starts = np.arange(end)
        tokens = (end - starts) * widths[:end]
        cost = np.where((tokens <= max_tokens) | (starts == end - 1), best[:end] + tokens + group_cost, np.inf)
        cut[end] = int(np.argmin(cost))
        best[end] = cost[cut[end]]
    groups, end = [], n
    while end > 0:
        groups.append((end, int(widths[cut[end]])))
        end = int(cut[end])
    return groups[::-1]


class Collator:
    """Pads a batch to its longest example, rounded up to `pad_to_multiple_of` but never past `max_width` (so a
    compiled model sees few shapes), and builds multi-hot labels. With chunked documents and `group_tokens`, the
    windows run longest first in groups of similar length (`window_groups`, at most `group_tokens` padded tokens
    each): the short last windows of documents no longer pad to the longest window, and no group holds more
    tokens than a batch of whole windows would. With `part_tokens` as well (training), a chunked batch of more
    window tokens than that is cut into parts (`document_parts`), each a batch of its own, that training runs
    forward and backward one after the other: a step then holds one part's activations, not the whole batch's."""

    def __init__(self, examples: TokenizedExamples, pad_token_id: int, pad_to_multiple_of: int = 1,
                 group_tokens: int | None = None, max_width: int | None = None, part_tokens: int | None = None,
                 group_cost: int = GROUP_COST_TOKENS):
        self.examples, self.pad_token_id, self.multiple = examples, pad_token_id, pad_to_multiple_of
        self.group_tokens, self.max_width, self.part_tokens = group_tokens, max_width, part_tokens
        self.group_cost = group_cost

    def padded(self, lengths: np.ndarray) -> np.ndarray:
        widths = -(-np.asarray(lengths, dtype=np.int64) // self.multiple) * self.multiple
        return widths if self.max_width is None else np.minimum(widths, self.max_width)

    def __call__(self, indices) -> dict:
        """`labels` and `index` have a row per document; `input_ids` and `attention_mask` a row per window,
        and with chunked documents `window_doc` gives each window's document (its row in `labels`) and
        `window_groups` (when grouped) each group's end row and width. A batch cut into parts is {"parts": [batch
        of the first documents, batch of the next, ...]}."""
        indices = np.asarray(indices)
        if self.part_tokens is not None and self.examples.doc_offsets is not None:
            parts = document_parts(self.examples.lengths[indices], self.part_tokens)
            if len(parts) > 1:
                return {"parts": [self.collate(indices[start:end]) for start, end in parts]}
        return self.collate(indices)

    def collate(self, indices: np.ndarray) -> dict:
        ex = self.examples
        window_doc = np.array([(w, d) for d, i in enumerate(indices) for w in ex.windows_of(i)],
                              dtype=np.int64).reshape(-1, 2)
        grouped = ex.doc_offsets is not None and self.group_tokens is not None
        if grouped:
            window_doc = window_doc[np.argsort(-ex.window_lengths[window_doc[:, 0]], kind="stable")]
        windows = window_doc[:, 0]
        lengths = ex.window_lengths[windows]
        width = int(self.padded(lengths).max())
        input_ids = np.full((len(windows), width), self.pad_token_id, dtype=np.int64)
        for row, (w, n) in enumerate(zip(windows, lengths)):
            input_ids[row, :n] = ex.token_ids[ex.offsets[w]:ex.offsets[w] + n]
        labels = np.zeros((len(indices), ex.num_labels), dtype=np.float32)
        for row, i in enumerate(indices):
            labels[row, ex.labels[i]] = 1.0
        batch = {"input_ids": torch.from_numpy(input_ids),
                 "attention_mask": torch.from_numpy(np.arange(width) < lengths[:, None]),
                 "labels": torch.from_numpy(labels),
                 "index": torch.from_numpy(indices.astype(np.int64))}
        if ex.doc_offsets is not None:
            batch["window_doc"] = torch.from_numpy(window_doc[:, 1].copy())
        if ex.tfidf is not None:
            batch["tfidf_ids"], batch["tfidf_values"] = map(torch.from_numpy, padded_rows(*ex.tfidf, indices))
        if grouped:
            batch["window_groups"] = torch.tensor(window_groups(self.padded(lengths), self.group_tokens, self.group_cost))
        return batch


def document_parts(doc_tokens: np.ndarray, part_tokens: int) -> list[tuple[int, int]]:
    """The documents of a batch (their tokens, all windows together) -> runs of consecutive documents as (start,
    end), each of at most `part_tokens` tokens (a document alone always makes a part). The training loss is a mean
    over (document, label) pairs, so parts weighed by their share of the documents give the batch's gradient."""
    parts, start, tokens = [], 0, 0
    for i, n in enumerate(np.asarray(doc_tokens).tolist()):
        if i > start and tokens + n > part_tokens:
            parts.append((start, i))
            start, tokens = i, 0
        tokens += n
    return parts + [(start, len(doc_tokens))] if len(doc_tokens) else parts


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
