"""A run's config from train.py's flags: a fresh run's (the defaults with the flags given), or a resumed run's (its
checkpoint's, with each flag given now by its setting's resume rule: engine/settings.py); then, once its data and
encoder are known, resolved for its machine in one function (`resolved_for_machine`). From there on nothing
writes to it: it is what config.json and every checkpoint hold."""
import os
import time

import torch

from data.tokenized import default_stride
from engine.amp import dtype_name, resolve_amp, trained_dtype
from engine.checkpoint import load_checkpoint, resume_problem
from engine.compiling import compile_plan
from engine.config import ConfigError, check_machine, check_values, normalized, with_defaults
from engine.settings import FIELDS, TRAIN_FIELDS
from engine.training.head_fit import require_fit_library
from model import cpu_fast
from model.encoders import attention_runs, load_encoder_config, position_limit, resolve_attention


def default_output_dir(config: dict) -> str:
    name = config["run_name"] or "-".join([os.path.basename(os.path.normpath(config["model"])),
                                           os.path.basename(os.path.normpath(config["data"])),
                                           time.strftime("%Y%m%d-%H%M%S")])
    return os.path.join("runs", name)


def resolve_run(given: dict) -> tuple[dict, dict | None, dict]:
    """(config, the checkpoint to continue or None, {setting: (old, new)} that a resume applies). A fresh run is
    the defaults with the flags given. A resumed run is its checkpoint's config with the flags given now, by
    each field's rule: a `fixed` one must not change, an `applied` one takes effect from where the run
    continues, a `free` one is this command's (its default if not given). It writes to its checkpoint's folder
    (or an explicit --output-dir), never to a folder its config remembers."""
    given = normalized(given)
    config = with_defaults(TRAIN_FIELDS, given)
    check_values(TRAIN_FIELDS, config)
    resume, changes = None, {}
    if config["resume"]:
        path = resume_path(config)
        resume = load_checkpoint(path, log=print)
        problem = resume_problem(resume)
        if problem:
            raise ConfigError(f"--resume {config['resume']}: {path} cannot be continued: {problem}")
        saved = resume["config"]
        for name, value in given.items():
            f = FIELDS[name]
            if f.resume == "fixed" and value != saved[name]:
                raise ConfigError(f"{f.flag} {value}: the run being resumed has {saved[name]!r}, and a resumed run "
                                  "keeps it; start a new run to change it")
            if f.resume == "applied" and value != saved[name]:
                changes[name] = (saved[name], value)
        kept = {f.name: saved[f.name] for f in TRAIN_FIELDS if f.resume in ("fixed", "applied", "recorded")}
        config = {**with_defaults(TRAIN_FIELDS, {}), **kept, **given, "resume": os.path.abspath(path)}
        config["output_dir"] = config["output_dir"] or os.path.dirname(os.path.abspath(path))
    config["output_dir"] = os.path.abspath(config["output_dir"] or default_output_dir(config))
    if resume:
        refuse_rewind(path, resume, config["output_dir"], config["resume"])
    check_machine(TRAIN_FIELDS, config)
    require_fit_library(config["features"])
    return config, resume, changes


def refuse_rewind(path: str, resume: dict, output_dir: str, flag: str) -> None:
    """Continuing an earlier checkpoint (best.pt) in its own folder would replace the later epochs that last.pt and
    metrics.jsonl hold: refused, with the two ways that lose nothing."""
    last = os.path.join(output_dir, "last.pt")
    if os.path.dirname(os.path.abspath(path)) != output_dir or not os.path.isfile(last) or os.path.samefile(path, last):
        return
    try:
        later = torch.load(last, map_location="cpu", weights_only=True, mmap=True)["progress"]["step"]
    except Exception:  # an unreadable last.pt: resuming it is refused by load_checkpoint with its reason
        return
    step = resume["progress"]["step"]
    if isinstance(later, int) and later > step:
        raise ConfigError(f"--resume {flag}: the run in {output_dir} went on past this checkpoint (step {step}) to "
                          f"step {later} (last.pt); resuming here would overwrite those steps. Continue the run with "
                          "--resume auto, or start from this checkpoint in another --output-dir")


