"""A training run from its config (engine/config.py): the data, the state, then the epoch loop of train, validate,
save, in a run folder it owns. train.py parses the flags before this module and its imports load, so `--help`
and a misspelt flag answer at once."""
import json
import os
import time
from typing import NamedTuple

import torch

from data import DataError, LongDoc, build_loader, load_examples, tokenize
from data.hierarchy import Hierarchy, read_hierarchy
from data.label_stats import label_table, table_text
from data.tfidf import TfidfVocabulary
from engine.checkpoint import atomic_write, link_checkpoint, save_checkpoint, write_json
from engine.cli import run_cli
from engine.config import ConfigError, check_against_labels, quiet, resolve_window
from engine.distributed import barrier, cleanup, init_distributed, is_main_process
from engine.errors import NAMES, Interrupted, NonFiniteLossError
from engine.head_fit import fit_fused_head, fit_vocabulary, score_heads
from engine.interrupt import StopSignals
from engine.logger import RunLogger
from engine.loop import collect_probabilities, train_one_epoch
from engine.losses import log_odds, training_loss
from engine.metrics import binarize, f1_scores, multilabel_metrics
from engine.optim import set_learning_rates
from engine.run_config import resolve_run
from engine.run_folder import LABEL_TABLE, RunFolder
from engine.state import build_train_state, resolve_kernels, seed_everything
from engine.thresholds import tune_thresholds_by_level
from model import cpu_fast, load_encoder_config, load_tokenizer, position_limit, tokenizer_files


def train_from_flags(given: dict, after_epoch=None) -> dict:
    """train.py's work: resolve the flags given (a resume included), run, and end any failure with one line.
    `after_epoch(record)`, if given, sees each epoch's metrics.jsonl record once it is saved, and may end the run
    there as finished by returning the reason (search.py's pruner: engine/search_trial.py)."""
    try:
        return run_cli(lambda: run(*resolve_run(given), after_epoch=after_epoch))
    finally:
        cleanup()


class RunData(NamedTuple):
    splits: dict
    label_names: list
    tokenizer: object
    train_loader: object
    val_loader: object
    fingerprints: dict  # of the train and validation examples (Examples.fingerprint), computed once
    tfidf: TfidfVocabulary | None = None  # --features both: the training texts' vocabulary
    fit_loader: object = None  # with the fused head: the training documents in order, for its fit
    train_tfidf: tuple | None = None  # with the fused head: the training documents' TF-IDF vectors (CSR arrays)
    hierarchy: Hierarchy | None = None  # --label-hierarchy: every level's labels in one set (data/hierarchy.py)


