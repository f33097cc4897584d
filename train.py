"""Fine-tune a BERT-family encoder for multi-label text classification.

    python train.py --epochs 50 --lr 2e-5                       # MultiEURLEX (hub), bert-base-uncased
    python train.py --model minilm --data ../shared/data/semeval2018_ec --epochs 5
    torchrun --nproc-per-node 4 train.py ...                     # data parallel, one process per GPU
"""
import argparse
import json
import os
import random
import time

import numpy as np
import torch

from data import DataError, build_loader, load_examples, tokenize
from data.errors import InputError
from engine.amp import dtype_name, resolve_amp
from engine.checkpoint import atomic_write, link_checkpoint, load_checkpoint, save_checkpoint, write_json
from engine.cli import run_cli
from engine.distributed import barrier, cleanup, init_distributed, is_main_process
from engine.logger import RunLogger
from engine.loop import evaluate, train_one_epoch
from engine.memory import keep_freed_memory
from engine.metrics import binarize, f1_scores
from engine.optim import build_optimizer, build_scheduler
from engine.thresholds import tune_thresholds
from model import build_model, load_tokenizer, resolve_attention, tokenizer_files

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bert-multilabel")
RUN_FILES = ("config.json", "metrics.jsonl", "last.pt", "best.pt")
SELECTABLE_METRICS = ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "roc_auc_micro", "roc_auc_macro",
                      "subset_accuracy", "jaccard_samples", "lrap", "P@1", "P@3", "P@5", "nDCG@1", "nDCG@3",
                      "nDCG@5", "mRP")


class ConfigError(InputError):
    """A flag with a value that cannot work: the message is one line that names the flag."""


def get_args_parser() -> argparse.ArgumentParser:
    """The one source of truth for every default; the resolved values go to config.json and each checkpoint."""
    p = argparse.ArgumentParser(description="Fine-tune a BERT-family encoder for multi-label classification.")
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
    g.add_argument("--max-length", type=int, default=300, help="tokens per example, after truncation")
    g.add_argument("--max-train-samples", type=int, default=None)
    g.add_argument("--max-eval-samples", type=int, default=None)
    g.add_argument("--cache-dir", default=DEFAULT_CACHE, help="tokenized data cache ('' for none)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="bert-base-uncased", help="hub id, local folder, or alias: minilm")
    g.add_argument("--pooling", default="mean", choices=["mean", "cls"])
    g.add_argument("--dropout", type=float, default=0.1, help="before the linear head")
    g.add_argument("--attention", default="auto", choices=["auto", "sdpa", "eager"],
                   help="attention kernels; auto: on a CPU, plain attention with a cheap dropout mask while "
                        "training and for short texts in bf16, else SDPA; on a GPU, sdpa")
    g.add_argument("--attention-dropout", type=float, default=None,
                   help="dropout on the attention probabilities (default: the encoder's own, 0.1 for BERT)")
    g.add_argument("--freeze-embeddings", default="word", choices=["none", "word", "all"],
                   help="keep embeddings as pretrained: word (the word-embedding matrix: half of MiniLM's weights, "
                        "which a dense AdamW update would rewrite every step for the few hundred rows a batch uses) "
                        "or all (also position and token-type embeddings and their LayerNorm); README")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, default=5)
    g.add_argument("--batch-size", type=int, default=16, help="per device")
    g.add_argument("--eval-batch-size", type=int, default=64)
    g.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate (peak)")
    g.add_argument("--head-lr-mult", type=float, default=10.0, help="the new head learns this many times faster")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--warmup", type=float, default=0.1, help="fraction of all steps with a linear warm-up")
    g.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step")
    g.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (0: no clipping)")
    g.add_argument("--pos-weight", default="none", choices=["none", "auto"],
                   help="auto: weigh each label's positives by negatives/positives (capped by --pos-weight-max)")
    g.add_argument("--pos-weight-max", type=float, default=10.0)
    g.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="autocast dtype; auto: bf16 where the hardware runs it fast, fp16 on older GPUs, else off")
    g.add_argument("--seed", type=int, default=42)
    g = p.add_argument_group("evaluation")
    g.add_argument("--threshold", type=float, default=0.5)
    g.add_argument("--select-metric", default="micro_f1", help="validation metric that picks best.pt")
    g.add_argument("--tune-objective", default="micro_f1", choices=["micro_f1", "macro_f1"],
                   help="what the thresholds tuned on validation predictions maximise")
    g.add_argument("--tune-min-positives", type=int, default=5,
                   help="a label with fewer validation positives keeps the tuned global threshold")
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


