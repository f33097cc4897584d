"""Checkpoints: plain Python values and tensors only, written atomically, read without running code, upgraded from
any earlier format once as they are read (engine/formats.py) and checked before any of them is used."""
import os
import pickle
import shutil

import torch

from data.errors import InputError
from data.hierarchy import hierarchy_problem
from data.tfidf import sparse_block_problem
from engine.config import ConfigError, config_problem, to_stderr
from engine.files import atomic_write, fsync_folder
from engine.formats import ADDED_KEYS, upgrade_checkpoint
from model.fused_head import SPARSE_KEYS


class CheckpointError(InputError):
    """A checkpoint that is missing, unreadable or unsafe: the message is one line that names the file."""


class RecordedWrites:
    """The file torch.save writes into, keeping the OSError of a write that failed (a full disk, a quota, a file
    size limit): torch's zip writer reports it as a RuntimeError of its own, whose text differs between builds."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        return self.file.flush()


def save_checkpoint(path: str, state: dict) -> None:
    """Atomically (atomic_write). A failed write ends as the OSError it is, naming the file, so the command ends in
    one line like any other failed write (the old file stays)."""
    def write(file):
        recorded = RecordedWrites(file)
        try:
            torch.save(state, recorded)
        except (RuntimeError, OSError):
            if recorded.error is None:
                raise
            error = recorded.error
            raise OSError(error.errno, f"{error.strerror or error}: the checkpoint could not be written", path) \
                from None

    atomic_write(path, write)


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
    fsync_folder(folder)


def load_checkpoint(path: str, map_location="cpu", log=to_stderr) -> dict:
    """A checkpoint of this project as today's format (`engine.formats.upgrade_checkpoint`; `log` says what was
    filled in), or one line that says why it cannot be used, before any of it is used."""
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
    if not isinstance(state, dict) or "model" not in state or not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{path}: not a checkpoint of this project (no model weights or config)")
    try:
        state, filled = upgrade_checkpoint(state)
    except ConfigError as e:
        raise CheckpointError(f"{path}: not a usable checkpoint of this project: {e}") from None
    problem = config_problem(state["config"]) or checkpoint_problem(state)
    if problem:
        raise CheckpointError(f"{path}: not a usable checkpoint of this project: {problem}")
    if filled:
        log(f"{path}: saved by an older version; read with " + ", ".join(f"{k}={v!r}" for k, v in filled.items()))
    return state


NUMBER = (int, float)


def checkpoint_problem(state: dict) -> str | None:
    """What beyond its config makes a loaded checkpoint unusable (a program other than this one wrote or edited
    it), or None."""
    missing = next((key for key in ADDED_KEYS if key not in state), None)
    if missing:
        return f"it has no {missing!r} (None where the run had none)"
    names = state.get("label_names")
    problem = labels_problem(names, state.get("thresholds"))
    if problem:
        return problem
    if not isinstance(state["model"], dict) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        return "its model weights are not a dict of tensors"
    encoder = state.get("encoder_config")
    if not isinstance(encoder, dict) or not isinstance(encoder.get("model_type"), str):
        return "encoder_config is missing or has no model_type"
    files = state.get("tokenizer_files")
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        return "tokenizer_files is missing"
    prior, pos_weight = state.get("label_prior"), state.get("pos_weight")
    if state["config"]["loss"] == "db" and prior is None:
        return "its loss is db but it has no label_prior"
    for name, tensor in (("pos_weight", pos_weight), ("label_prior", prior)):
        if tensor is not None and not (isinstance(tensor, torch.Tensor) and tensor.shape == (len(names),)):
            return f"its {name} does not match its {len(names)} labels"
    problem = served_problem(state)
    if problem:
        return problem
    non_finite = next((key for key, value in state["model"].items()
                       if value.is_floating_point() and not all_finite(value)), None)
    if non_finite:
        return f"its weights hold NaN or infinite values ({non_finite})"
    from model.encoders import position_limit

    return window_problem(state["config"], position_limit(encoder))


def served_problem(state: dict, positions: int | None = None) -> str | None:
    """What is wrong with what a checkpoint or an export serves by, or None: its label names and tuned thresholds,
    TF-IDF vocabulary (against the fused head's weights, where `state` has them), hierarchy, and (given the
    encoder's `positions`) its max_length. Its config has passed `config_problem` (load_checkpoint, the export's
    loader)."""
    config, names = state["config"], state["label_names"]
    weights = state["model"] if isinstance(state.get("model"), dict) else {}
    sparse = {key: weights.get(f"fused.{key}") for key in SPARSE_KEYS}
    return (labels_problem(names, state.get("thresholds"))
            or tfidf_problem(state.get("tfidf"), config["features"], sparse if weights else None, len(names))
            or hierarchy_problem(state.get("hierarchy"), names) or window_problem(config, positions))


def window_problem(config: dict, positions: int | None) -> str | None:
    if positions is not None and config["max_length"] > positions:
        return f"its max_length {config['max_length']} is beyond the encoder's {positions} positions"
    return None


def all_finite(tensor: torch.Tensor, part: int = 1 << 22) -> bool:
    """No NaN or infinity in `tensor`, checked a part at a time: torch.isfinite over a fused head's GiB at once
    would more than double evaluate.py's peak memory (docs/results.md, "Memory and checkpoint size")."""
    return all(bool(torch.isfinite(values).all()) for values in tensor.reshape(-1).split(part))


