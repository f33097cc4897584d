"""A run's last.pt and best.pt: what a checkpoint holds (engine/formats.py: its format), written after every epoch,
every --save-every steps, and on SIGINT or SIGTERM before the run stops."""
import json
import os

import torch

from engine.checkpoint import link_checkpoint, save_checkpoint
from engine.distributed import barrier
from engine.errors import NAMES, Interrupted, NonFiniteLossError
from engine.formats import CHECKPOINT_FORMAT
from engine.training.run_data import RunData
from model.encoders import tokenizer_files

def continue_with(output_dir: str) -> str:
    return f"continue with: python train.py --resume auto --output-dir {output_dir}"


class Checkpoints:
    """The run's last.pt and best.pt. `contents` is everything a checkpoint holds; the main process writes it
    after every rank has given its part (its RNG state). `after_step` runs after each optimizer step: it saves
    every --save-every steps, and on SIGINT or SIGTERM saves and stops."""

    def __init__(self, cfg: dict, data: RunData, state, pos_weight, prior, folder, signals, world_size: int):
        self.cfg, self.state, self.folder, self.signals, self.world_size = cfg, state, folder, signals, world_size
        self.static = {"format": CHECKPOINT_FORMAT, "config": cfg, "label_names": data.label_names,
                       "tokenizer_files": tokenizer_files(data.tokenizer),
                       "encoder_config": json.loads(state.model.encoder.config.to_json_string()),
                       "pos_weight": pos_weight, "label_prior": prior,
                       "data_fingerprints": data.fingerprints,
                       "hierarchy": data.hierarchy.state() if data.hierarchy is not None else None,
                       "tfidf": None if data.tfidf is None else {**data.tfidf.state(),
                                                                  "idf": torch.from_numpy(data.tfidf.idf)}}
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
