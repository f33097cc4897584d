"""Fine-tune a BERT-family encoder for multi-label text classification.

    python train.py --epochs 50 --lr 2e-5                       # MultiEURLEX (hub), bert-base-uncased
    python train.py --model minilm --data ../shared/data/semeval2018_ec --epochs 5
    torchrun --nproc-per-node 4 train.py ...                     # data parallel, one process per GPU
"""
import argparse
import json
import os

import numpy as np
import torch

from data import DataError, build_loader, load_examples, tokenize
from engine.amp import dtype_name, resolve_amp, trained_dtype
from engine.checkpoint import link_checkpoint, save_checkpoint, write_json
from engine.cli import ShowDefaults, run_cli
from engine.config import ConfigError, check_select_metric, resolve_args
from engine.distributed import barrier, cleanup, init_distributed, is_main_process
from engine.interrupt import NAMES, Interrupted, StopSignals
from engine.logger import RunLogger
from engine.loop import NonFiniteLossError, evaluate, train_one_epoch
from engine.memory import keep_freed_memory, release_freed_memory
from engine.metrics import binarize, f1_scores
from engine.optim import build_optimizer, build_scheduler, set_learning_rates
from engine.run_folder import RunFolder
from engine.state import TrainState, seed_everything
from engine.thresholds import tune_thresholds
from model import build_model, load_tokenizer, resolve_attention, tokenizer_files

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
    g.add_argument("--max-length", type=int, default=300, help="tokens per example, after truncation")
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
    g.add_argument("--pos-weight", default="none", choices=["none", "auto"],
                   help="auto: weigh each label's positives by negatives/positives (capped by --pos-weight-max)")
    g.add_argument("--pos-weight-max", type=float, default=10.0, help="cap of --pos-weight auto")
    g.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="autocast dtype; auto: bf16 where the hardware runs it fast, fp16 on older GPUs, else off")
    g.add_argument("--seed", type=int, default=42, help="initial head weights, dropout, data order")
    g = p.add_argument_group("evaluation")
    g.add_argument("--threshold", type=float, default=0.5, help="probability at which a label is predicted")
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
    check_select_metric(args.select_metric, len(label_names))
    tokenizer = load_tokenizer(args.model)
    if args.max_length > tokenizer.model_max_length:
        raise ConfigError(f"--max-length {args.max_length}: beyond the model's limit of {tokenizer.model_max_length}")
    shortest = tokenizer.num_special_tokens_to_add() + 1
    if args.max_length < shortest:
        raise ConfigError(f"--max-length {args.max_length}: leaves no room for text (the model adds "
                          f"{shortest - 1} special tokens); use at least {shortest}")
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


def continue_with(output_dir: str) -> str:
    return f"continue with: python train.py --resume auto --output-dir {output_dir}"


def run(args, resume: dict | None) -> dict:
    """Takes the run folder (locked for this process), trains, and on any failure or signal leaves it as it
    was: an overwritten run comes back unless the new one has saved a checkpoint."""
    device, rank, world_size = init_distributed(args.device)
    folder = RunFolder(args.output_dir) if is_main_process() else None
    if folder:
        folder.lock()
        other_run = folder.holds_run() and (not args.resume or os.path.dirname(args.resume) != folder.path)
        if other_run and not (args.overwrite and not args.resume):
            folder.unlock()
            raise ConfigError(f"--output-dir {args.output_dir}: holds a run already; pass --overwrite to replace "
                              "it or --resume auto to continue it")
    try:
        with StopSignals() as signals:
            return train(args, resume, device, rank, world_size, folder, signals)
    except BaseException as e:
        if folder:
            folder.abandon()
            if isinstance(e, Interrupted) and not e.explained:
                saved = os.path.exists(folder.file("last.pt"))
                e.args = (f"{e}: " + (continue_with(args.output_dir) if saved else "before the first checkpoint; "
                                      "nothing was saved and the run folder is as it was"),)
        raise
    finally:
        if folder:
            folder.unlock(remove_if_empty=True)


