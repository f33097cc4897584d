"""A training run from its config (engine/settings.py): the data, the config resolved for the machine, the state,
then the epoch loop of train, validate, save, in a run folder it owns. train.py parses the flags before this module
and its imports load, so `--help` and a misspelt flag answer at once."""
import os
from typing import NamedTuple

import torch

from data.label_stats import label_table, table_text
from engine.cli import run_cli
from engine.config import ConfigError, quiet
from engine.distributed import cleanup, init_distributed, is_main_process
from engine.errors import NAMES, Interrupted
from engine.files import atomic_write, write_json
from engine.interrupt import StopSignals
from engine.losses import log_odds, training_loss
from engine.training.checkpoints import Checkpoints, continue_with
from engine.training.head_fit import fit_fused_head
from engine.training.logger import RunLogger
from engine.training.loop import train_one_epoch
from engine.training.optim import set_learning_rates
from engine.training.run_config import resolve_run, resolved_for_machine
from engine.training.run_data import RunData, build_data, read_run_examples, refuse_changed_data
from engine.training.run_folder import LABEL_TABLE, RunFolder, read_metrics
from engine.training.state import TrainState, build_train_state, seed_everything
from engine.training.validation import validate
from model import cpu_fast
from model.encoders import load_encoder_config, load_tokenizer


def train_from_flags(given: dict, after_epoch=None) -> dict:
    """train.py's work: resolve the flags given (a resume included), run, and end any failure with one line.
    `after_epoch(record)`, if given, sees each epoch's metrics.jsonl record once it is saved, and may end the run
    there as finished by returning the reason (search.py's pruner: engine/search/trial.py)."""
    try:
        return run_cli(lambda: run(*resolve_run(given), after_epoch=after_epoch))
    finally:
        cleanup()


def run(cfg: dict, resume: dict | None, changes: dict, after_epoch=None) -> dict:
    """Takes the run folder (locked for this process), trains, and on any failure or signal leaves it as it
    was: an overwritten run comes back unless the new one has saved a checkpoint."""
    device, rank, world_size = init_distributed(cfg["device"])
    folder = RunFolder(cfg["output_dir"]) if is_main_process() else None
    if folder:
        folder.lock()
        other_run = folder.holds_run() and (not resume or os.path.dirname(cfg["resume"]) != folder.path)
        if other_run and not (cfg["overwrite"] and not resume):
            folder.unlock()
            raise ConfigError(f"--output-dir {cfg['output_dir']}: holds a run already; pass --overwrite to replace "
                              "it or --resume auto to continue it")
    try:
        with StopSignals() as signals:
            return train(cfg, resume, changes, device, rank, world_size, folder, signals, after_epoch)
    except BaseException as e:
        if folder:
            folder.abandon()
            if isinstance(e, Interrupted) and not e.explained:
                saved = os.path.exists(folder.file("last.pt"))
                e.args = (f"{e}: " + (continue_with(cfg["output_dir"]) if saved else "before the first checkpoint; "
                                      "nothing was saved and the run folder is as it was"),)
        raise
    finally:
        if folder:
            folder.unlock(remove_if_empty=True)


class Run(NamedTuple):
    """What every epoch of a run works with."""
    cfg: dict
    data: RunData
    state: TrainState
    loss_fn: torch.nn.Module
    prior: torch.Tensor
    logger: RunLogger
    checkpoints: Checkpoints
    signals: StopSignals
    log: object


