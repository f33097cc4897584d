"""Checkpoints: plain Python values and tensors only, written atomically, read without running code."""
import json
import os
import pickle
import shutil
import tempfile

import torch

from data.errors import InputError


class CheckpointError(InputError):
    """A checkpoint that is missing, unreadable or unsafe: the message is one line that names the file."""


def atomic_write(path: str, write) -> None:
    """`write(file)` fills a temporary file beside `path`, which is flushed, fsynced and renamed over `path`:
    a crash leaves either the old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_folder(folder)


def write_json(path: str, value) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(value, indent=2) + "\n").encode()))


def _fsync_folder(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str, state: dict) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def link_checkpoint(source: str, path: str) -> None:
    """Make `path` hold what `source` holds now: a hard link costs nothing, and since `source` is later
    replaced (renamed over), not rewritten, `path` keeps this content."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.link.tmp")
    if os.path.exists(tmp):
        os.remove(tmp)
    try:
        os.link(source, tmp)
        os.replace(tmp, path)
    except OSError:
        atomic_write(path, lambda f: shutil.copyfileobj(open(source, "rb"), f))
    _fsync_folder(folder)


def load_checkpoint(path: str, map_location="cpu") -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).splitlines()
        detail = next((line.strip() for line in reason if "GLOBAL" in line or "Unsupported" in line), "")
        if "weights_only" in str(e) or detail:
            raise CheckpointError(f"{path}: refused: it holds Python objects, not only tensors and plain values; "
                                  f"loading it could run code ({detail or reason[0]})") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {reason[0]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no model weights or config)")
    return state
