"""The run's config in one home. Each setting is a `Field`: its default, help, check and resume rule side by side;
the CLI parsers are generated from the fields, `upgrade` turns an older checkpoint's config into today's, and
engine/run_config.py turns train.py's flags (a resume included) into the one config dict that the run passes
everywhere and stores in config.json and every checkpoint. Nothing here imports torch: the CLIs parse before it loads."""
import argparse
import math
import os
import re
import sys
from dataclasses import dataclass

REQUIRED = object()  # `Field.before`: every version of the config has the field, so one without it is refused
RESUME_RULES = {
    "fixed": "a resumed run keeps the value it started with; giving another is refused",
    "applied": "a resumed run takes a new value from the step it continues at, and logs and records the change",
    "free": "decided by each command, never taken from the checkpoint: where it writes, what machine it runs on",
    "recorded": "not a flag: what the run resolved or counted (the autocast dtype, the attention kernel)",
}
SELECTABLE_METRICS = ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "roc_auc_micro", "roc_auc_macro",
                      "subset_accuracy", "jaccard_samples", "lrap", "precision_at_1", "precision_at_3",
                      "precision_at_5", "r_precision_at_1", "r_precision_at_3", "r_precision_at_5", "ndcg_at_1",
                      "ndcg_at_3", "ndcg_at_5", "mean_r_precision")
LEVEL_METRICS = tuple(name for name in SELECTABLE_METRICS  # what engine/metrics.py's level_metrics computes
                      if name in ("micro_f1", "macro_f1", "mean_r_precision", "lrap") or "_at_" in name)
LEVEL_METRIC = re.compile(r"level_[1-9][0-9]*_")  # a level's metric under --label-hierarchy: level_1_micro_f1


def selectable(name: str) -> bool:
    """A metric that can pick best.pt: one of SELECTABLE_METRICS, or a level's (`level_2_micro_f1`)."""
    level = LEVEL_METRIC.match(name)
    return name[level.end():] in LEVEL_METRICS if level else name in SELECTABLE_METRICS


DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bert-multilabel")


class ConfigError(ValueError):
    """A setting with a value that cannot work: the message is one line that names the flag (the CLIs end with it
    and exit status 2, as for `data.errors.InputError`, which this module cannot import before torch loads)."""


@dataclass(frozen=True)
class Field:
    """One setting. `kind`: str, int, float or bool (a switch); `choices`: the values it may take; `check`: a
    key of CHECKS its value must pass; `machine`: a key of MACHINE_CHECKS (the device, a folder it writes), run
    on the command line only; `resume`: a key of RESUME_RULES; `before`: the value a config from before the
    field existed ran with (`upgrade` fills it in). A default of None means the setting may be unset."""
    name: str
    default: object
    help: str
    group: str = ""
    kind: type = str
    choices: tuple = ()
    check: str = ""
    machine: str = ""
    resume: str = "fixed"
    before: object = REQUIRED
    required: bool = False
    positional: bool = False

    @property
    def flag(self) -> str:
        return self.name if self.positional else "--" + self.name.replace("_", "-")


CHECKS = {"at_least_1": (lambda v: v >= 1, "must be at least 1"),
          "zero_or_more": (lambda v: v >= 0, "must be zero or more"),
          "positive": (lambda v: v > 0, "must be positive"),
          "fraction": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
          "not_empty": (lambda v: v != "", "must be at least one character"),
          "metric": (selectable, "choose one of " + ", ".join(SELECTABLE_METRICS) + ", or with --label-hierarchy "
                     "a level's: level_1_micro_f1, or level_K_ followed by one of " + ", ".join(LEVEL_METRICS))}

