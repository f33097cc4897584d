"""The settings of engine/settings.py as command lines and config dicts: the CLI parsers generated from the fields,
their checks, and the checks of a config against its data and encoder. engine/training/run_config.py turns
train.py's flags (a resume included) into the one config dict that the run passes everywhere and stores in
config.json and every checkpoint. Nothing here imports torch: the CLIs parse before it loads."""
import argparse
import math
import os
import sys

from engine.settings import CHECKS, FIELDS, LEVEL_METRIC, PREDICT_FIELDS, TRAIN_FIELDS, Field, current_name

class ConfigError(ValueError):
    """A setting with a value that cannot work: the message is one line that names the flag (the CLIs end with it
    and exit status 2, as for `data.errors.InputError`, which this module cannot import before torch loads)."""


def build_parser(fields, description: str) -> argparse.ArgumentParser:
    """The CLI of these fields. No default reaches argparse (SUPPRESS): what it returns is what was given, so a
    resume can tell a flag given now from one left at its default; --help shows each default from the field."""
    parser = argparse.ArgumentParser(description=description, argument_default=argparse.SUPPRESS)
    groups = {}
    for f in fields:
        if f.resume == "recorded":
            continue
        if f.group and f.group not in groups:
            groups[f.group] = parser.add_argument_group(f.group)
        target = groups.get(f.group, parser)
        shown = f.default is not None and f.kind is not bool and "default" not in f.help
        text = f.help + (f" (default: {f.default})" if shown else "")
        if f.kind is bool:
            target.add_argument(f.flag, action="store_true", help=text)
        elif f.positional:
            target.add_argument(f.flag, nargs="*", help=text)
        elif f.kind is list:  # a flag given once per value
            target.add_argument(f.flag, action="append", metavar=f.name.upper(), required=f.required, help=text)
        else:
            listed = f.choices and len(f.choices) <= 6
            metavar = "{" + ",".join(f.choices) + "}" if listed else f.name.upper()
            text += f"; one of {', '.join(f.choices)}" if f.choices and not listed else ""
            target.add_argument(f.flag, type=f.kind, metavar=metavar, required=f.required, help=text)
    return parser


def parse_flags(fields, argv, description: str = "") -> dict:
    """The flags given on the command line, by field name (--help and a misspelt flag end here)."""
    return vars(build_parser(fields, description).parse_args(argv))


def with_defaults(fields, given: dict) -> dict:
    """Every field: its value given, else its default (a recorded one is None until the run resolves it)."""
    return {**{f.name: f.default for f in fields}, **given}


def value_problem(f: Field, value) -> str | None:
    """What is wrong with `value` for the field, or None."""
    if value is None:
        optional = f.before is None if f.resume == "recorded" else f.default is None
        return None if optional else "must be set"
    kinds = (int, float) if f.kind is float else (f.kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and f.kind is not bool):
        return f"must be {'a number' if f.kind is float else 'a whole number' if f.kind is int else f.kind.__name__}"
    if f.kind is float and not math.isfinite(value):
        return "must be a finite number"
    if f.choices and value not in f.choices:
        return f"choose one of {', '.join(f.choices)}"
    if f.check:
        passes, message = CHECKS[f.check]
        if not passes(value):
            return message
    return None


def check_values(fields, values: dict) -> None:
    """Every field's value, as a flag would be named: one line for the first that is wrong."""
    for f in fields:
        value = values.get(f.name)
        problem = None if f.resume == "recorded" else value_problem(f, value)
        if problem:
            raise ConfigError(f"{f.flag} {value if value != '' else repr(value)}: {problem}")
    if fields is PREDICT_FIELDS and values["top_k"] and values["min_labels"] and values["min_labels"] > values["top_k"]:
        raise ConfigError(f"--min-labels {values['min_labels']}: more than --top-k {values['top_k']}")
    if fields is TRAIN_FIELDS and values["train_on_validation"] and (values["patience"] or not values["epochs"]):
        raise ConfigError(f"--train-on-validation: trains for --epochs exactly (at least 1; --epochs "
                          f"{values['epochs']}, --patience {values['patience']}): its validation is not held out")
    if fields is TRAIN_FIELDS and values["epochs"] == 0 and values["features"] == "encoder":
        raise ConfigError("--epochs 0: trains nothing with --features encoder (with both or auto the fused head "
                          "is fitted over the pretrained encoder)")


