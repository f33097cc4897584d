"""A frozen encoder's document embeddings, computed once and cached beside the token ids (--cache-dir)."""
import hashlib
import os

import numpy as np
import torch

from data.tokenized import write_cache


def embedding_file(cache_dir: str, tokens_key: str, model, cfg: dict, device, amp_dtype) -> str:
    """Where the embeddings of the documents whose token cache is `tokens_key` (the tokenizer, the windows and the
    texts) are kept: keyed by that, by every weight of `model.encoder`, by the pooling and by the device type and
    autocast dtype they are computed in, so that nothing computed otherwise is ever read."""
    digest = hashlib.sha256(f"{tokens_key}|{cfg['pooling']}|{torch.device(device).type}|{amp_dtype}".encode())
    for name, tensor in model.encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return os.path.join(cache_dir, f"embeddings-{digest.hexdigest()[:24]}.npz")


def read_embeddings(path: str, rows: int) -> np.ndarray | None:
    """The cached embeddings (rows x width, fp32), or None where there are none, or the file is torn or not ours:
    they are then computed again and rewritten."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as cached:
            found = cached["embeddings"]
    except Exception:  # numpy raises OSError, ValueError, EOFError, KeyError or zipfile's errors on a bad file
        return None
    if found.ndim != 2 or len(found) != rows or found.dtype != np.float32 or not np.isfinite(found).all():
        return None
    return found


def cached_embeddings(compute, cache_dir: str | None, tokens_key: str | None, model, cfg: dict, device,
                      amp_dtype, rows: int, log=print) -> np.ndarray:
    """`compute()`'s embeddings, read from the cache where it has them, else computed and written to it (no
    --cache-dir, or documents without a token cache: computed)."""
    if not cache_dir or not tokens_key:
        return compute()
    path = embedding_file(cache_dir, tokens_key, model, cfg, device, amp_dtype)
    found = read_embeddings(path, rows)
    if found is not None:
        log(f"embeddings of {rows:,} documents read from {path}")
        return found
    found = compute()
    write_cache(path, {"embeddings": np.ascontiguousarray(found, dtype=np.float32)}, "embedding cache")
    return found