DATA, MODEL, OPTIM, EVAL, RUN = "data", "model", "optimization", "evaluation", "run"
TRAIN_FIELDS = (
    Field("data", "coastalcph/multi_eurlex", "hub dataset id, or a local folder (train/validation/test files) or "
          "file: csv, tsv, jsonl, parquet", DATA),
    Field("data_config", "en", "hub dataset config (ignored for local data)", DATA),
    Field("text_column", None, "default: text, sentence, tweet, content, document or body", DATA),
    Field("label_column", None, "a list column of label names or ids (default: labels or label; else every other "
          "column is a 0/1 label column)", DATA),
    Field("label_hierarchy", None, "a JSON file of each label's parent (child -> parent, or EUROVOC's label -> its "
          "ancestors): one model learns every level's labels, and predicts a label only with its ancestors "
          "(README, Label hierarchy)", DATA, before=None),
    Field("label_separator", ",", "separates label names in a csv/tsv list cell", DATA, check="not_empty"),
    Field("val_fraction", 0.1, "carved from train when there is no validation split", DATA, float, check="fraction"),
    Field("split_seed", 0, "seed of that carve", DATA, int, check="zero_or_more"),
    Field("max_length", 300, "tokens per example (per window with --long-doc chunk)", DATA, int, check="at_least_1"),
    Field("long_doc", "truncate", "a text longer than --max-length: keep its start (truncate), its first quarter and "
          "last three quarters of the budget (head-tail), or encode it in overlapping windows whose logits are "
          "pooled into one prediction (chunk); README, Long documents", DATA,
          choices=("truncate", "head-tail", "chunk"), before="truncate"),
    Field("stride", None, "tokens shared by consecutive windows (chunk; default: a quarter of a window's text)",
          DATA, int, check="zero_or_more", before=None),
    Field("max_chunks", 8, "windows per document at most, from its start (chunk): bounds memory and time", DATA,
          int, check="at_least_1", before=8),
    Field("chunk_pool", "max", "how a document's window logits become one (chunk)", DATA, choices=("max", "mean"),
          before="max"),
    Field("train_on_validation", False, "train on the validation split too, for --epochs exactly (search.py "
          "--retrain: the best settings on every labelled example, as LibMultiLabel retrains): validation then scores "
          "examples trained on, so each epoch is best.pt and its tuned thresholds are not held out", DATA, bool,
          before=False),
    Field("max_train_samples", None, "train on the first N examples only", DATA, int, check="at_least_1"),
    Field("max_eval_samples", None, "validate (and test) on the first N examples only", DATA, int,
          check="at_least_1"),
    Field("cache_dir", DEFAULT_CACHE, "tokenized data cache ('' for none)", DATA, machine="folder", resume="free"),
    Field("model", "bert-base-uncased", "hub id, local folder, or alias: minilm", MODEL),
    Field("pooling", "mean", "token states -> one vector", MODEL, choices=("mean", "cls")),
    Field("dropout", 0.1, "before the linear head", MODEL, float, check="fraction", resume="applied"),
    Field("attention", "auto", "attention kernels; auto: on a CPU, plain attention with a cheap dropout mask while "
          "training and for short texts in bf16, else SDPA; on a GPU, sdpa", MODEL,
          choices=("auto", "sdpa", "eager"), resume="applied", before="auto"),
    Field("attention_dropout", None, "dropout on the attention probabilities (default: the encoder's own, 0.1 for "
          "BERT)", MODEL, float, check="fraction", before=None),
    Field("fast_paths", "on", "the CPU fast paths of model/cpu_fast.py (dropout masks, attention kernels, "
          "allocator, bf16 only where fast); off: PyTorch and transformers as they ship", MODEL,
          choices=("on", "off"), before="on"),
    Field("compile", "auto", "torch.compile the model for training and validation, with the CPU fast paths off, and "
          "pad lengths to multiples of 16 tokens so that batches take few shapes (the first steps compile); auto: "
          "on a GPU unless --long-doc chunk (whose windows per batch vary), off on a CPU, where the eager fast "
          "paths are faster; docs/results.md, Speed", MODEL, choices=("auto", "on", "off"), resume="applied",
          before="off"),
    Field("compile_mode", "auto", "torch.compile's mode; reduce-overhead replays CUDA graphs, taking the host's cost "
          "of launching each kernel off a GPU that waits on it; auto: reduce-overhead on a GPU, default elsewhere",
          MODEL, choices=("auto", "default", "reduce-overhead", "max-autotune"), resume="applied", before="default"),
    Field("features", "auto", "what the head reads: the encoder's pooled embedding (encoder: the head trained with "
          "it), or that and the text's whole TF-IDF vector (both: one linear head fitted to convergence over the two "
          "after each epoch, a squared-hinge SVM per label); auto: both, and after each epoch's validation whichever "
          "head scored the better --select-metric predicts (on EU law the fused one, on tweets the encoder's own; "
          "README, EU law)", MODEL, choices=("auto", "encoder", "both"), before="encoder"),
    Field("tfidf_terms", 200_000, "TF-IDF vocabulary (words and bigrams in at least 2 training texts) at most, and "
          "fewer where terms x labels x 4 bytes would pass 1 GiB (the fused head)", MODEL, int, check="at_least_1",
          before=200_000),
    Field("embedding_scale", 2.0, "the L2-normalised embedding's scale beside the L2-normalised TF-IDF vector when the "
          "fused head is fitted: its weight against the TF-IDF terms' under the same regularisation (the fused head; "
          "chosen on EU laws: docs/results.md, EU law)", MODEL, float, check="positive", before=2.0),
    Field("svm_c", 2.0, "C (inverse regularisation) of the fused head's fit (the fused head; chosen on EU laws)",
          MODEL, float, check="positive", before=2.0),
    Field("freeze_embeddings", "word", "keep embeddings as pretrained: word (the word-embedding matrix: half of "
          "MiniLM's weights, which a dense AdamW update would rewrite every step for the few hundred rows a batch "
          "uses) or all (also position and token-type embeddings and their LayerNorm)", MODEL,
          choices=("none", "word", "all"), before="none"),
    Field("epochs", 5, "passes over the training data (0, with the fused head: the encoder is not fine-tuned; the "
          "fused head is fitted once over its pretrained embedding)", OPTIM, int, check="zero_or_more",
          resume="applied"),
    Field("batch_size", 16, "per device", OPTIM, int, check="at_least_1"),
    Field("eval_batch_size", 64, "per device, in validation", OPTIM, int, check="at_least_1", resume="applied"),
    Field("lr", 1e-4, "encoder learning rate (peak)", OPTIM, float, check="positive", resume="applied"),
    Field("head_lr_mult", 10.0, "the new head learns this many times faster", OPTIM, float, check="zero_or_more",
          resume="applied"),
    Field("weight_decay", 0.01, "AdamW's, on weight matrices only", OPTIM, float, check="zero_or_more",
          resume="applied"),
    Field("warmup", 0.1, "fraction of all steps with a linear warm-up", OPTIM, float, check="fraction",
          resume="applied"),
    Field("grad_accum", 1, "batches per optimizer step", OPTIM, int, check="at_least_1"),
    Field("clip_grad", 1.0, "max gradient norm (0: no clipping)", OPTIM, float, check="zero_or_more",
          resume="applied"),
    Field("loss", "bce", "binary cross-entropy, focal loss, the asymmetric loss, or the distribution-balanced loss "
          "(README, Rare labels)", OPTIM, choices=("bce", "focal", "asl", "db"), before="bce"),
    Field("pos_weight", "sqrt", "weigh each label's positives by negatives/positives (auto) or its square root "
          "(sqrt), capped by --pos-weight-max; sqrt lets rare labels be learned (README, Rare labels)", OPTIM,
          choices=("none", "auto", "sqrt"), before="none"),
    Field("pos_weight_max", 10.0, "cap of --pos-weight", OPTIM, float, check="positive"),
    Field("head_bias", "prior", "the head's initial bias: each label's log-odds in the training data, or 0; prior "
          "let many labels be learned on EU law (docs/results.md, EU law)", OPTIM, choices=("zero", "prior"),
          before="zero"),
    Field("amp", "auto", "autocast dtype; auto: bf16 where the hardware runs it fast, fp16 on older GPUs, else off",
          OPTIM, choices=("auto", "bf16", "fp16", "off"), resume="applied"),
    Field("seed", 42, "initial head weights, dropout, data order", OPTIM, int, check="zero_or_more"),
    Field("threshold", 0.5, "probability at which a label is predicted (and --select-metric is measured)", EVAL,
          float, check="fraction"),
    Field("select_metric", "micro_f1", "validation metric that picks best.pt: micro_f1, macro_f1, precision_at_5, "
          "ndcg_at_5, ... (" + ", ".join(SELECTABLE_METRICS) + "); with --label-hierarchy also a level's: "
          "level_1_micro_f1, ...", EVAL, check="metric"),
    Field("patience", 0, "stop when --select-metric has not improved for this many epochs (0: never)", EVAL, int,
          check="zero_or_more", resume="applied", before=0),
    Field("tune_objective", "micro_f1", "what the thresholds tuned on validation predictions maximise", EVAL,
          choices=("micro_f1", "macro_f1"), resume="applied", before="micro_f1"),
    Field("tune_min_positives", 5, "a label with fewer validation positives is too rare to tune alone "
          "(--tune-fallback)", EVAL, int, check="zero_or_more", resume="applied", before=5),
    Field("tune_fallback", "pooled", "the threshold of labels too rare to tune alone: the tuned global one, or one "
          "tuned on all of them pooled (README, Rare labels)", EVAL, choices=("global", "pooled"),
          resume="applied", before="global"),
    Field("output_dir", None, "default: runs/<run-name>", RUN, resume="free"),
    Field("run_name", None, "default: <model>-<data>-<date>", RUN, resume="free"),
    Field("overwrite", False, "replace a finished run in --output-dir", RUN, bool, resume="free"),
    Field("resume", None, "a last.pt to continue from, or auto (the run folder's)", RUN, resume="free"),
    Field("save_every", 0, "also save last.pt every N optimizer steps", RUN, int, check="zero_or_more",
          resume="applied"),
    Field("log_every", 10, "optimizer steps between logged training losses", RUN, int, check="at_least_1",
          resume="applied"),
    Field("device", "auto", "auto, cpu, cuda, cuda:1 ...", RUN, machine="device", resume="free"),
    Field("workers", 0, "DataLoader worker processes", RUN, int, check="zero_or_more", resume="free"),
    Field("deterministic", False, "deterministic algorithms (bitwise resumable)", RUN, bool, resume="applied"),
    # What the run resolves or counts, recorded beside the flags (no flag sets them).
    Field("amp_dtype", None, "the autocast dtype --amp resolved to", choices=("off", "bf16", "fp16"),
          resume="recorded"),
    Field("attention_impl", None, "the attention kernel the encoder runs", choices=("sdpa", "eager", "plain_or_sdpa"),
          resume="recorded"),
    Field("compiled", None, "the torch.compile mode --compile resolved to, or off",
          choices=("off", "default", "reduce-overhead", "max-autotune"), resume="recorded", before="off"),
    Field("world_size", None, "processes that trained together", kind=int, check="at_least_1", resume="recorded",
          before=1),
    Field("num_labels", None, "labels of the run", kind=int, check="at_least_1", resume="recorded", before=None),
    Field("resumes", None, "each resume: the step it continued at and the flags it changed", kind=list,
          resume="recorded", before=[]),
)
FIELDS = {f.name: f for f in TRAIN_FIELDS}
RENAMED = {"freeze_word_embeddings": ("freeze_embeddings", lambda on: "word" if on else "none")}

