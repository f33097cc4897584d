"""From files or hub datasets to batches: read, encode labels, tokenize once, batch by length."""
import numpy as np
import torch
from torch.utils.data import DataLoader

from data.batching import Collator, LengthGroupedBatchSampler
from data.tokenized import LongDoc, TokenizedExamples, tokenize
from data.errors import DataError
from data.label_stats import label_table, summary_lines
from data.examples import Examples
from data.labels import EUROVOC_LEVEL_1, encode_tables, read_texts
from data.reading import read_splits

__all__ = ["DataError", "EUROVOC_LEVEL_1", "Examples", "LongDoc", "TokenizedExamples", "build_loader", "load_examples",
           "read_texts", "tokenize"]


def load_examples(data, data_config=None, text_column=None, label_column=None, label_separator=",",
                  label_names=None, val_fraction=0.1, split_seed=0, max_train_samples=None,
                  max_eval_samples=None, log=print, hierarchy=None) -> tuple[dict[str, Examples], list[str]]:
    """Splits (train / validation / test, those the data has) and label names. With a `hierarchy`
    (data/hierarchy.py) the labels are every level's: each example's own and their ancestors.

    With no validation split, one is carved from train (`val_fraction`, seeded by `split_seed`, so
    evaluate.py finds the same one again); `val_fraction=0` carves none. A single file is the train split.
    """
    tables = read_splits(data, data_config)
    label_names_given = label_names
    if hierarchy is None:
        splits, label_names = encode_tables(tables, text_column, label_column, label_names, label_separator)
    else:
        splits, label_names = with_ancestors(encode_tables(tables, text_column, label_column, None, label_separator),
                                             hierarchy, data)
    if "train" in splits and "validation" not in splits and val_fraction > 0:
        train = splits["train"]
        order = np.random.default_rng(split_seed).permutation(len(train))
        n_val = max(1, round(val_fraction * len(train)))
        if n_val >= len(train):
            raise DataError(f"{data}: {len(train)} training rows are too few to carve a validation split from")
        splits["validation"], splits["train"] = train.select(order[:n_val]), train.select(np.sort(order[n_val:]))
        log(f"no validation split in {data}: carved {n_val} of {len(train)} training examples "
            f"(--val-fraction {val_fraction}, --split-seed {split_seed})")
    for split, limit in (("train", max_train_samples), ("validation", max_eval_samples), ("test", max_eval_samples)):
        if limit is not None and split in splits and limit < len(splits[split]):
            splits[split] = splits[split].select(range(limit))
    log("examples: " + ", ".join(f"{split} {len(ex)}" for split, ex in splits.items())
        + f"; {len(label_names)} labels")
    if "train" in splits and label_names_given is None:
        for line in summary_lines(label_table(splits, label_names, hierarchy.levels if hierarchy else None),
                                  len(splits["train"])):
            log(line)
    empty = {split: sum(1 for text in ex.texts if not text.strip()) for split, ex in splits.items()}
    if any(empty.values()):
        log("empty texts (kept: the encoder sees only its special tokens): "
            + ", ".join(f"{split} {n}" for split, n in empty.items() if n))
    return splits, label_names


def with_ancestors(encoded, hierarchy, data) -> tuple[dict[str, Examples], list[str]]:
    """Each example's labels (by the data's names) as the hierarchy's labels, their ancestors added."""
    splits, data_names = encoded
    index = hierarchy.encode(data_names, f"--data {data}")
    for examples in splits.values():
        examples.labels = [hierarchy.ancestors_closure([index[j] for j in labels]) for labels in examples.labels]
    return splits, hierarchy.label_names


def ignore_stop_signals(worker_id: int) -> None:
    """In each DataLoader worker: SIGINT and SIGTERM are the main process's to act on. A scheduler or a service
    manager signals the whole process group; a worker that died of it would end the run in a traceback before
    the main process could save, and the main process ends its workers itself when it stops."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


BUCKET_TOKENS = 16
"""Under torch.compile, batches pad to a multiple of this (at most the window): few shapes, so few compiles and CUDA
graphs, for a little padding (docs/results.md, GPU check)."""


def build_loader(examples: TokenizedExamples, batch_size, pad_token_id, shuffle, seed=0, device="cpu",
                 workers=0, rank=0, world_size=1, compiled: bool = False, max_length: int | None = None) -> DataLoader:
    """Length-grouped batches of `examples`; `compiled` pads them to buckets of BUCKET_TOKENS, up to `max_length`."""
    cuda = str(device).startswith("cuda")
    # On a CPU, chunked windows run in groups of similar length of at most a batch of full windows each, and a
    # training (shuffled) batch in parts of at most as many tokens; a GPU keeps one padded tensor a batch, as neither is
    # measured there yet (docs/results.md, Long documents).
    group_tokens = None if cuda else batch_size * int(examples.window_lengths.max(initial=1))
    multiple = BUCKET_TOKENS if compiled else 8 if cuda else 1
    sampler = LengthGroupedBatchSampler(examples.lengths, batch_size, seed, shuffle, rank=rank, world_size=world_size)
    # A generator of its own: a DataLoader draws a seed from the global RNG each time it starts an epoch, and
    # a resumed run must find the global RNG (dropout) exactly where the interrupted run left it.
    return DataLoader(examples, batch_sampler=sampler, num_workers=workers, pin_memory=cuda,
                      collate_fn=Collator(examples, pad_token_id, multiple, group_tokens, max_length if compiled else None,
                                         group_tokens if shuffle else None),
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed),
                      worker_init_fn=ignore_stop_signals if workers > 0 else None)
