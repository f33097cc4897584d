"""Fine-tune a BERT-family encoder for multi-label text classification: the flags, with every default; the run
itself is engine/trainer.py (the data, the state, the epoch loop), imported once the flags have parsed.

    python train.py --epochs 50 --lr 2e-5                       # MultiEURLEX (hub), bert-base-uncased
    python train.py --model minilm --data ../shared/data/semeval2018_ec --epochs 5
    torchrun --nproc-per-node 4 train.py ...                     # data parallel, one process per GPU
"""
import argparse
import os

from engine.flags import ShowDefaults

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bert-multilabel")


def get_args_parser() -> argparse.ArgumentParser:
    """The one source of truth for every default; the resolved values go to config.json and each checkpoint."""
    p = argparse.ArgumentParser(formatter_class=ShowDefaults,
                                description="Fine-tune a BERT-family encoder for multi-label classification.")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="coastalcph/multi_eurlex",
                   help="hub dataset id, or a local folder (train/validation/test files) or file: csv, tsv, jsonl, parquet")
    g.add_argument("--data-config", default="en", help="hub dataset config (ignored for local data)")
    g.add_argument("--text-column", default=None, help="default: text, sentence, tweet, content, document or body")
    g.add_argument("--label-column", default=None,
                   help="a list column of label names or ids (default: labels or label; else every other "
                        "column is a 0/1 label column)")
    g.add_argument("--label-separator", default=",", help="separates label names in a csv/tsv list cell")
    g.add_argument("--val-fraction", type=float, default=0.1, help="carved from train when there is no validation split")
    g.add_argument("--split-seed", type=int, default=0, help="seed of that carve")
    g.add_argument("--max-length", type=int, default=300, help="tokens per example (per window with --long-doc chunk)")
    g.add_argument("--long-doc", default="chunk", choices=["truncate", "head-tail", "chunk"],
                   help="a text longer than --max-length: keep its start (truncate), its first quarter and last "
                        "three quarters of the budget (head-tail), or encode it in overlapping windows whose "
                        "logits are pooled into one prediction (chunk); README, Long documents")
    g.add_argument("--stride", type=int, default=None,
                   help="tokens shared by consecutive windows (chunk; default: a quarter of a window's text)")
    g.add_argument("--max-chunks", type=int, default=8,
                   help="windows per document at most, from its start (chunk): bounds memory and time")
    g.add_argument("--chunk-pool", default="max", choices=["max", "mean"],
                   help="how a document's window logits become one (chunk)")
    g.add_argument("--max-train-samples", type=int, default=None, help="train on the first N examples only")
    g.add_argument("--max-eval-samples", type=int, default=None,
                   help="validate (and test) on the first N examples only")
    g.add_argument("--cache-dir", default=DEFAULT_CACHE, help="tokenized data cache ('' for none)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="bert-base-uncased", help="hub id, local folder, or alias: minilm")
    g.add_argument("--pooling", default="mean", choices=["mean", "cls"], help="token states -> one vector")
    g.add_argument("--dropout", type=float, default=0.1, help="before the linear head")
    g.add_argument("--attention", default="auto", choices=["auto", "sdpa", "eager"],
                   help="attention kernels; auto: on a CPU, plain attention with a cheap dropout mask while "
                        "training and for short texts in bf16, else SDPA; on a GPU, sdpa")
    g.add_argument("--attention-dropout", type=float, default=None,
                   help="dropout on the attention probabilities (default: the encoder's own, 0.1 for BERT)")
    g.add_argument("--fast-paths", default="on", choices=["on", "off"],
                   help="the CPU fast paths of model/cpu_fast.py (dropout masks, attention kernels, allocator, bf16 "
                        "only where fast); off: PyTorch and transformers as they ship")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the model for training and validation, with the CPU fast paths off: "
                        "each new batch shape costs a compile first (tens of seconds); README, Speed")
    g.add_argument("--compile-mode", default="default", choices=["default", "reduce-overhead", "max-autotune"],
                   help="with --compile: torch.compile's mode; reduce-overhead replays CUDA graphs, taking the "
                        "host's cost of launching each kernel off a GPU that waits on it (README, GPU check)")
    g.add_argument("--freeze-embeddings", default="word", choices=["none", "word", "all"],
                   help="keep embeddings as pretrained: word (the word-embedding matrix: half of MiniLM's weights, "
                        "which a dense AdamW update would rewrite every step for the few hundred rows a batch uses) "
                        "or all (also position and token-type embeddings and their LayerNorm); README")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, default=5, help="passes over the training data")
    g.add_argument("--batch-size", type=int, default=16, help="per device")
    g.add_argument("--eval-batch-size", type=int, default=64, help="per device, in validation")
    g.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate (peak)")
    g.add_argument("--head-lr-mult", type=float, default=10.0, help="the new head learns this many times faster")
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW's, on weight matrices only")
    g.add_argument("--warmup", type=float, default=0.1, help="fraction of all steps with a linear warm-up")
    g.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step")
    g.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (0: no clipping)")
    g.add_argument("--loss", default="bce", choices=["bce", "focal", "asl", "db"],
                   help="binary cross-entropy, focal loss, the asymmetric loss, or the distribution-balanced loss "
                        "(README, Rare labels)")
    g.add_argument("--pos-weight", default="sqrt", choices=["none", "auto", "sqrt"],
                   help="weigh each label's positives by negatives/positives (auto) or its square root (sqrt), "
                        "capped by --pos-weight-max; sqrt lets rare labels be learned (README, Rare labels)")
    g.add_argument("--pos-weight-max", type=float, default=10.0, help="cap of --pos-weight")
    g.add_argument("--head-bias", default="zero", choices=["zero", "prior"],
                   help="the head's initial bias: 0, or each label's log-odds in the training data")
    g.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="autocast dtype; auto: bf16 where the hardware runs it fast, fp16 on older GPUs, else off")
    g.add_argument("--seed", type=int, default=42, help="initial head weights, dropout, data order")
    g = p.add_argument_group("evaluation")
    g.add_argument("--threshold", type=float, default=0.5, help="probability at which a label is predicted")
    g.add_argument("--select-metric", default="micro_f1", help="validation metric that picks best.pt")
    g.add_argument("--patience", type=int, default=0,
                   help="stop when --select-metric has not improved for this many epochs (0: never)")
    g.add_argument("--tune-objective", default="micro_f1", choices=["micro_f1", "macro_f1"],
                   help="what the thresholds tuned on validation predictions maximise")
    g.add_argument("--tune-min-positives", type=int, default=5,
                   help="a label with fewer validation positives is too rare to tune alone (--tune-fallback)")
    g.add_argument("--tune-fallback", default="pooled", choices=["global", "pooled"],
                   help="the threshold of labels too rare to tune alone: the tuned global one, or one tuned on "
                        "all of them pooled (README, Rare labels)")
    g = p.add_argument_group("run")
    g.add_argument("--output-dir", default=None, help="default: runs/<run-name>")
    g.add_argument("--run-name", default=None, help="default: <model>-<data>-<date>")
    g.add_argument("--overwrite", action="store_true", help="replace a finished run in --output-dir")
    g.add_argument("--resume", default=None, help="a last.pt to continue from, or auto (the run folder's)")
    g.add_argument("--save-every", type=int, default=0, help="also save last.pt every N optimizer steps")
    g.add_argument("--log-every", type=int, default=10, help="optimizer steps between logged training losses")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    g.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bitwise resumable)")
    return p


def main(argv=None) -> dict:
    get_args_parser().parse_args(argv)  # --help, or a misspelt flag, answers here: before torch is imported
    from engine.trainer import train_from_flags

    return train_from_flags(get_args_parser, argv)


if __name__ == "__main__":
    main()