EVALUATE_FIELDS = (
    Field("ckpt", None, "a best.pt or last.pt", required=True),
    Field("split", None, "split of the training data (or of a --data folder) to evaluate (default: test; a --data "
          "file is evaluated whole)", choices=("train", "validation", "test")),
    Field("data", None, "other data (file or folder) labelled with the checkpoint's labels"),
    Field("thresholds", None, "tuned (per label, tuned on validation in training), global (the tuned global one), "
          "or a number; default: the training run's --threshold"),
    Field("batch_size", None, "default: the training run's eval batch size", kind=int, check="at_least_1"),
    Field("max_eval_samples", None, "default: the training run's", kind=int, check="at_least_1"),
    Field("amp", None, "default: the training run's", choices=("auto", "bf16", "fp16", "off")),
    Field("device", "cpu", "cpu, cuda, cuda:1 ...", machine="device"),
    Field("output", None, "metrics JSON (default: beside the checkpoint)", machine="output_file"),
    Field("save_predictions", None, "JSON lines: id, gold, predicted, probabilities", machine="output_file"),
    Field("cache_dir", None, "tokenized data cache ('' for none; default: the training run's)"),
)
PREDICT_FIELDS = (
    Field("texts", None, "texts to label; none: --file, or one text per line on stdin", kind=list, positional=True),
    Field("ckpt", None, "a best.pt or last.pt, or a folder export.py wrote", required=True),
    Field("file", None, "a .txt (one text per line), csv, tsv, jsonl or parquet file"),
    Field("text_column", None, "for csv, tsv, jsonl, parquet (default: as in training)"),
    Field("thresholds", None, "tuned (per label; the default where the checkpoint has them), global, or a number"),
    Field("json", False, "one JSON line per text", kind=bool),
    Field("top_k", None, "at most this many labels per text (per level with a label hierarchy): the likeliest of those "
          "at or above their thresholds", kind=int, check="at_least_1"),
    Field("min_labels", None, "at least this many labels per text (per level with a label hierarchy): the likeliest, "
          "even below their thresholds", kind=int, check="at_least_1"),
    Field("batch_size", None, "default: the training run's eval batch size", kind=int, check="at_least_1"),
    Field("device", "cpu", "cpu, cuda, cuda:1 ...", machine="device"),
)

