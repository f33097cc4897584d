"""Older files of this project read as today's, in one place: a checkpoint, an export's metadata and a run folder's
metrics.jsonl records, each upgraded once as it is read, one function per format version.

Checkpoint formats (the checkpoint's "format" key):
  1  every checkpoint written before checkpoints were numbered (no "format" key). Upgraded to 2: settings renamed
     since take their new names and values, metric names today's spelling (P@5 -> precision_at_5), --compile given
     as a switch becomes on/off, each setting added since is filled in with the value those runs ran with
     (`Field.before`, engine/settings.py), and the keys added since (tuned thresholds, pos_weight, label_prior,
     data_fingerprints, tfidf, hierarchy) are None.
  2  checkpoints before the fused head's TF-IDF block was stored sparse (a dense terms x labels
     `fused.tfidf_weight`). Upgraded to 3: that block as CSR arrays of its nonzeros (model/fused_head.py,
     SPARSE_KEYS), so its logits are the same; `tfidf_prune` 0 (unpruned).
  3  today's.
Export formats (the metadata's "format_version", model/export_format.py):
  1  exports before checkpoints were numbered: their run config is a format-1 checkpoint's, upgraded alike.
  2  the run config of a format-2 checkpoint; a fused head's dense TF-IDF block in model.safetensors (an HF
     folder: converted as a checkpoint's when read, model/fused_head.py's `sparse_state`) or in the graph (ONNX: served as it is).
  3  today's: a format-3 checkpoint's config; the TF-IDF block sparse in model.safetensors, and beside an ONNX
     graph in tfidf_weights.npz (the graph reads tfidf . W as an input: data/tfidf.py computes it).
A change to what a checkpoint holds adds a format here: its number, one upgrade function from the one before, and
a fixture of the old format in tests/fixtures/."""
from engine.config import ConfigError
from engine.settings import REQUIRED, TRAIN_FIELDS, current_name
from model.export_format import FORMAT_VERSION
from model.fused_head import sparse_state

CHECKPOINT_FORMAT = 3
# Settings renamed: old name -> (new name, the old value as the new setting's)
RENAMED = {"freeze_word_embeddings": ("freeze_embeddings", lambda on: "word" if on else "none")}
ADDED_KEYS = ("thresholds", "pos_weight", "label_prior", "data_fingerprints", "tfidf", "hierarchy")


class FormatError(ConfigError):
    """A file of a format this version cannot read: the message says which format it is."""


def upgrade_metrics_record(record: dict) -> dict:
    """A metrics.jsonl record (any version) with today's metric names."""
    return {current_name(key): value for key, value in record.items()}


def config_1_to_2(config: dict, filled: dict) -> dict:
    """A format-1 checkpoint's (or export's) run config as format 2's; what was filled in goes into `filled`."""
    config = dict(config)
    for old, (new, convert) in RENAMED.items():
        if old in config:
            value = config.pop(old)
            if new not in config:
                config[new] = filled[new] = convert(value)
    if isinstance(config.get("select_metric"), str):
        config["select_metric"] = current_name(config["select_metric"])
    if isinstance(config.get("compile"), bool):  # --compile was a switch
        config["compile"] = filled["compile"] = "on" if config["compile"] else "off"
        config.setdefault("compiled", config.get("compile_mode", "default") if config["compile"] == "on" else "off")
        filled["compiled"] = config["compiled"]
    for f in TRAIN_FIELDS:
        if f.name in config:
            continue
        if f.before is REQUIRED:
            raise ConfigError(f"its config has no {f.name!r}")
        config[f.name] = filled[f.name] = list(f.before) if isinstance(f.before, list) else f.before
    return config


def checkpoint_1_to_2(state: dict, filled: dict) -> dict:
    state = {**state, "config": config_1_to_2(state["config"], filled), "format": 2}
    for key in ADDED_KEYS:
        state.setdefault(key, None)
    if isinstance(state.get("metrics"), dict):
        state["metrics"] = upgrade_metrics_record(state["metrics"])
    return state


def config_2_to_3(config: dict, filled: dict) -> dict:
    """Format 2's run config as format 3's: its fused head was not pruned."""
    if "tfidf_prune" in config:
        return config
    filled["tfidf_prune"] = 0.0
    return {**config, "tfidf_prune": 0.0}


def checkpoint_2_to_3(state: dict, filled: dict) -> dict:
    model = sparse_state(state["model"]) if isinstance(state.get("model"), dict) else state.get("model")
    return {**state, "config": config_2_to_3(state["config"], filled), "model": model, "format": 3}


CHECKPOINT_UPGRADES = {1: checkpoint_1_to_2, 2: checkpoint_2_to_3}  # format N -> N + 1


def format_of(found, latest: int, what: str) -> int:
    """The format number a file states (1 where it states none), refused if this version cannot read it."""
    version = 1 if found is None else found
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FormatError(f"its {what} format is {found!r}, not a format number")
    if version > latest:
        raise FormatError(f"it is of {what} format {version}, written by a newer version of this project (this one "
                          f"reads formats 1 to {latest}); upgrade bert-multilabel to read it")
    return version


def upgrade_checkpoint(state: dict) -> tuple[dict, dict]:
    """A loaded checkpoint of any format as today's, and {setting: value} of what was filled in."""
    version, filled = format_of(state.get("format"), CHECKPOINT_FORMAT, "checkpoint"), {}
    while version < CHECKPOINT_FORMAT:
        state, version = CHECKPOINT_UPGRADES[version](state, filled), version + 1
    return state, filled


def export_1_to_2(meta: dict, filled: dict) -> dict:
    return {**meta, "config": config_1_to_2(meta["config"], filled), "format_version": 2}


def export_2_to_3(meta: dict, filled: dict) -> dict:
    return {**meta, "config": config_2_to_3(meta["config"], filled), "format_version": 3}


EXPORT_UPGRADES = {1: export_1_to_2, 2: export_2_to_3}


def upgrade_export(meta: dict) -> tuple[dict, dict]:
    """An export's metadata (model/export_read.py) of any format as today's, and what was filled in."""
    version, filled = format_of(meta.get("format_version"), FORMAT_VERSION, "export"), {}
    while version < FORMAT_VERSION:
        meta, version = EXPORT_UPGRADES[version](meta, filled), version + 1
    return meta, filled
