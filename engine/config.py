"""train.py's flags beyond parsing: the checks that run before any data is read or any file is touched, and
the rules of a resume (which flags a resumed run keeps, which it applies from where it continues)."""
import argparse
import math
import os
import time

from data.errors import InputError
from engine.checkpoint import load_checkpoint
from engine.cli import check_at_least_one, check_device, check_writable_folder
from engine.metrics import current_name

SELECTABLE_METRICS = ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "roc_auc_micro", "roc_auc_macro",
                      "subset_accuracy", "jaccard_samples", "lrap", "precision_at_1", "precision_at_3",
                      "precision_at_5", "ndcg_at_1", "ndcg_at_3", "ndcg_at_5", "mean_r_precision")


class ConfigError(InputError):
    """A flag with a value that cannot work: the message is one line that names the flag."""


# On resume these must stay as the run had them: they define its data, model, data order or best-metric scale.
FIXED_ON_RESUME = ("data", "data_config", "text_column", "label_column", "label_separator", "val_fraction",
                   "split_seed", "max_length", "long_doc", "stride", "max_chunks", "chunk_pool", "fast_paths",
                   "max_train_samples", "max_eval_samples", "model", "pooling",
                   "freeze_embeddings", "attention_dropout", "batch_size", "grad_accum", "seed", "pos_weight",
                   "pos_weight_max", "loss", "head_bias", "select_metric")
# These a resumed run applies from the point it continues at (and says so).
APPLIED_ON_RESUME = ("lr", "head_lr_mult", "weight_decay", "warmup", "epochs", "clip_grad", "dropout", "amp",
                     "patience")


def check_args(args, parser: argparse.ArgumentParser) -> None:
    """Every flag that can be checked before any data is read or any file is touched."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.type is float and value is not None and not math.isfinite(value):
            raise ConfigError(f"--{action.dest.replace('_', '-')} {value}: must be a finite number")
    check_at_least_one(args, "epochs", "batch_size", "eval_batch_size", "max_length", "grad_accum", "log_every",
                       "max_train_samples", "max_eval_samples", "max_chunks")
    for name in ("lr", "weight_decay", "head_lr_mult", "clip_grad", "pos_weight_max", "save_every", "workers",
                 "tune_min_positives", "seed", "split_seed", "stride", "patience"):
        if getattr(args, name) is not None and getattr(args, name) < 0 or (name == "lr" and args.lr == 0):
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be "
                              + ("positive" if name == "lr" else "zero or more"))
    for name in ("dropout", "attention_dropout", "warmup", "threshold", "val_fraction"):
        if getattr(args, name) is not None and not 0 <= getattr(args, name) <= 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be between 0 and 1")
    if args.select_metric not in SELECTABLE_METRICS:
        raise ConfigError(f"--select-metric {args.select_metric}: choose one of {', '.join(SELECTABLE_METRICS)}")
    if not args.label_separator:
        raise ConfigError("--label-separator '': must be at least one character")
    check_device(args.device)
    if args.cache_dir:
        check_writable_folder(args.cache_dir, "--cache-dir")


def local_path(value: str | None) -> str | None:
    """A local file or folder as an absolute path, so the run's config works from any folder; a hub id or alias
    stays as it is."""
    return os.path.abspath(value) if value and os.path.exists(value) else value


def default_output_dir(args) -> str:
    name = args.run_name or "-".join([os.path.basename(os.path.normpath(args.model)),
                                      os.path.basename(os.path.normpath(args.data)), time.strftime("%Y%m%d-%H%M%S")])
    return os.path.join("runs", name)


def explicit_flags(parser: argparse.ArgumentParser, argv) -> dict:
    """The flags given on the command line (not defaulted): on resume they override the checkpoint's config."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def resolve_args(get_args_parser, argv) -> tuple[argparse.Namespace, dict | None]:
    """The run's flags and, with --resume, the checkpoint to continue. A resumed run takes the checkpoint's
    config, overridden by the flags given now: those of APPLIED_ON_RESUME take effect from where it continues
    (`args.resume_changes` lists them), those of FIXED_ON_RESUME must not change. It writes to the folder of
    its checkpoint (or an explicit --output-dir), never to a folder its config remembers."""
    args = get_args_parser().parse_args(argv)
    args.select_metric = current_name(args.select_metric)  # P@5 as older versions named precision_at_5
    args.data, args.model = local_path(args.data), local_path(args.model)
    args.cache_dir = os.path.abspath(args.cache_dir) if args.cache_dir else args.cache_dir
    resume, args.resume_changes = None, {}
    if args.resume:
        if args.resume == "auto" and not args.output_dir:
            raise ConfigError("--resume auto: needs --output-dir, the run folder to continue")
        path = os.path.join(args.output_dir, "last.pt") if args.resume == "auto" else args.resume
        if not os.path.isfile(path):
            hint = (" (the run there stopped before its first checkpoint: run the same command again without "
                    "--resume)" if args.resume == "auto" and os.path.isdir(args.output_dir) else "")
            raise ConfigError(f"--resume {args.resume}: no checkpoint at {path}{hint}")
        resume = load_checkpoint(path)
        given = explicit_flags(get_args_parser(), argv)
        for name in ("data", "model", "cache_dir", "select_metric"):
            if name in given:
                given[name] = getattr(args, name)
        saved = {k: v for k, v in resume["config"].items()
                 if k in vars(args) and k not in ("output_dir", "run_name", "resume", "overwrite")}
        if "freeze_word_embeddings" in resume["config"] and "freeze_embeddings" not in saved:  # older runs' flag
            saved["freeze_embeddings"] = "word" if resume["config"]["freeze_word_embeddings"] else "none"
        saved.setdefault("pos_weight", "none")  # runs from before the flag weighed no positives
        saved.setdefault("tune_fallback", "global")  # and kept rare labels at the global threshold
        for name, value in given.items():
            if name in FIXED_ON_RESUME and name in saved and value != saved[name]:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: the run being resumed has "
                                  f"{saved[name]!r}, and a resumed run keeps it; start a new run to change it")
        args.resume_changes = {name: (saved[name], value) for name, value in given.items()
                               if name in APPLIED_ON_RESUME and name in saved and value != saved[name]}
        args = argparse.Namespace(**{**vars(args), **saved, **given})
        args.output_dir = args.output_dir or os.path.dirname(os.path.abspath(path))
        args.resume = os.path.abspath(path)
    args.output_dir = os.path.abspath(args.output_dir or default_output_dir(args))
    check_args(args, get_args_parser())
    return args, resume


def check_select_metric(name: str, num_labels: int) -> None:
    """Precision and nDCG at k need at least k labels: found out now, not after a whole epoch."""
    k = int(name.rsplit("_at_", 1)[1]) if "_at_" in name else 0
    if k > num_labels:
        raise ConfigError(f"--select-metric {name}: needs at least {k} labels, the data has {num_labels}")