def check_args(args) -> None:
    positive = ("epochs", "batch_size", "eval_batch_size", "max_length", "grad_accum", "log_every")
    for name in positive:
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    for name in ("lr", "weight_decay", "head_lr_mult", "clip_grad", "pos_weight_max", "save_every", "workers",
                 "tune_min_positives"):
        if getattr(args, name) < 0 or (name == "lr" and args.lr == 0):
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be "
                              + ("positive" if name == "lr" else "zero or more"))
    for name in ("dropout", "attention_dropout", "warmup", "threshold", "val_fraction"):
        if getattr(args, name) is not None and not 0 <= getattr(args, name) <= 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be between 0 and 1")
    for name in ("max_train_samples", "max_eval_samples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if args.select_metric not in SELECTABLE_METRICS:
        raise ConfigError(f"--select-metric {args.select_metric}: choose one of {', '.join(SELECTABLE_METRICS)}")


def default_output_dir(args) -> str:
    name = args.run_name or "-".join([os.path.basename(os.path.normpath(args.model)),
                                      os.path.basename(os.path.normpath(args.data)), time.strftime("%Y%m%d-%H%M%S")])
    return os.path.join("runs", name)


def explicit_flags(parser: argparse.ArgumentParser, argv) -> dict:
    """The flags given on the command line (not defaulted): on resume they override the checkpoint's config."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def resolve_args(argv) -> tuple[argparse.Namespace, dict | None]:
    """The run's flags and, with --resume, the checkpoint to continue, whose config the flags given now override."""
    args = get_args_parser().parse_args(argv)
    resume = None
    if args.resume:
        if args.resume == "auto" and not args.output_dir:
            raise ConfigError("--resume auto: needs --output-dir, the run folder to continue")
        path = os.path.join(args.output_dir, "last.pt") if args.resume == "auto" else args.resume
        if not os.path.isfile(path):
            raise ConfigError(f"--resume {args.resume}: no checkpoint at {path}")
        resume = load_checkpoint(path)
        given = explicit_flags(get_args_parser(), argv)
        saved = {k: v for k, v in resume["config"].items() if k in vars(args)}
        if "freeze_word_embeddings" in resume["config"] and "freeze_embeddings" not in saved:  # older runs' flag
            saved["freeze_embeddings"] = "word" if resume["config"]["freeze_word_embeddings"] else "none"
        args = argparse.Namespace(**{**vars(args), **saved, **given})
        args.output_dir = args.output_dir or os.path.dirname(os.path.abspath(path))
        args.resume = path
    args.output_dir = args.output_dir or default_output_dir(args)
    check_args(args)
    if not args.resume and int(os.environ.get("RANK", "0")) == 0:
        existing = [f for f in RUN_FILES if os.path.exists(os.path.join(args.output_dir, f))]
        if existing and not args.overwrite:
            raise ConfigError(f"--output-dir {args.output_dir}: holds a run already ({', '.join(existing)}); "
                              "pass --overwrite to replace it or --resume auto to continue it")
    return args, resume


def start_run_folder(args, config: dict, progress: dict) -> None:
    """Called once all input has been checked: an --overwrite clears the old run only now; a resumed run
    drops the epoch lines its checkpoint had not reached (TensorBoard purges those steps itself)."""
    out = args.output_dir
    os.makedirs(out, exist_ok=True)
    if args.overwrite and not args.resume:
        for name in os.listdir(out):
            if name in RUN_FILES or name.startswith("events.out.tfevents"):
                os.remove(os.path.join(out, name))
    metrics_path = os.path.join(out, "metrics.jsonl")
    if args.resume and os.path.exists(metrics_path):
        with open(metrics_path, encoding="utf-8") as f:
            kept = [line for line in f if line.strip() and json.loads(line)["epoch"] <= progress["epoch"]]
        atomic_write(metrics_path, lambda f: f.write("".join(kept).encode()))
    write_json(os.path.join(out, "config.json"), config)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def label_pos_weight(labels: list[list[int]], num_labels: int, cap: float) -> torch.Tensor:
    positives = np.bincount([i for row in labels for i in row], minlength=num_labels).astype(np.float64)
    negatives = len(labels) - positives
    return torch.tensor(np.minimum(negatives / np.maximum(positives, 1), cap), dtype=torch.float32)


def build_data(args, label_names, device, rank, world_size, log):
    splits, label_names = load_examples(
        args.data, args.data_config, args.text_column, args.label_column, args.label_separator,
        label_names=label_names, val_fraction=args.val_fraction, split_seed=args.split_seed,
        max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples, log=log)
    if "train" not in splits or "validation" not in splits:
        raise DataError(f"--data {args.data}: training needs a train split (found: {', '.join(splits)})")
    tokenizer = load_tokenizer(args.model)
    if args.max_length > tokenizer.model_max_length:
        raise ConfigError(f"--max-length {args.max_length}: beyond the model's limit of {tokenizer.model_max_length}")
    cache = args.cache_dir or None
    train_set, val_set = (tokenize(splits[s], tokenizer, args.max_length, len(label_names), cache)
                          for s in ("train", "validation"))
    train_loader = build_loader(train_set, args.batch_size, tokenizer.pad_token_id, True, args.seed, device,
                                args.workers, rank, world_size)
    val_loader = build_loader(val_set, args.eval_batch_size, tokenizer.pad_token_id, False, device=device,
                              workers=args.workers, rank=rank, world_size=world_size)
    return splits, label_names, tokenizer, train_loader, val_loader


def validate(model, loader, device, amp_dtype, loss_fn, args, label_names, examples, logger, step):
    """Validation metrics at --threshold, thresholds tuned on these predictions and the F1 they reach
    (`tuned_*`: per label, `global_*`: one for all), and the TensorBoard details."""
    result = evaluate(model, loader, device, amp_dtype, loss_fn, args.threshold, label_names)
    probs, targets, metrics = result["probs"], result["targets"], result["metrics"]
    thresholds = tune_thresholds(probs, targets, args.tune_objective, args.tune_min_positives)
    metrics.update({f"tuned_{k}": v for k, v in f1_scores(probs, targets, thresholds["per_label"]).items()})
    metrics.update({f"global_{k}": v for k, v in f1_scores(probs, targets, thresholds["global"]).items()})
    metrics["global_threshold"] = thresholds["global"]
    logger.validation_details(probs, targets, label_names, examples, binarize(probs, args.threshold), step)
    return metrics, thresholds


def run(args, resume: dict | None) -> dict:
    device, rank, world_size = init_distributed(args.device)
    keep_freed_memory(device)
    main = is_main_process()
    log = print if main else (lambda *a, **k: None)
    seed_everything(args.seed)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    splits, label_names, tokenizer, train_loader, val_loader = build_data(
        args, resume["label_names"] if resume else None, device, rank, world_size, log)

    amp_dtype = resolve_amp(args.amp, device)
    config = {**vars(args), "amp_dtype": dtype_name(amp_dtype), "world_size": world_size, "device": str(device),
              "num_labels": len(label_names),
              "attention_impl": resolve_attention(args.attention, device.type)}
    model = build_model(config, len(label_names)).to(device)
    steps_per_epoch = -(-len(train_loader) // args.grad_accum)
    optimizer = build_optimizer(model, args.lr, args.head_lr_mult, args.weight_decay)
    scheduler = build_scheduler(optimizer, steps_per_epoch * args.epochs, args.warmup)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    pos_weight = (label_pos_weight(splits["train"].labels, len(label_names), args.pos_weight_max).to(device)
                  if args.pos_weight == "auto" else None)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    progress = {"epoch": 0, "batches_done": 0, "epoch_loss_sum": 0.0, "step": 0, "best_metric": -float("inf"),
                "best_epoch": 0}
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        progress = dict(resume["progress"])
        set_rng_state(resume["rng"])
        log(f"resumed from {args.resume}: epoch {progress['epoch'] + 1}, batch {progress['batches_done']}, "
            f"step {progress['step']}")
    train_model = model if world_size == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)

    static = {"config": config, "label_names": label_names, "tokenizer_files": tokenizer_files(tokenizer),
              "encoder_config": json.loads(model.encoder.config.to_json_string()),
              "pos_weight": pos_weight.cpu() if pos_weight is not None else None}
    last_path, best_path = os.path.join(args.output_dir, "last.pt"), os.path.join(args.output_dir, "best.pt")

    def save_last(val_metrics=None, thresholds=None):
        if main:
            save_checkpoint(last_path, {**static, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                                        "progress": dict(progress), "rng": rng_state(), "metrics": val_metrics or {},
                                        "thresholds": thresholds})
        barrier()

    def on_step(step, batches_done, loss_sum):
        if args.save_every and step % args.save_every == 0:
            progress.update(step=step, batches_done=batches_done, epoch_loss_sum=loss_sum.item())
            save_last()

    if main:
        start_run_folder(args, config, progress)
    logger = RunLogger(args.output_dir, enabled=main, purge_step=progress["step"] + 1 if resume else None)
    log(f"device {device} x{world_size}, amp {dtype_name(amp_dtype)}, attention {config['attention_impl']}, "
        f"{steps_per_epoch} steps per epoch; run folder {args.output_dir}")
    record = {}
    try:
        for epoch in range(progress["epoch"], args.epochs):
            train_loader.batch_sampler.set_epoch(epoch, progress["batches_done"])
            train_stats = train_one_epoch(
                train_model, train_loader, optimizer, scheduler, scaler, loss_fn, device, amp_dtype,
                progress["step"], args.grad_accum, args.clip_grad, logger if main else None, args.log_every,
                on_step, f"{epoch + 1}/{args.epochs}", (progress["batches_done"], progress["epoch_loss_sum"]))
            val, thresholds = validate(model, val_loader, device, amp_dtype, loss_fn, args, label_names,
                                       splits["validation"], logger, train_stats["steps"])
            improved = val[args.select_metric] > progress["best_metric"]
            progress.update(epoch=epoch + 1, batches_done=0, epoch_loss_sum=0.0, step=train_stats.pop("steps"))
            if improved:
                progress.update(best_metric=val[args.select_metric], best_epoch=epoch + 1)
            record = {"epoch": epoch + 1, "step": progress["step"], **{f"train_{k}": v for k, v in train_stats.items()},
                      **{f"val_{k}": v for k, v in val.items()}}
            logger.epoch(record, progress["step"])
            save_last(val, thresholds)
            if improved and main:
                link_checkpoint(last_path, best_path)
            log(f"epoch {epoch + 1}/{args.epochs}  train_loss {train_stats['loss']:.4f}  val_loss {val['loss']:.4f}  "
                f"val_micro_f1 {val['micro_f1']:.4f} (tuned {val['tuned_micro_f1']:.4f})  "
                f"val_macro_f1 {val['macro_f1']:.4f}  "
                f"({train_stats['seconds']:.1f} s, {train_stats['examples_per_s']:.1f} ex/s)" + ("  best" if improved else ""))
        if record:
            logger.hparams(config, {k[4:]: v for k, v in record.items() if k.startswith("val_") and isinstance(v, float)})
    finally:
        logger.close()
    log(f"best {args.select_metric} {progress['best_metric']:.4f} at epoch {progress['best_epoch']}: {best_path}")
    return {"best_metric": progress["best_metric"], "best_epoch": progress["best_epoch"], "output_dir": args.output_dir}


def main(argv=None) -> dict:
    try:
        return run_cli(lambda: run(*resolve_args(argv)))
    finally:
        cleanup()


if __name__ == "__main__":
    main()
