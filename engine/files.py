"""Files written whole or not at all: a temporary file beside the target, fsynced and renamed over it, with the mode
the umask gives; JSON without NaN."""
import json
import math
import os
import tempfile

TMP_SUFFIX = ".tmp"


def file_mode() -> int:
    """The mode a plain `open()` would give a new file under the current umask (mkstemp's is always 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str, write) -> None:
    """`write(file)` fills a temporary file beside `path`, which is flushed, fsynced and renamed over `path`:
    a crash leaves either the old file or the new one, never half of one. The file gets the mode the umask
    gives any new file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_folder(folder)


def strict_json(value):
    """`value` with every NaN or infinity as null: JSON has no such numbers, and strict readers refuse them (a
    metric without positives, ROC-AUC of a label that never occurs, is undefined, not a number)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def json_text(value, indent: int | None = None) -> str:
    return json.dumps(strict_json(value), indent=indent, allow_nan=False)


def write_json(path: str, value) -> None:
    atomic_write(path, lambda f: f.write((json_text(value, indent=2) + "\n").encode()))


def fsync_folder(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