EXPORT_FIELDS = (
    Field("ckpt", None, "a best.pt or last.pt", required=True),
    Field("out", None, "the folder to write; it must not exist, unless --overwrite", required=True,
          machine="folder"),
    Field("format", "hf", "hf: a Hugging Face model folder (safetensors); onnx: model.onnx (needs the [export] "
          "extra)", choices=("hf", "onnx")),
    Field("overwrite", False, "replace --out if it holds an earlier export", kind=bool),
)


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


def upgrade(config: dict) -> tuple[dict, dict]:
    """An older checkpoint's config as today's, and what was filled in: renamed settings under their new names,
    metric names as this version spells them, and each setting added since with the value those runs ran with
    (`Field.before`). A config that lacks a setting every version has is refused."""
    from engine.metrics import current_name

    config, filled = dict(config), {}
    for old, (new, convert) in RENAMED.items():
        if old in config:
            value = config.pop(old)
            if new not in config:
                config[new] = filled[new] = convert(value)
    if isinstance(config.get("select_metric"), str):
        config["select_metric"] = current_name(config["select_metric"])
    if isinstance(config.get("compile"), bool):  # --compile was a switch until 2026-12-02
        config["compile"] = filled["compile"] = "on" if config["compile"] else "off"
        config.setdefault("compiled", config.get("compile_mode", "default") if config["compile"] == "on" else "off")
        filled["compiled"] = config["compiled"]
    for f in TRAIN_FIELDS:
        if f.name in config:
            continue
        if f.before is REQUIRED:
            raise ConfigError(f"its config has no {f.name!r}")
        config[f.name] = filled[f.name] = list(f.before) if isinstance(f.before, list) else f.before
    return config, filled


