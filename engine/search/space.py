"""search.py's flags and its search space: each `--space name=...` is checked against train.py's setting of that
name (engine/settings.py: its kind, choices and check) before any trial runs. Nothing here imports torch or Optuna."""
from dataclasses import dataclass

from engine.config import ConfigError, check_values, value_problem, with_defaults
from engine.settings import FIELDS, TRAIN_FIELDS, Field

SEARCH = "search"
# set by the study for each trial (train_on_validation: by --retrain alone; a trial must be scored on held-out laws)
CONTROLLED = ("output_dir", "run_name", "overwrite", "resume", "select_metric", "train_on_validation")
SEARCH_FIELDS = (
    Field("study_dir", None, "the study's folder: its SQLite storage (study.db, unless --storage), one run folder "
          "per trial (trials/N), best.pt and best.json of the best trial, trials.csv", SEARCH, required=True,
          machine="folder"),
    Field("space", None, "a setting of train.py and its range, repeated per setting: lr=1e-5:3e-4:log (numbers, "
          "log-uniform with :log), epochs=2:8 (whole numbers for a whole-number setting), pos_weight=none,sqrt "
          "(choices)", SEARCH, kind=list),
    Field("space_file", None, "more --space entries, one per line ('#' starts a comment)", SEARCH),
    Field("trials", 20, "trials of the study over all its workers; a pruned or failed trial counts, a resumed one "
          "once; a later command may raise it", SEARCH, int, check="at_least_1"),
    Field("metric", "micro_f1", "the objective, maximised: this validation metric at --threshold (never a threshold "
          "tuned on the same laws), at each trial's best epoch; also each trial's --select-metric", SEARCH,
          check="metric"),
    Field("pruner", "median", "stop a trial after an epoch whose best metric so far is below the median of the "
          "earlier trials' at that epoch (median), or outside the top third of its rung (halving: successive "
          "halving), or never (none); docs/results.md, Search", SEARCH, choices=("median", "halving", "none")),
    Field("pruner_startup", 2, "trials that must finish before any trial is pruned", SEARCH, int,
          check="zero_or_more"),
    Field("storage", None, "an Optuna RDB storage URL that many search.py workers share, on one machine or many: "
          "postgresql://user:password@host/database (needs psycopg2-binary); default: sqlite in --study-dir",
          SEARCH),
    Field("retrain", False, "when the study has its --trials, train the best trial's settings once more on train + "
          "validation for its best epoch count (train.py --train-on-validation) in retrain/ of --study-dir, as "
          "LibMultiLabel retrains; the same command continues a stopped retrain", SEARCH, bool),
    Field("sampler_seed", 0, "seed of the TPE sampler, which draws trial n with this + n (a study run again "
          "by one worker draws the same trials; a resumed study or another worker draws new ones)", SEARCH,
          int, check="zero_or_more"),
)
SEARCH_CLI_FIELDS = SEARCH_FIELDS + tuple(f for f in TRAIN_FIELDS if f.name not in CONTROLLED)


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a number range (`low`..`high`, log-uniform with `log`) or `choices`."""
    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    @property
    def spec(self) -> str:
        if self.choices:
            return f"{self.name}={','.join(str(c) for c in self.choices)}"
        return f"{self.name}={self.low}:{self.high}" + (":log" if self.log else "")

    def contains(self, value) -> bool:
        if self.choices:
            return value in self.choices
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def suggest(self, trial):
        """The trial's value (Optuna samples it, or returns the one a queued or resumed trial holds)."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if FIELDS[self.name].kind is int:
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def parse_number(text: str, f: Field, spec: str):
    try:
        return int(text) if f.kind is int else float(text)
    except ValueError:
        kind = "whole numbers" if f.kind is int else "numbers"
        raise ConfigError(f"--space {spec}: {f.flag} takes {kind}, not {text!r}") from None


