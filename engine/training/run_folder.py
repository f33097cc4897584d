"""The run folder: one train.py at a time, an --overwrite that loses nothing until the new run has saved, and
metrics.jsonl written so that a crash cannot tear a line into it.

What a run owns there: config.json, label_stats.tsv, metrics.jsonl, last.pt, best.pt, TensorBoard events and evaluate.py's
eval-*.json. A folder holds a run once it has a checkpoint or an epoch's metrics; a run that died before its
first save left nothing worth keeping, so its folder is simply reused.
"""
import json
import os
import shutil

from data.errors import InputError
from engine.files import TMP_SUFFIX, file_mode, fsync_folder
from engine.formats import upgrade_metrics_record

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

LOCK = ".lock"
REPLACED = ".replaced-run"  # an overwritten run, kept until the new run's first checkpoint is on disk
MOVED = ".moved"  # in REPLACED while the whole old run is in there and the folder may hold the new run's files
DISCARDED = ".replaced-run.discarded"  # REPLACED once the new run has saved, while it is deleted
CHECKPOINTS = ("last.pt", "best.pt")
HOLDS_RUN = (*CHECKPOINTS, "metrics.jsonl")
LABEL_TABLE = "label_stats.tsv"  # the labels' counts per split and level, written as the run starts


class RunFolderError(InputError):
    """A run folder that is in use, or that holds a run the command would lose."""


def is_run_file(name: str) -> bool:
    """Files of a run, and the folder of its TensorBoard hparams summary."""
    return (name in ("config.json", "hparams", LABEL_TABLE, *HOLDS_RUN) or name.startswith("events.out.tfevents")
            or (name.startswith("eval-") and name.endswith(".json")))


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