def tfidf_problem(tfidf, features: str, sparse: dict | None, num_labels: int) -> str | None:
    """What is wrong with a checkpoint's (or an export's) TF-IDF vocabulary against its fused head's sparse TF-IDF
    weights (`sparse`: {SPARSE_KEYS: tensors}, where `state` has them), or None. The weights are checked whole:
    torch reads sparse indices unchecked, so an index out of place would read memory it does not own."""
    if features == "encoder":
        return None
    if not isinstance(tfidf, dict) or not isinstance(tfidf.get("terms"), list) \
            or not all(isinstance(t, str) for t in tfidf["terms"]):
        return "its features are both but it has no TF-IDF vocabulary (tfidf terms)"
    idf = tfidf.get("idf")
    if len(idf if isinstance(idf, (list, torch.Tensor)) else []) != len(tfidf["terms"]):
        return f"its TF-IDF vocabulary has {len(tfidf['terms'])} terms but not one idf value each"
    if sparse is None:
        return None
    offsets, labels, weights = (sparse[key] for key in SPARSE_KEYS)
    if not all(isinstance(t, torch.Tensor) and t.dim() == 1 for t in (offsets, labels, weights)):
        return f"its fused head has no sparse TF-IDF weights ({', '.join('fused.' + k for k in SPARSE_KEYS)})"
    if len(offsets) != max(1, len(tfidf["terms"])) + 1:
        return (f"its fused head's TF-IDF weights are over {len(offsets) - 1} terms, but its vocabulary has "
                f"{len(tfidf['terms'])}")
    found = sparse_block_problem(offsets.numpy(), labels.numpy(), weights.numpy(), num_labels)
    return f"its fused head's sparse TF-IDF weights are {found}" if found else None


def resume_problem(state: dict) -> str | None:
    """What a checkpoint lacks to be continued (a file edited or written elsewhere), or None."""
    progress = state.get("progress")
    if not isinstance(progress, dict) or not all(isinstance(progress.get(key), int) and progress[key] >= 0
                                                 for key in ("epoch", "step", "batches_done")):
        return "it holds no training progress (epoch, step, batches done) to continue from"
    if not all(isinstance(state.get(key), dict) for key in ("optimizer", "scheduler", "rng")):
        return "it holds no optimizer, schedule or random state to continue with"
    return None


def labels_problem(names, thresholds) -> str | None:
    """What is wrong with a checkpoint's (or an export's) label names and tuned thresholds, or None."""
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "label_names is not a list of label names"
    if thresholds is None:
        return None
    values = [thresholds.get("global"), *thresholds.get("per_label", [])] if isinstance(thresholds, dict) else []
    if not (values and isinstance(thresholds.get("per_label"), list) and len(thresholds["per_label"]) == len(names)
            and all(isinstance(v, NUMBER) and not isinstance(v, bool) and 0 <= v <= 1 for v in values)):
        return "its tuned thresholds are not one number from 0 to 1 per label and a global one"
    return None