def resume_path(config: dict) -> str:
    if config["resume"] != "auto":
        path = config["resume"]
    elif not config["output_dir"]:
        raise ConfigError("--resume auto: needs --output-dir, the run folder to continue")
    else:
        path = os.path.join(config["output_dir"], "last.pt")
    if not os.path.isfile(path):
        hint = (" (the run there stopped before its first checkpoint: run the same command again without --resume)"
                if config["resume"] == "auto" and os.path.isdir(config["output_dir"]) else "")
        raise ConfigError(f"--resume {config['resume']}: no checkpoint at {path}{hint}")
    return path


def machine_settings(cfg: dict, device, encoder_config, trained_amp: str | None = None) -> dict:
    """What the config leaves to the machine: whether and how it compiles, the autocast dtype (`trained_amp`: the
    one a resumed run keeps) and the attention kernel the encoder runs (bench/ scripts take these too)."""
    compiled = compile_plan(cfg, device)
    fast = cpu_fast.enabled({**cfg, "compiled": compiled})
    dtype = trained_dtype(trained_amp, device) if trained_amp else resolve_amp(cfg["amp"], device, fast)
    return {"compiled": compiled, "amp_dtype": dtype_name(dtype),
            "attention_impl": attention_runs(encoder_config, resolve_attention(cfg["attention"], device.type, fast))}


def window_settings(cfg: dict, tokenizer, positions: int | None = None) -> dict:
    """--max-length against what the encoder can take (its tokenizer's model_max_length, and its `positions`:
    `model.encoders.position_limit`) and the special tokens it adds, and --stride against the window; an unset
    stride becomes a number, so config.json and the checkpoint hold it."""
    limit = min(tokenizer.model_max_length, positions or tokenizer.model_max_length)
    if cfg["max_length"] > limit:
        raise ConfigError(f"--max-length {cfg['max_length']}: beyond the model's limit of {limit} tokens")
    shortest = tokenizer.num_special_tokens_to_add() + 1
    if cfg["max_length"] < shortest:
        raise ConfigError(f"--max-length {cfg['max_length']}: leaves no room for text (the model adds "
                          f"{shortest - 1} special tokens); use at least {shortest}")
    window = cfg["max_length"] - shortest + 1
    stride = default_stride(window) if cfg["stride"] is None else cfg["stride"]
    if cfg["long_doc"] == "chunk" and stride >= window:
        raise ConfigError(f"--stride {stride}: windows of --max-length {cfg['max_length']} hold "
                          f"{window} tokens of text; the stride must be smaller")
    return {"stride": stride}


def resolved_for_machine(cfg: dict, device, world_size: int, tokenizer, encoder_config, num_labels: int,
                         resume: dict | None = None, changes: dict | None = None) -> dict:
    """The config as this run runs it: `machine_settings`, `window_settings`, the device, the processes, the
    labels, and each resume with the settings it changed."""
    changes = changes or {}
    resumes = [] if not resume else [*resume["config"]["resumes"], {"step": resume["progress"]["step"], "changed": {
        name: {"from": old, "to": new} for name, (old, new) in changes.items()}}]
    trained_amp = resume["config"]["amp_dtype"] if resume and "amp" not in changes else None
    return {**cfg, **machine_settings(cfg, device, encoder_config, trained_amp),
            **window_settings(cfg, tokenizer, position_limit(encoder_config.to_dict())),
            "device": str(device), "world_size": world_size, "num_labels": num_labels, "resumes": resumes}


def for_device(cfg: dict, device) -> dict:
    """A config with its `machine_settings` for `device`, and the CPU allocator kept as a run keeps it: what the
    bench/ scripts build their models and loops from (train.py resolves with `resolved_for_machine`)."""
    cfg = {**cfg, **machine_settings(cfg, device, load_encoder_config(cfg["model"]))}
    cpu_fast.prepare(cfg, device)
    return cfg