def train(args, resume, device, rank, world_size, folder, signals) -> dict:
    keep_freed_memory(device)
    main = folder is not None
    log = print if main else (lambda *a, **k: None)
    seed_everything(args.seed, rank)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode, read at first use
        torch.use_deterministic_algorithms(True)
    splits, label_names, tokenizer, train_loader, val_loader = build_data(
        args, resume["label_names"] if resume else None, device, rank, world_size, log)
    changes = args.resume_changes

    if resume and "amp" not in changes:
        amp_dtype = trained_dtype(resume["config"].get("amp_dtype", "off"), device)
    else:
        amp_dtype = resolve_amp(args.amp, device)
    config = {**{k: v for k, v in vars(args).items() if k != "resume_changes"}, "amp_dtype": dtype_name(amp_dtype),
              "world_size": world_size, "device": str(device), "num_labels": len(label_names),
              "attention_impl": resolve_attention(args.attention, device.type)}
    if resume:
        config["resumes"] = [*resume["config"].get("resumes", []), {"step": resume["progress"]["step"], "changed": {
            name: {"from": old, "to": new} for name, (old, new) in changes.items()}}]
    model = build_model(config, len(label_names)).to(device)
    steps_per_epoch = -(-len(train_loader) // args.grad_accum)
    optimizer = build_optimizer(model, args.lr, args.head_lr_mult, args.weight_decay)
    scheduler = build_scheduler(optimizer, steps_per_epoch * args.epochs, args.warmup)
    state = TrainState(model, optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16))
    pos_weight = (label_pos_weight(splits["train"].labels, len(label_names), args.pos_weight_max).to(device)
                  if args.pos_weight == "auto" else None)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    progress = state.progress
    if resume:
        state.load_state_dict(resume)
        set_learning_rates(optimizer, scheduler, args.lr, args.head_lr_mult, args.weight_decay)
        log(f"resumed from {args.resume}: epoch {progress['epoch'] + 1}, batch {progress['batches_done']}, "
            f"step {progress['step']}")
        for name, (old, new) in changes.items():
            log(f"resume: --{name.replace('_', '-')} {old} -> {new}, in effect from step {progress['step']} on")
    if world_size > 1:
        state.wrap_distributed(device)

    static = {"config": config, "label_names": label_names, "tokenizer_files": tokenizer_files(tokenizer),
              "encoder_config": json.loads(model.encoder.config.to_json_string()),
              "pos_weight": pos_weight.cpu() if pos_weight is not None else None}
    last_path, best_path = os.path.join(args.output_dir, "last.pt"), os.path.join(args.output_dir, "best.pt")

    def save_last(val_metrics=None, thresholds=None):
        if not state.is_finite():
            raise NonFiniteLossError(f"the weights or the training loss became non-finite by step "
                                     f"{progress['step']}; not saved (try a lower --lr or --amp off)")
        snapshot = state.state_dict()  # on every rank: it gathers their RNG states
        if main:
            save_checkpoint(last_path, {**static, **snapshot, "metrics": val_metrics or {}, "thresholds": thresholds})
            folder.commit()
        barrier()

    def stop(signum):
        """Save where the run stands (after a whole optimizer step) and end with the line that continues it."""
        save_last()
        raise Interrupted(signum, f"interrupted by {NAMES[signum]}: last.pt saved at epoch {progress['epoch'] + 1}, "
                                  f"batch {progress['batches_done']} (step {progress['step']}); "
                                  + continue_with(args.output_dir))

    def on_step(state):
        step = progress["step"]
        if args.save_every and step % args.save_every == 0:
            save_last()
        if world_size == 1 or step % args.log_every == 0:  # under DDP, all ranks ask together
            signum = signals.requested(collective=world_size > 1)
            if signum:
                stop(signum)

    if main:
        if not resume:
            folder.replace_run()
        write_json(folder.file("config.json"), config)
    logger = RunLogger(args.output_dir, enabled=main, purge_step=progress["step"] + 1 if resume else None,
                       records=RunFolder(os.path.dirname(args.resume)).read_metrics(progress["epoch"])
                       if main and resume else None)
    log(f"device {device} x{world_size}, amp {dtype_name(amp_dtype)}, attention {config['attention_impl']}, "
        f"{steps_per_epoch} steps per epoch; run folder {args.output_dir}")
    record = {}
    try:
        for epoch in range(progress["epoch"], args.epochs):
            train_loader.batch_sampler.set_epoch(epoch, progress["batches_done"])
            signals.deferring = True
            train_stats = train_one_epoch(state, train_loader, loss_fn, device, amp_dtype, args.grad_accum,
                                          args.clip_grad, args.log_every, logger if main else None, on_step,
                                          f"{epoch + 1}/{args.epochs}")
            signals.deferring = False
            release_freed_memory(device)
            val, thresholds = validate(model, val_loader, device, amp_dtype, loss_fn, args, label_names,
                                       splits["validation"], logger, progress["step"])
            release_freed_memory(device)
            improved = val[args.select_metric] > progress["best_metric"]
            progress["epoch"] = epoch + 1
            state.start_epoch()
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
    except Interrupted as e:
        # Stopped outside a training step (in validation, say): the state is whole, so save it; a resumed run
        # then repeats only what had not finished. (Under DDP the ranks may stand at different points: no save.)
        if e.explained or e.forced or world_size > 1 or progress["step"] == 0:
            raise
        stop(e.signum)
    finally:
        signals.deferring = False
        logger.close()
    log(f"best {args.select_metric} {progress['best_metric']:.4f} at epoch {progress['best_epoch']}: {best_path}")
    return {"best_metric": progress["best_metric"], "best_epoch": progress["best_epoch"], "output_dir": args.output_dir}


def main(argv=None) -> dict:
    try:
        return run_cli(lambda: run(*resolve_args(get_args_parser, argv)))
    finally:
        cleanup()


if __name__ == "__main__":
    main()