def build_data(cfg: dict, label_names, device, rank: int = 0, world_size: int = 1, log=print,
               tfidf_state: dict | None = None, hierarchy_state: dict | None = None) -> RunData:
    """The run's splits, labels (a resumed run's own), tokenizer and the train and validation loaders (padded for
    the compile mode `resolve_kernels` recorded); with --features both, the TF-IDF vocabulary (a resumed run's
    own, `tfidf_state`, else fitted on the training texts), every document's vector, and a loader of the training
    documents in order for the fused head's fit; with --label-hierarchy, the hierarchy (a resumed run's own,
    `hierarchy_state`)."""
    hierarchy = Hierarchy.from_state(hierarchy_state) or (
        read_hierarchy(cfg["label_hierarchy"]) if cfg["label_hierarchy"] else None)
    splits, label_names = load_examples(
        cfg["data"], cfg["data_config"], cfg["text_column"], cfg["label_column"], cfg["label_separator"],
        label_names=label_names, val_fraction=cfg["val_fraction"], split_seed=cfg["split_seed"],
        max_train_samples=cfg["max_train_samples"], max_eval_samples=cfg["max_eval_samples"], log=log,
        hierarchy=hierarchy)
    missing = [split for split in ("train", "validation") if split not in splits]
    if missing:
        carve = (f"; --val-fraction {cfg['val_fraction']} carves none from train"
                 if missing == ["validation"] and not cfg["val_fraction"] else "")
        raise DataError(f"--data {cfg['data']}: training needs a {' and a '.join(missing)} split (found: "
                        f"{', '.join(splits) or 'none'}){carve}")
    check_against_labels(cfg, len(label_names), splits["validation"].labels, hierarchy.levels if hierarchy else None)
    if cfg["train_on_validation"]:
        splits["train"] = splits["train"].joined(splits["validation"])
        log(f"--train-on-validation: training on {len(splits['train'])} examples, the validation split's included")
    tokenizer = load_tokenizer(cfg["model"])
    resolve_window(cfg, tokenizer, position_limit(load_encoder_config(cfg["model"]).to_dict()))
    cache, long_doc = cfg["cache_dir"] or None, LongDoc.from_config(cfg)
    tfidf = None
    if cfg["features"] != "encoder":
        tfidf = TfidfVocabulary.from_state(tfidf_state) if tfidf_state else fit_vocabulary(
            splits["train"].texts, cfg["tfidf_terms"], len(label_names), log)
    train_set, val_set = (tokenize(splits[s], tokenizer, cfg["max_length"], len(label_names), cache, long_doc, tfidf)
                          for s in ("train", "validation"))
    if long_doc.mode == "chunk":
        log("windows per document: " + ", ".join(
            f"{name} {len(ex.window_lengths) / max(1, len(ex)):.2f} on average, at most {ex.max_windows()}"
            for name, ex in (("train", train_set), ("validation", val_set))))
    compiled = cfg["compiled"] not in ("off", None)
    train_loader = build_loader(train_set.without_tfidf(), cfg["batch_size"], tokenizer.pad_token_id, True,
                                cfg["seed"], device, cfg["workers"], rank, world_size, compiled, cfg["max_length"])
    val_loader = build_loader(val_set, cfg["eval_batch_size"], tokenizer.pad_token_id, False, device=device,
                              workers=cfg["workers"], rank=rank, world_size=world_size, compiled=compiled,
                              max_length=cfg["max_length"])
    fit_loader = None if tfidf is None else build_loader(
        train_set.without_tfidf(), cfg["eval_batch_size"], tokenizer.pad_token_id, False, device=device, workers=cfg["workers"],
        rank=rank, world_size=world_size, compiled=compiled, max_length=cfg["max_length"])
    fingerprints = {split: splits[split].fingerprint() for split in ("train", "validation")}
    return RunData(splits, label_names, tokenizer, train_loader, val_loader, fingerprints, tfidf, fit_loader,
                   train_set.tfidf, hierarchy)


def validate(state, data: RunData, loss_fn, cfg: dict, logger) -> tuple[dict, dict]:
    """Validation metrics at --threshold, thresholds tuned on these predictions and the F1 they reach
    (`tuned_*`: per label, `global_*`: one for all), the seconds it took, and the TensorBoard details. With a fitted
    fused head both heads are scored (engine/head_fit.py, `score_heads`): the one that predicts gets these metrics,
    the other its headline ones under its name (`encoder_micro_f1`, or `fused_micro_f1`). With a hierarchy the
    probabilities are rolled up (data/hierarchy.py) and each level is scored too."""
    start = time.perf_counter()
    hierarchy = data.hierarchy
    probs, targets, loss = collect_probabilities(state.eval_model, data.val_loader, state.device, state.amp_dtype,
                                                 loss_fn, hierarchy)
    metrics = {"loss": loss, **multilabel_metrics(probs, targets, cfg["threshold"], hierarchy)}
    if state.model.fused is not None and state.model.fused.ready:
        probs, metrics = score_heads(state, data.val_loader, loss_fn, cfg, probs, metrics, hierarchy)
    thresholds = tune_thresholds_by_level(probs, targets, hierarchy.levels if hierarchy else None,
                                          cfg["tune_objective"], cfg["tune_min_positives"], fallback=cfg["tune_fallback"])
    metrics.update({f"tuned_{k}": v for k, v in f1_scores(probs, targets, thresholds["per_label"], hierarchy).items()})
    metrics.update({f"global_{k}": v for k, v in f1_scores(probs, targets, thresholds["global"], hierarchy).items()})
    metrics["global_threshold"] = thresholds["global"]
    metrics.update(examples=len(probs), seconds=time.perf_counter() - start)
    logger.validation_details(probs, targets, data.label_names, data.splits["validation"],
                              binarize(probs, cfg["threshold"], hierarchy), state.progress["step"])
    return metrics, thresholds