class FolderLock:
    """A folder taken by one process: flock on its .lock, which holds the process's pid. The lock is the OS's: it
    dies with its process, so a killed run never leaves the folder locked."""

    def __init__(self, folder: str):
        self.folder, self.path, self.fd = folder, os.path.join(folder, LOCK), None

    def take(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise RunFolderError(f"--output-dir {self.folder}: in use by another train.py (pid {holder}); "
                                         "wait for it to end, or choose another --output-dir") from None
            try:  # the holder before us removes the file as it unlocks: then lock the new one
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> bool:
        """Let go of the folder (its .lock removed); False where this process did not hold it."""
        if self.fd is None:
            return False
        os.remove(self.path)
        os.close(self.fd)
        self.fd = None
        return True


class RunFolder:
    """The run folder of one train.py: taken (`lock`), what a killed run left cleaned, an --overwrite that moves the
    old run aside until the new one has saved, and only what this run wrote removed when it fails."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._lock = FolderLock(self.path)
        self._created = False
        self._found: set[str] = set()

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def holds_run(self) -> bool:
        return any(os.path.exists(self.file(name)) for name in HOLDS_RUN)

    def lock(self) -> None:
        """Take the folder (created if need be) for this process: a second train.py on it gets one line
        (`FolderLock`). Then clean what a killed run left: temporary files of an unfinished save, and an overwritten
        run that its replacement never got to save over (it is brought back)."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunFolderError(f"--output-dir {self.path}: is a file, not a folder")
        self._created = not os.path.exists(self.path)
        os.makedirs(self.path, exist_ok=True)
        self._lock.take()
        self._recover()
        self._refuse_foreign_config()
        self._found = self._names()

    def _names(self) -> set[str]:
        """The folder's entries, and those of its hparams/ (a run adds one there): what is not in `_found` when
        the run ends, this run wrote."""
        names = set(os.listdir(self.path))
        if os.path.isdir(self.file("hparams")):
            names |= {os.path.join("hparams", name) for name in os.listdir(self.file("hparams"))}
        return names

    def _refuse_foreign_config(self) -> None:
        """A run writes (and on --overwrite removes) config.json: a folder whose config.json is another
        program's (a model folder's, say) is refused rather than overwritten."""
        path = self.file("config.json")
        if not os.path.isfile(path):
            return
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            config = None
        if not (isinstance(config, dict) and {"model", "lr", "max_length"} <= config.keys()):  # train.py's, any version
            self.unlock()
            raise RunFolderError(f"--output-dir {self.path}: its config.json is not a train.py run's (a model "
                                 "folder?), and a run would overwrite it; choose another --output-dir")

    def unlock(self, remove_if_empty: bool = False) -> None:
        """Release the folder; `remove_if_empty`: a folder this process made and left empty goes too."""
        if not self._lock.release():
            return
        if remove_if_empty and self._created and not os.listdir(self.path):
            os.rmdir(self.path)

    def _recover(self) -> None:
        for name in os.listdir(self.path):
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                os.remove(self.file(name))
        if os.path.isdir(self.file(DISCARDED)):
            shutil.rmtree(self.file(DISCARDED))
        if not os.path.isdir(self.file(REPLACED)):
            return
        if not os.path.exists(os.path.join(self.file(REPLACED), MOVED)):
            self._move_back()  # killed while moving the old run aside or back: the folder holds only its files
        elif os.path.exists(self.file("last.pt")):
            self.commit()
        else:
            self.restore_replaced()

    def replace_run(self) -> None:
        """--overwrite: the old run's files move aside (not deleted) until `commit` (the new run has saved a
        checkpoint) or `restore_replaced` (it failed before that). A folder without a run loses nothing: the new
        run writes its config.json over a dead run's, and events and evaluations of others stay."""
        if not self.holds_run():
            return
        aside = self.file(REPLACED)
        os.makedirs(aside)
        for name in sorted(os.listdir(self.path)):
            if is_run_file(name):
                os.replace(self.file(name), os.path.join(aside, name))
        open(os.path.join(aside, MOVED), "wb").close()
        fsync_folder(aside)
        fsync_folder(self.path)

    def commit(self) -> None:
        """The new run has a checkpoint on disk: the run it replaced can go (renamed first, so that a kill
        in the middle of deleting it can never be taken for a run to bring back)."""
        if os.path.isdir(self.file(REPLACED)):
            os.replace(self.file(REPLACED), self.file(DISCARDED))
            shutil.rmtree(self.file(DISCARDED))

    def restore_replaced(self) -> None:
        """Put back the run that an --overwrite moved aside, removing what the failed new run wrote."""
        if not os.path.isdir(self.file(REPLACED)):
            return
        for name in os.listdir(self.path):
            if is_run_file(name):
                _remove(self.file(name))
        os.remove(os.path.join(self.file(REPLACED), MOVED))  # from here on the folder holds only the old run's
        fsync_folder(self.file(REPLACED))
        self._move_back()

    def _move_back(self) -> None:
        aside = self.file(REPLACED)
        for name in os.listdir(aside):
            os.replace(os.path.join(aside, name), self.file(name))
        os.rmdir(aside)
        fsync_folder(self.path)

    def abandon(self) -> None:
        """The run failed or was stopped: an overwritten run it never saved over comes back, and a run that
        never saved leaves nothing that would block running the same command again."""
        if os.path.isdir(self.file(REPLACED)):
            self.restore_replaced()
        else:
            self.discard_unsaved()

    def discard_unsaved(self) -> None:
        """A run that ends before its first checkpoint removes the config.json, events and metrics.jsonl it wrote
        (an epoch whose save failed, on a full disk say) and nothing it found there: the same command can simply
        be run again."""
        if any(os.path.exists(self.file(name)) for name in CHECKPOINTS):
            return
        for name in sorted(self._names() - self._found, reverse=True):
            if is_run_file(name.split(os.sep)[0]) and os.path.lexists(self.file(name)):
                _remove(self.file(name))


def read_metrics(folder: str, up_to_epoch: int) -> list[dict]:
    """The epoch records of metrics.jsonl up to `up_to_epoch` (those past it are from a run killed after
    logging an epoch it did not save). A line that does not parse (a crash while appending, with older
    code) is dropped: the logger rewrites the file whole (see `RunLogger.epoch`). Metrics logged under their
    former names (`val_P@5`) come back under today's (engine/formats.py), so the file keeps one style when it is rewritten."""
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("epoch", up_to_epoch + 1) <= up_to_epoch:
                records.append(upgrade_metrics_record(record))
    return records
