"""A run's config from train.py's flags: a fresh run's (the defaults with the flags given), or a resumed run's (its
checkpoint's, with each flag given now by its setting's resume rule: engine/config.py)."""
import os
import time

from engine.checkpoint import load_checkpoint, resume_problem
from engine.config import (FIELDS, TRAIN_FIELDS, ConfigError, check_machine, check_values, normalized,
                           with_defaults)


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
    return config, resume, changes


def refuse_rewind(path: str, resume: dict, output_dir: str, flag: str) -> None:
    """Continuing an earlier checkpoint (best.pt) in its own folder would replace the later epochs that last.pt and
    metrics.jsonl hold: refused, with the two ways that lose nothing."""
    import torch

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