def refuse_changed_data(saved: dict | None, data: RunData, checkpoint: str) -> None:
    """A resumed run must read the examples the run began with (checkpoints from before fingerprints: not checked)."""
    for split, expected in (saved or {}).items():
        if split in data.fingerprints and data.fingerprints[split] != expected:
            raise DataError(f"--resume {checkpoint}: the {split} split read now ({len(data.splits[split])} examples) "
                            "is not the one the run was trained on (the data changed); start a new run on the new data")


def continue_with(output_dir: str) -> str:
    return f"continue with: python train.py --resume auto --output-dir {output_dir}"


class Checkpoints:
    """The run's last.pt and best.pt. `contents` is everything a checkpoint holds; the main process writes it
    after every rank has given its part (its RNG state). `after_step` runs after each optimizer step: it saves
    every --save-every steps, and on SIGINT or SIGTERM saves and stops."""

    def __init__(self, cfg: dict, data: RunData, state, pos_weight, prior, folder, signals, world_size: int):
        self.cfg, self.state, self.folder, self.signals, self.world_size = cfg, state, folder, signals, world_size
        self.static = {"config": cfg, "label_names": data.label_names,
                       "tokenizer_files": tokenizer_files(data.tokenizer),
                       "encoder_config": json.loads(state.model.encoder.config.to_json_string()),
                       "pos_weight": pos_weight, "label_prior": prior,
                       "data_fingerprints": data.fingerprints}
        if data.hierarchy is not None:
            self.static["hierarchy"] = data.hierarchy.state()
        if data.tfidf is not None:
            self.static["tfidf"] = {**data.tfidf.state(), "idf": torch.from_numpy(data.tfidf.idf)}
        self.last, self.best = (os.path.join(cfg["output_dir"], name) for name in ("last.pt", "best.pt"))
        # A --save-every save at an epoch's last batch would be resumed by validating again at its step, logging
        # that step's validation to TensorBoard twice: there the epoch-end save, after validation, is the save.
        self.batches_per_epoch = len(data.train_loader)

    def contents(self, metrics: dict | None, thresholds: dict | None) -> dict:
        """On every rank (the ranks' RNG states are gathered)."""
        return {**self.static, **self.state.state_dict(), "metrics": metrics or {}, "thresholds": thresholds}

    def save_last(self, metrics: dict | None = None, thresholds: dict | None = None, best: bool = False) -> None:
        if not self.state.is_finite():
            raise NonFiniteLossError(f"the weights or the training loss became non-finite by step "
                                     f"{self.state.progress['step']}; not saved (try a lower --lr or --amp off)")
        contents = self.contents(metrics, thresholds)
        if self.folder:
            save_checkpoint(self.last, contents)
            self.folder.commit()
            if best:
                link_checkpoint(self.last, self.best)
        barrier()

    def stop(self, signum: int):
        """Save where the run stands (after a whole optimizer step) and end with the line that continues it."""
        self.save_last()
        progress = self.state.progress
        raise Interrupted(signum, f"interrupted by {NAMES[signum]}: last.pt saved at epoch {progress['epoch'] + 1}, "
                                  f"batch {progress['batches_done']} (step {progress['step']}); "
                                  + continue_with(self.cfg["output_dir"]))

    def after_step(self, state) -> None:
        step = state.progress["step"]
        epoch_trained = state.progress["batches_done"] == self.batches_per_epoch  # its save follows validation
        if self.cfg["save_every"] and step % self.cfg["save_every"] == 0 and not epoch_trained:
            self.save_last()
        if self.world_size == 1 or step % self.cfg["log_every"] == 0:  # under DDP, all ranks ask together
            signum = self.signals.requested(collective=self.world_size > 1)
            if signum:
                self.stop(signum)


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