def config_problem(config: dict) -> str | None:
    """What makes a stored config unusable (a program other than this one wrote or edited it), or None."""
    for f in TRAIN_FIELDS:
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
    from engine.metrics import current_name

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


def resolve_window(config: dict, tokenizer, positions: int | None = None) -> None:
    """--max-length against what the encoder can take (its tokenizer's model_max_length, and its `positions`:
    `model.position_limit`) and the special tokens it adds, and --stride against the window; an unset stride
    becomes a number here, so config.json and the checkpoint hold it."""
    from data.batching import default_stride

    limit = min(tokenizer.model_max_length, positions or tokenizer.model_max_length)
    if config["max_length"] > limit:
        raise ConfigError(f"--max-length {config['max_length']}: beyond the model's limit of {limit} tokens")
    shortest = tokenizer.num_special_tokens_to_add() + 1
    if config["max_length"] < shortest:
        raise ConfigError(f"--max-length {config['max_length']}: leaves no room for text (the model adds "
                          f"{shortest - 1} special tokens); use at least {shortest}")
    window = config["max_length"] - shortest + 1
    if config["stride"] is None:
        config["stride"] = default_stride(window)
    if config["long_doc"] == "chunk" and config["stride"] >= window:
        raise ConfigError(f"--stride {config['stride']}: windows of --max-length {config['max_length']} hold "
                          f"{window} tokens of text; the stride must be smaller")


def quiet(*args, **kwargs) -> None:
    """A log that says nothing (the ranks other than the main process, a bench)."""


def to_stderr(*args) -> None:
    print(*args, file=sys.stderr)
