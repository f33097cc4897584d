"""A training run from train.py's flags: the data, the state, the epoch loop with validation and checkpoints,
and the run folder it owns. (train.py parses the flags before this module and its imports load: `--help` and a
misspelt flag answer at once.)"""
import json
import os
import time

import torch

from data import DataError, LongDoc, build_loader, load_examples, tokenize
from data.batching import default_stride
from engine.amp import dtype_name, resolve_amp, trained_dtype
from engine.checkpoint import link_checkpoint, save_checkpoint, write_json
from engine.cli import run_cli
from engine.config import ConfigError, check_select_metric, resolve_args
from engine.distributed import barrier, cleanup, init_distributed, is_main_process
from engine.errors import NAMES, Interrupted, NonFiniteLossError
from engine.interrupt import StopSignals
from engine.logger import RunLogger
from engine.loop import evaluate, train_one_epoch
from engine.losses import build_loss, label_pos_weight, label_prior, log_odds
from engine.metrics import binarize, f1_scores
from engine.optim import set_learning_rates
from engine.run_folder import RunFolder
from engine.state import build_train_state, seed_everything
from engine.thresholds import tune_thresholds
from model import attention_impl, cpu_fast, load_tokenizer, resolve_attention, tokenizer_files


def train_from_flags(get_args_parser, argv=None) -> dict:
    """train.py's work: resolve the flags (a resume included), run, and end any failure with one line."""
    try:
        return run_cli(lambda: run(*resolve_args(get_args_parser, argv)))
    finally:
        cleanup()


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
    window = args.max_length - shortest + 1
    if args.stride is None:
        args.stride = default_stride(window)  # resolved here, so config.json and the checkpoint hold the number
    if args.long_doc == "chunk" and args.stride >= window:
        raise ConfigError(f"--stride {args.stride}: windows of --max-length {args.max_length} hold {window} tokens of "
                          f"text; the stride must be smaller")
    cache, long_doc = args.cache_dir or None, LongDoc.from_config(vars(args))
    train_set, val_set = (tokenize(splits[s], tokenizer, args.max_length, len(label_names), cache, long_doc)
                          for s in ("train", "validation"))
    if long_doc.mode == "chunk":
        log("windows per document: " + ", ".join(
            f"{name} {len(ex.window_lengths) / max(1, len(ex)):.2f} on average, at most {ex.max_windows()}"
            for name, ex in (("train", train_set), ("validation", val_set))))
    train_loader = build_loader(train_set, args.batch_size, tokenizer.pad_token_id, True, args.seed, device,
                                args.workers, rank, world_size)
    val_loader = build_loader(val_set, args.eval_batch_size, tokenizer.pad_token_id, False, device=device,
                              workers=args.workers, rank=rank, world_size=world_size)
    return splits, label_names, tokenizer, train_loader, val_loader


def validate(model, loader, device, amp_dtype, loss_fn, args, label_names, examples, logger, step):
    """Validation metrics at --threshold, thresholds tuned on these predictions and the F1 they reach
    (`tuned_*`: per label, `global_*`: one for all), the seconds it took, and the TensorBoard details."""
    start = time.perf_counter()
    result = evaluate(model, loader, device, amp_dtype, loss_fn, args.threshold, label_names)
    probs, targets, metrics = result["probs"], result["targets"], result["metrics"]
    thresholds = tune_thresholds(probs, targets, args.tune_objective, args.tune_min_positives,
                                 fallback=args.tune_fallback)
    metrics.update({f"tuned_{k}": v for k, v in f1_scores(probs, targets, thresholds["per_label"]).items()})
    metrics.update({f"global_{k}": v for k, v in f1_scores(probs, targets, thresholds["global"]).items()})
    metrics["global_threshold"] = thresholds["global"]
    metrics.update(examples=len(probs), seconds=time.perf_counter() - start)
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
    fast = cpu_fast.enabled(vars(args))
    if fast:
        cpu_fast.keep_freed_memory(device)
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
        amp_dtype = resolve_amp(args.amp, device, fast)
    config = {**{k: v for k, v in vars(args).items() if k != "resume_changes"}, "amp_dtype": dtype_name(amp_dtype),
              "world_size": world_size, "device": str(device), "num_labels": len(label_names),
              "attention_impl": resolve_attention(args.attention, device.type, fast)}
    if resume:
        config["resumes"] = [*resume["config"].get("resumes", []), {"step": resume["progress"]["step"], "changed": {
            name: {"from": old, "to": new} for name, (old, new) in changes.items()}}]
    steps_per_epoch = -(-len(train_loader) // args.grad_accum)
    state = build_train_state(config, len(label_names), steps_per_epoch * args.epochs, device, amp_dtype)
    model, progress = state.model, state.progress
    config["attention_impl"] = attention_impl(model)  # what the architecture runs (DeBERTa-v2: eager)
    pos_weight = label_pos_weight(splits["train"].labels, len(label_names), args.pos_weight, args.pos_weight_max)
    prior = label_prior(splits["train"].labels, len(label_names))
    loss_fn = build_loss(config, pos_weight.to(device) if pos_weight is not None else None, prior.to(device))
    if args.head_bias == "prior" and not resume:
        with torch.no_grad():
            model.head.bias.copy_(log_odds(prior))
    if resume:
        state.load_state_dict(resume)
        set_learning_rates(state.optimizer, state.scheduler, args.lr, args.head_lr_mult, args.weight_decay)
        log(f"resumed from {args.resume}: epoch {progress['epoch'] + 1}, batch {progress['batches_done']}, "
            f"step {progress['step']}")
        for name, (old, new) in changes.items():
            log(f"resume: --{name.replace('_', '-')} {old} -> {new}, in effect from step {progress['step']} on")
    if world_size > 1:
        state.wrap_distributed()
    if args.compile:
        state.compile(args.compile_mode)

    static = {"config": config, "label_names": label_names, "tokenizer_files": tokenizer_files(tokenizer),
              "encoder_config": json.loads(model.encoder.config.to_json_string()),
              "pos_weight": pos_weight, "label_prior": prior}
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
            if args.patience and progress["epoch"] - progress["best_epoch"] >= args.patience:
                log(f"early stop: no better {args.select_metric} in the {args.patience} epochs since epoch "
                    f"{progress['best_epoch']} (--patience {args.patience})")
                break
            train_loader.batch_sampler.set_epoch(epoch, progress["batches_done"])
            signals.deferring = True
            train_stats = train_one_epoch(state, train_loader, loss_fn, args.grad_accum, args.clip_grad,
                                          args.log_every, logger if main else None, on_step, f"{epoch + 1}/{args.epochs}")
            signals.deferring = False
            if fast:
                cpu_fast.release_freed_memory(device)
            val, thresholds = validate(state.eval_model, val_loader, device, amp_dtype, loss_fn, args, label_names,
                                       splits["validation"], logger, progress["step"])
            if fast:
                cpu_fast.release_freed_memory(device)
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