def parse_dimension(spec: str) -> Dimension:
    name, sep, values = spec.partition("=")
    name = name.strip().lstrip("-").replace("-", "_")
    if not sep or not name or not values.strip():
        raise ConfigError(f"--space {spec}: expected name=low:high, name=low:high:log or name=a,b,...")
    f = FIELDS.get(name)
    if f is None:
        raise ConfigError(f"--space {spec}: {name} is not a setting of train.py (python train.py --help)")
    if name in CONTROLLED or f.resume in ("free", "recorded"):
        raise ConfigError(f"--space {spec}: {f.flag} is not searched (the study sets it for each trial, or each "
                          "command decides it)")
    if f.kind is bool:
        raise ConfigError(f"--space {spec}: {f.flag} is a switch; give it or not for every trial")
    values = values.strip()
    if ":" in values:
        parts = values.split(":")
        if f.kind is str or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            wanted = "choices: a,b,..." if f.kind is str else "low:high or low:high:log"
            raise ConfigError(f"--space {spec}: {f.flag} takes {wanted}")
        low, high = (parse_number(p, f, spec) for p in parts[:2])
        dim = Dimension(name, low, high, log=len(parts) == 3)
        if not low < high:
            raise ConfigError(f"--space {spec}: the low end must be below the high end")
        if dim.log and low <= 0:
            raise ConfigError(f"--space {spec}: a log range must start above 0")
        ends = (low, high)
    else:
        choices = tuple(c.strip() for c in values.split(","))
        if f.kind is not str:
            choices = tuple(parse_number(c, f, spec) for c in choices)
        if len(set(choices)) < 2:
            raise ConfigError(f"--space {spec}: one value is not a search; give it as {f.flag} for every trial")
        dim, ends = Dimension(name, choices=choices), choices
    for value in ends:
        problem = value_problem(f, value)
        if problem:
            raise ConfigError(f"--space {spec}: {f.flag} {value}: {problem}")
    return dim


def read_space(given: dict) -> list[Dimension]:
    """The --space entries and the --space-file lines, parsed and checked."""
    specs = list(given.get("space") or [])
    path = given.get("space_file")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                specs += [line.split("#", 1)[0].strip() for line in f]
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--space-file {path}: {getattr(e, 'strerror', None) or e}") from None
        specs = [s for s in specs if s]
    if not specs:
        raise ConfigError("--space: nothing to search; give --space name=range (or --space-file)")
    dims = [parse_dimension(s) for s in specs]
    names = [d.name for d in dims]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"--space {name}: given twice")
    return dims


def check_study(given: dict) -> tuple[list[Dimension], dict]:
    """(the space, train.py's flags for every trial). Each end of each range is tried with the other flags, so that
    a combination train.py refuses (--epochs 0 with --features encoder) is refused now, not in a trial."""
    dims = read_space(given)
    train_given = {k: v for k, v in given.items() if k in FIELDS}
    for dim in dims:
        for value in dim.choices or (dim.low, dim.high):
            try:
                check_values(TRAIN_FIELDS, with_defaults(TRAIN_FIELDS, {**train_given, dim.name: value}))
            except ConfigError as e:
                raise ConfigError(f"--space {dim.spec}: {e}") from None
    return dims, train_given


def baseline(dims: list[Dimension], train_given: dict) -> dict | None:
    """The study's first trial: the flags given (train.py's defaults where none is), if the space holds them, so
    that every study measures its tuned trials against the recipe it started from."""
    params = {d.name: train_given.get(d.name, FIELDS[d.name].default) for d in dims}
    return params if all(d.contains(params[d.name]) for d in dims) else None


def train_flags(values: dict) -> list[str]:
    """train.py's command-line flags for these settings."""
    argv = []
    for name, value in values.items():
        f = FIELDS[name]
        if f.kind is bool:
            argv += [f.flag] if value else []
        elif value is not None:
            argv += [f.flag, str(value)]
    return argv