def train(cfg, resume, changes, device, rank, world_size, folder, signals, after_epoch=None) -> dict:
    """The run, top to bottom: its examples, its config resolved for this machine (then never written to), its
    data and state, its folder, then the epochs. `after_epoch(record)` may end the run after an epoch."""
    log = print if folder else quiet
    seed_everything(cfg["seed"], rank)
    if cfg["deterministic"]:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode, read at first use
        torch.use_deterministic_algorithms(True)
    examples = read_run_examples(cfg, resume, log)
    tokenizer = load_tokenizer(cfg["model"])
    cfg = resolved_for_machine(cfg, device, world_size, tokenizer, load_encoder_config(cfg["model"]),
                               len(examples.label_names), resume, changes)
    cpu_fast.prepare(cfg, device)
    data = build_data(cfg, examples, tokenizer, device, rank, world_size, log, resume["tfidf"] if resume else None)
    if resume:
        refuse_changed_data(resume.get("data_fingerprints"), data, cfg["resume"])
    steps_per_epoch = -(-len(data.train_loader) // cfg["grad_accum"])
    state, loss_fn, pos_weight, prior = start_state(cfg, data, steps_per_epoch, resume, changes, device, log)
    state.wrap(world_size > 1, cfg["compiled"])
    checkpoints = Checkpoints(cfg, data, state, pos_weight, prior, folder, signals, world_size)
    logger = open_run_folder(cfg, data, folder, resume, state.progress)
    log(f"device {device} x{world_size}, amp {cfg['amp_dtype']}, attention {cfg['attention_impl']}, compile "
        f"{cfg['compiled']}, {steps_per_epoch} steps per epoch; run folder {cfg['output_dir']}")
    run = Run(cfg, data, state, loss_fn, prior, logger, checkpoints, signals, log)
    progress, first_epoch, record = state.progress, state.progress["epoch"], {}
    try:
        # --epochs 0 (with the fused head): one pass of no training, in which the fused head is fitted and validated
        for epoch in range(progress["epoch"], max(1, cfg["epochs"])):
            if state.patience_spent(cfg["patience"]):
                log(f"early stop: no better {cfg['select_metric']} in the {cfg['patience']} epochs since epoch "
                    f"{progress['best_epoch']} (--patience {cfg['patience']})")
                break
            record = run_epoch(run, epoch, epoch == first_epoch)
            stop = after_epoch(record) if after_epoch else None
            if stop:
                log(f"stopped after epoch {epoch + 1}: {stop}")
                break
        if record:
            logger.hparams(cfg, {k[4:]: v for k, v in record.items() if k.startswith("val_") and isinstance(v, float)})
    except Interrupted as e:
        # Stopped outside a training step (in validation, say): the state is whole, so save it; a resumed run
        # then repeats only what had not finished. (Under DDP the ranks may stand at different points: no save.)
        if e.explained or e.forced or world_size > 1 or progress["step"] == 0:
            raise
        checkpoints.stop(e.signum)
    finally:
        logger.close()
    log(f"best {cfg['select_metric']} {progress['best_metric']:.4f} at epoch {progress['best_epoch']}: "
        f"{checkpoints.best}")
    return {"best_metric": progress["best_metric"], "best_epoch": progress["best_epoch"],
            "output_dir": cfg["output_dir"]}


def start_state(cfg: dict, data: RunData, steps_per_epoch: int, resume: dict | None, changes: dict, device,
                log) -> tuple:
    """(the training state, the loss, its pos_weight and label prior): a fresh run's, or the checkpoint's restored
    with the settings a resume changes applied from its step on."""
    state = build_train_state(cfg, len(data.label_names), steps_per_epoch * cfg["epochs"], device,
                              len(data.tfidf) if data.tfidf is not None else 0)
    loss_fn, pos_weight, prior = training_loss(cfg, data.splits["train"].labels, len(data.label_names), device)
    if resume:
        state.load_state_dict(resume)
        resume.update(model=None, optimizer=None)  # copied into the state: not held twice (a GiB at many labels)
        set_learning_rates(state.optimizer, state.scheduler, cfg["lr"], cfg["head_lr_mult"], cfg["weight_decay"])
        progress = state.progress
        log(f"resumed from {cfg['resume']}: epoch {progress['epoch'] + 1}, batch {progress['batches_done']}, "
            f"step {progress['step']}")
        for name, (old, new) in changes.items():
            log(f"resume: --{name.replace('_', '-')} {old} -> {new}, in effect from step {progress['step']} on")
    elif cfg["head_bias"] == "prior":
        with torch.no_grad():
            state.model.head.bias.copy_(log_odds(prior))
    return state, loss_fn, pos_weight, prior


def open_run_folder(cfg: dict, data: RunData, folder: RunFolder | None, resume: dict | None,
                    progress: dict) -> RunLogger:
    """The run folder made this run's (an --overwrite moves the old run aside), its config.json and label table
    written, and the TensorBoard / metrics.jsonl logger (a resumed run's records up to its epoch kept)."""
    if folder:
        if not resume:
            folder.replace_run()
        write_json(folder.file("config.json"), cfg)
        table = label_table(data.splits, data.label_names, data.hierarchy.levels if data.hierarchy else None)
        atomic_write(folder.file(LABEL_TABLE), lambda f: f.write(table_text(table).encode("utf-8")))
    return RunLogger(cfg["output_dir"], enabled=folder is not None,
                     purge_step=progress["step"] + 1 if resume else None,
                     records=read_metrics(os.path.dirname(cfg["resume"]), progress["epoch"])
                     if folder and resume else None)


def run_epoch(run: Run, epoch: int, first: bool) -> dict:
    """One epoch: train (none with --epochs 0), fit the fused head, validate, save, and its line; returns its
    metrics.jsonl record. A signal while training or saving waits for the step or the save to finish."""
    cfg, state, data, log, device = run.cfg, run.state, run.data, run.log, run.state.device
    train_stats = {}
    if cfg["epochs"]:
        data.train_loader.batch_sampler.set_epoch(epoch, state.progress["batches_done"])
        with run.signals.deferred():
            train_stats = train_one_epoch(state, data.train_loader, run.loss_fn, cfg["grad_accum"], cfg["clip_grad"],
                                          cfg["log_every"], run.logger if run.logger.enabled else None,
                                          run.checkpoints.after_step, f"{epoch + 1}/{cfg['epochs']}")
        if cfg["compiled"] != "off" and first:
            log(f"torch.compile ({cfg['compiled']}): the first training step took "
                f"{train_stats['first_step_seconds']:.1f} s, compiling included")
    if cpu_fast.enabled(cfg):
        cpu_fast.release_freed_memory(device)
    if state.model.fused is not None:
        train_stats.update(fit_fused_head(state.model, data.fit_loader, data.train_tfidf, data.splits["train"].labels,
                                          cfg, run.prior, device, state.amp_dtype, log,
                                          data.fit_loader.dataset.cache_key))
    val, thresholds = validate(state, data, run.loss_fn, cfg, run.logger)
    if cpu_fast.enabled(cfg):
        cpu_fast.release_freed_memory(device)
    improved = state.end_epoch(val[cfg["select_metric"]], latest=cfg["train_on_validation"])
    record = {"epoch": epoch + 1, "step": state.progress["step"], **{f"train_{k}": v for k, v in train_stats.items()},
              **{f"val_{k}": v for k, v in val.items()}}
    run.logger.epoch(record, state.progress["step"])
    with run.signals.deferred():  # a signal while the epoch is saved waits for the save (a second one does not)
        run.checkpoints.save_last(val, thresholds, best=improved)
    log(epoch_line(cfg, epoch, train_stats, val, data.hierarchy, improved))
    signum = run.signals.requested(collective=run.checkpoints.world_size > 1)
    if signum:
        raise Interrupted(signum, f"interrupted by {NAMES[signum]}: epoch {epoch + 1} saved whole (last.pt"
                                  f"{', best.pt' if improved else ''}); " + continue_with(cfg["output_dir"]))
    return record


def epoch_line(cfg: dict, epoch: int, train_stats: dict, val: dict, hierarchy, improved: bool) -> str:
    trained = f"train_loss {train_stats['loss']:.4f}  " if cfg["epochs"] else ""
    speed = (f"  ({train_stats['seconds']:.1f} s, {train_stats['examples_per_s']:.1f} ex/s)" if cfg["epochs"]
             else "  (the pretrained encoder)")
    head = "" if "fused_head" not in val else "  fused head" if val["fused_head"] else "  encoder's own head"
    if hierarchy is not None:
        head += "  per level micro_f1 " + " / ".join(f"{val[f'{level}_micro_f1']:.4f}" for level in hierarchy.levels)
    return (f"epoch {epoch + 1}/{max(1, cfg['epochs'])}  {trained}val_loss {val['loss']:.4f}  "
            f"val_micro_f1 {val['micro_f1']:.4f} (tuned {val['tuned_micro_f1']:.4f})  "
            f"val_macro_f1 {val['macro_f1']:.4f}{speed}{head}" + ("  best" if improved else ""))
