"""Every setting of every command, one `Field` each: its default, help, check and resume rule side by side. The CLI
parsers are generated from these tables (engine/config.py); nothing here imports torch."""
import os
import re
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

# Metric names older checkpoints, metrics.jsonl files and --select-metric values used.
FORMER_METRIC_NAMES = {**{f"P@{k}": f"precision_at_{k}" for k in (1, 3, 5)},
                       **{f"nDCG@{k}": f"ndcg_at_{k}" for k in (1, 3, 5)}, "mRP": "mean_r_precision"}


def current_name(key: str) -> str:
    """A metric's name, or a logged key that ends in one (`val_P@5`), as this version names it."""
    for old, new in FORMER_METRIC_NAMES.items():
        if key == old or key.endswith("_" + old):
            return key[:len(key) - len(old)] + new
    return key


def selectable(name: str) -> bool:
    """A metric that can pick best.pt: one of SELECTABLE_METRICS, or a level's (`level_2_micro_f1`)."""
    level = LEVEL_METRIC.match(name)
    return name[level.end():] in LEVEL_METRICS if level else name in SELECTABLE_METRICS


DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bert-multilabel")


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
          "(docs/guide.md, Label hierarchy)", DATA, before=None),
    Field("label_separator", ",", "separates label names in a csv/tsv list cell", DATA, check="not_empty"),
    Field("val_fraction", 0.1, "carved from train when there is no validation split", DATA, float, check="fraction"),
    Field("split_seed", 0, "seed of that carve", DATA, int, check="zero_or_more"),
    Field("max_length", 300, "tokens per example (per window with --long-doc chunk)", DATA, int, check="at_least_1"),
    Field("long_doc", "truncate", "a text longer than --max-length: keep its start (truncate), its first quarter and "
          "last three quarters of the budget (head-tail), or encode it in overlapping windows whose logits are "
          "pooled into one prediction (chunk); docs/guide.md, Long documents", DATA,
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
          "docs/guide.md, EU law)", MODEL, choices=("auto", "encoder", "both"), before="encoder"),
    Field("tfidf_terms", 200_000, "TF-IDF vocabulary (words and bigrams in at least 2 training texts) at most (the "
          "fused head)", MODEL, int, check="at_least_1", before=200_000),
    Field("tfidf_prune", 0.01, "the fused head's TF-IDF weights below this in size are dropped after each fit and "
          "the rest stored sparse, as DiSMEC prunes: 0.01 kept a few percent of them at no loss of validation F1 or "
          "P@5 (docs/results.md, EU law: the fit)", MODEL, float, check="zero_or_more", before=0.0),
    Field("embedding_scale", 2.0, "the L2-normalised embedding's scale beside the L2-normalised TF-IDF vector when the "
          "fused head is fitted: its weight against the TF-IDF terms' under the same regularisation (the fused head; "
          "chosen on EU laws: docs/results.md, EU law)", MODEL, float, check="positive", before=2.0),
    Field("svm_c", 2.0, "C (inverse regularisation) of the fused head's fit (the fused head; chosen on EU laws)",
          MODEL, float, check="positive", before=2.0),
    Field("svm_solver", "dual", "how the fused head's SVMs are fitted (liblinear-multicore): dual, coordinate descent "
          "from scratch, the fastest single fit; primal, Newton's method started from the last epoch's weights "
          "(docs/results.md, EU law: the fit)", MODEL, choices=("dual", "primal"), before="dual"),
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
          "(docs/guide.md, Rare labels)", OPTIM, choices=("bce", "focal", "asl", "db"), before="bce"),
    Field("pos_weight", "sqrt", "weigh each label's positives by negatives/positives (auto) or its square root "
          "(sqrt), capped by --pos-weight-max; sqrt lets rare labels be learned (docs/guide.md, Rare labels)", OPTIM,
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
          "tuned on all of them pooled (docs/guide.md, Rare labels)", EVAL, choices=("global", "pooled"),
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