def check_machine(fields, values: dict) -> None:
    """What the fields ask of this machine: the device exists, the folders and files they write can be written."""
    from engine.machine import check_device, check_output_file, check_writable_folder

    for f in fields:
        value = values.get(f.name)
        if not f.machine or not value:
            continue
        if f.machine == "device":
            check_device(value)
        elif f.machine == "folder":
            check_writable_folder(value, f.flag)
        else:
            check_output_file(value, f.flag)


def make_config(**values) -> dict:
    """A run's config: the defaults of train.py with these values (for a notebook or a bench, as train.py's
    flags would give them), checked. `build_model(make_config(model="minilm"), num_labels)` builds what
    `python train.py --model minilm` would train."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{unknown[0]!r}: not a setting of a run (see python train.py --help)")
    config = with_defaults(TRAIN_FIELDS, values)
    check_values(TRAIN_FIELDS, config)
    return config


def config_problem(config: dict) -> str | None:
    """What makes a stored config unusable (a program other than this one wrote or edited it), or None."""
    for f in TRAIN_FIELDS:
        if f.name not in config:
            return f"its config has no {f.name!r}"
        problem = value_problem(f, config[f.name])
        if problem:
            return f"config[{f.name!r}] is {config[f.name]!r} ({problem})"
    return None


def local_path(value: str | None) -> str | None:
    """A local file or folder as an absolute path, so the run's config works from any folder; a hub id or alias
    stays as it is."""
    return os.path.abspath(value) if value and os.path.exists(value) else value


def normalized(given: dict) -> dict:
    """Paths absolute, metric names as this version spells them (P@5 -> precision_at_5)."""
    given = dict(given)
    for name in ("data", "model", "label_hierarchy"):
        if name in given:
            given[name] = local_path(given[name])
    if given.get("cache_dir"):
        given["cache_dir"] = os.path.abspath(given["cache_dir"])
    if isinstance(given.get("select_metric"), str):
        given["select_metric"] = current_name(given["select_metric"])
    return given


def check_against_labels(config: dict, num_labels: int, validation_labels: list | None = None,
                         levels: dict | None = None) -> None:
    """Precision and nDCG at k need at least k labels, and every ranking metric two and a validation example with a
    gold label; ROC-AUC a label with both positives and negatives there; a level's metric a hierarchy with that
    level (`levels`: its name -> its labels' indices): found out now, before the run touches its folder, not after
    an epoch."""
    name = config["select_metric"]
    level = LEVEL_METRIC.match(name)
    if level:
        level_name = name[:level.end() - 1]
        if level_name not in (levels or {}):
            raise ConfigError(f"--select-metric {name}: " + (f"the hierarchy's levels are {', '.join(levels)}" if levels
                              else "a level's metric needs --label-hierarchy"))
        columns = {int(j): i for i, j in enumerate(levels[level_name])}
        num_labels, name = len(columns), name[level.end():]
        if validation_labels is not None:
            validation_labels = [[columns[j] for j in labels if j in columns] for labels in validation_labels]
    k = int(name.rsplit("_at_", 1)[1]) if "_at_" in name else 0
    if name in ("mean_r_precision", "lrap") or k:
        k = max(k, 2)
    if k > num_labels:
        raise ConfigError(f"--select-metric {config['select_metric']}: needs at least {k} labels, "
                          f"{'the level has' if level else 'the data has'} {num_labels}")
    if validation_labels is None:
        return
    counts = [0] * num_labels
    for labels in validation_labels:
        for j in labels:
            counts[j] += 1
    if (k and not any(validation_labels)) or (name.startswith("roc_auc") and not any(
            0 < c < len(validation_labels) for c in counts)):
        raise ConfigError(f"--select-metric {config['select_metric']}: cannot be measured on this validation split ("
                          f"{len(validation_labels)} examples, " + ("none with a gold label" if k else
                          "no label both present and absent") + "); choose micro_f1 or another F1")


def quiet(*args, **kwargs) -> None:
    """A log that says nothing (the ranks other than the main process, a bench)."""


def to_stderr(*args) -> None:
    print(*args, file=sys.stderr)