def record_facts(cfg: dict, resume: dict | None, changes: dict, device, world_size: int, num_labels: int) -> None:
    """What the config records beside the flags: the device, the processes, the labels, and each resume with
    the settings it changed."""
    cfg.update(device=str(device), world_size=world_size, num_labels=num_labels, resumes=[])
    if resume:
        cfg["resumes"] = [*resume["config"]["resumes"], {"step": resume["progress"]["step"], "changed": {
            name: {"from": old, "to": new} for name, (old, new) in changes.items()}}]


def train(cfg, resume, changes, device, rank, world_size, folder, signals, after_epoch=None) -> dict:
    log = print if folder else quiet
    seed_everything(cfg["seed"], rank)
    if cfg["deterministic"]:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode, read at first use
        torch.use_deterministic_algorithms(True)
    resolve_kernels(cfg, device, resume["config"]["amp_dtype"] if resume and "amp" not in changes else None)
    data = build_data(cfg, resume["label_names"] if resume else None, device, rank, world_size, log,
                      resume.get("tfidf") if resume else None, resume.get("hierarchy") if resume else None)
    if resume:
        refuse_changed_data(resume.get("data_fingerprints"), data, cfg["resume"])

    record_facts(cfg, resume, changes, device, world_size, len(data.label_names))
    steps_per_epoch = -(-len(data.train_loader) // cfg["grad_accum"])
    state = build_train_state(cfg, len(data.label_names), steps_per_epoch * cfg["epochs"], device,
                              len(data.tfidf) if data.tfidf is not None else 0)
    progress = state.progress
    loss_fn, pos_weight, prior = training_loss(cfg, data.splits["train"].labels, len(data.label_names), device)
    if resume:
        state.load_state_dict(resume)
        resume.update(model=None, optimizer=None)  # copied into the state: not held twice (a GiB at many labels)
        set_learning_rates(state.optimizer, state.scheduler, cfg["lr"], cfg["head_lr_mult"], cfg["weight_decay"])
        log(f"resumed from {cfg['resume']}: epoch {progress['epoch'] + 1}, batch {progress['batches_done']}, "
            f"step {progress['step']}")
        for name, (old, new) in changes.items():
            log(f"resume: --{name.replace('_', '-')} {old} -> {new}, in effect from step {progress['step']} on")
    elif cfg["head_bias"] == "prior":
        with torch.no_grad():
            state.model.head.bias.copy_(log_odds(prior))
    state.wrap(world_size > 1, cfg["compiled"])
    fast = cpu_fast.enabled(cfg)
    checkpoints = Checkpoints(cfg, data, state, pos_weight, prior, folder, signals, world_size)

    if folder:
        if not resume:
            folder.replace_run()
        write_json(folder.file("config.json"), cfg)
        table = label_table(data.splits, data.label_names, data.hierarchy.levels if data.hierarchy else None)
        atomic_write(folder.file(LABEL_TABLE), lambda f: f.write(table_text(table).encode("utf-8")))
    logger = RunLogger(cfg["output_dir"], enabled=folder is not None,
                       purge_step=progress["step"] + 1 if resume else None,
                       records=RunFolder(os.path.dirname(cfg["resume"])).read_metrics(progress["epoch"])
                       if folder and resume else None)
    log(f"device {device} x{world_size}, amp {cfg['amp_dtype']}, attention {cfg['attention_impl']}, compile "
        f"{cfg['compiled']}, {steps_per_epoch} steps per epoch; run folder {cfg['output_dir']}")
    first_epoch = progress["epoch"]
    record = {}
    try:
        # --epochs 0 (with the fused head): one pass of no training, in which the fused head is fitted and validated
        for epoch in range(progress["epoch"], max(1, cfg["epochs"])):
            if state.patience_spent(cfg["patience"]):
                log(f"early stop: no better {cfg['select_metric']} in the {cfg['patience']} epochs since epoch "
                    f"{progress['best_epoch']} (--patience {cfg['patience']})")
                break
            train_stats = {}
            if cfg["epochs"]:
                data.train_loader.batch_sampler.set_epoch(epoch, progress["batches_done"])
                signals.deferring = True
                train_stats = train_one_epoch(state, data.train_loader, loss_fn, cfg["grad_accum"],
                                              cfg["clip_grad"], cfg["log_every"], logger if folder else None,
                                              checkpoints.after_step, f"{epoch + 1}/{cfg['epochs']}")
                signals.deferring = False
                if cfg["compiled"] != "off" and epoch == first_epoch:
                    log(f"torch.compile ({cfg['compiled']}): the first training step took "
                        f"{train_stats['first_step_seconds']:.1f} s, compiling included")
            if fast:
                cpu_fast.release_freed_memory(device)
            if state.model.fused is not None:
                train_stats.update(fit_fused_head(state.model, data.fit_loader, data.train_tfidf,
                                                  data.splits["train"].labels, cfg, prior, device, state.amp_dtype,
                                                  log))
            val, thresholds = validate(state, data, loss_fn, cfg, logger)
            if fast:
                cpu_fast.release_freed_memory(device)
            improved = state.end_epoch(val[cfg["select_metric"]], latest=cfg["train_on_validation"])
            record = {"epoch": epoch + 1, "step": progress["step"], **{f"train_{k}": v for k, v in train_stats.items()},
                      **{f"val_{k}": v for k, v in val.items()}}
            logger.epoch(record, progress["step"])
            signals.deferring = True  # a signal while the epoch is saved waits for the save (a second one does not)
            checkpoints.save_last(val, thresholds, best=improved)
            signals.deferring = False
            trained = (f"train_loss {train_stats['loss']:.4f}  " if cfg["epochs"] else "")
            speed = (f"  ({train_stats['seconds']:.1f} s, {train_stats['examples_per_s']:.1f} ex/s)"
                     if cfg["epochs"] else "  (the pretrained encoder)")
            head = "" if "fused_head" not in val else "  fused head" if val["fused_head"] else "  encoder's own head"
            if data.hierarchy is not None:
                head += "  per level micro_f1 " + " / ".join(f"{val[f'{level}_micro_f1']:.4f}"
                                                             for level in data.hierarchy.levels)
            log(f"epoch {epoch + 1}/{max(1, cfg['epochs'])}  {trained}val_loss {val['loss']:.4f}  "
                f"val_micro_f1 {val['micro_f1']:.4f} (tuned {val['tuned_micro_f1']:.4f})  "
                f"val_macro_f1 {val['macro_f1']:.4f}{speed}{head}" + ("  best" if improved else ""))
            signum = signals.requested(collective=world_size > 1)
            if signum:
                raise Interrupted(signum, f"interrupted by {NAMES[signum]}: epoch {epoch + 1} saved whole (last.pt"
                                          f"{', best.pt' if improved else ''}); " + continue_with(cfg["output_dir"]))
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
        signals.deferring = False
        logger.close()
    log(f"best {cfg['select_metric']} {progress['best_metric']:.4f} at epoch {progress['best_epoch']}: "
        f"{checkpoints.best}")
    return {"best_metric": progress["best_metric"], "best_epoch": progress["best_epoch"],
            "output_dir": cfg["output_dir"]}
