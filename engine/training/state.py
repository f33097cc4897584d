"""The training state in one place: model, optimizer, schedule, grad scaler, progress and RNG, with the save and
restore that make a killed run continue exactly where it stopped."""
import random

import numpy as np
import torch
import torch.distributed as dist

from engine.amp import dtype_from_name
from engine.compiling import compiled_module
from engine.distributed import all_gather_objects
from engine.training.optim import build_optimizer, build_scheduler, merge_decay_groups
from model.classifier import build_model


def seed_everything(seed: int, rank: int = 0) -> None:
    """Each DDP rank gets its own streams (seed + rank), or every rank would draw the same dropout masks; the
    model's initial weights still agree, as DDP gives every rank rank 0's."""
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainState:
    """What training changes and what it runs on: the model, optimizer, schedule, grad scaler, the device and
    autocast dtype, and `progress`: epochs done, batches done in the current epoch and their loss sum, optimizer steps, the best
    validation metric and its epoch. The loop keeps the epoch's loss sum on the device (`loss_sum`), so
    counting it costs no host sync; it is read only when the state is saved. `forward_model` is what the loop
    calls: the model, or its DistributedDataParallel wrapper, compiled or not (`wrap`);
    `eval_model` is what validation calls; `model` is always the unwrapped one, whose weights are saved."""

    def __init__(self, model, optimizer, scheduler, scaler, device: torch.device, amp_dtype: torch.dtype | None):
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.device, self.amp_dtype = device, amp_dtype
        self.forward_model = self.eval_model = model
        self.progress = {"epoch": 0, "batches_done": 0, "step": 0, "best_metric": -float("inf"), "best_epoch": 0,
                         "examples_done": 0, "tokens_done": 0}
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)

    def wrap(self, distributed: bool, compile_mode: str) -> None:
        """What the loop calls: under DDP the model's DistributedDataParallel wrapper, then compiled with
        `compile_mode` ("off": eager)."""
        if distributed:  # no buffer broadcast: the fused head's (a GiB at thousands of labels) is fitted alike on
            # every rank, and the encoders' buffers are constants
            self.forward_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        if compile_mode != "off":
            self.compile(compile_mode)

    def compile(self, mode: str = "default") -> None:
        """torch.compile what the loop calls, with dynamic shapes from the start: batches change length (and the
        last one its size), and one graph for all of them compiles once rather than once per shape (under
        `reduce-overhead`, each shape still records its own CUDA graph). Validation
        runs the same compiled module in eval mode (one more compile), or under DDP the plain model (its ranks
        evaluate apart). The weights stay `model`'s, so checkpoints do not change."""
        distributed = self.forward_model is not self.model
        self.forward_model = compiled_module(self.forward_model, mode)
        if not distributed:
            self.eval_model = self.forward_model

    def end_epoch(self, metric: float, latest: bool = False) -> bool:
        """Called after an epoch's validation with its --select-metric: the next epoch starts at its first batch;
        returns whether this epoch is the best so far (with `latest`, every epoch is: a validation split trained on
        cannot choose)."""
        progress = self.progress
        progress["epoch"] += 1
        progress.update(batches_done=0, examples_done=0, tokens_done=0)
        self.loss_sum.zero_()
        improved = latest or metric > progress["best_metric"]
        if improved:
            progress.update(best_metric=metric, best_epoch=progress["epoch"])
        return improved

    def patience_spent(self, patience: int) -> bool:
        """--patience epochs have passed since the best one (0: never)."""
        return bool(patience) and self.progress["epoch"] - self.progress["best_epoch"] >= patience

    def state_dict(self) -> dict:
        """Under DDP every rank must call it (the ranks' RNG states are gathered: each rank draws its own
        dropout masks, and a resumed rank continues its own stream)."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "progress": {**self.progress, "epoch_loss_sum": self.loss_sum.item()}, "rng": rng_state()}
        if dist.is_initialized() and dist.get_world_size() > 1:
            state["rng_per_rank"] = all_gather_objects(state["rng"])
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        merged = len(state["optimizer"]["param_groups"]) < len(self.optimizer.param_groups)
        if merged:
            merge_decay_groups(self.optimizer, self.model)
            self.scheduler.lr_lambdas = self.scheduler.lr_lambdas[:len(self.optimizer.param_groups)]
        self.optimizer.load_state_dict(state["optimizer"])
        if merged:  # loading took the saved groups' own `decays`
            for group in self.optimizer.param_groups:
                group["decays"] = None
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state["scaler"]:  # empty when saved by a run without fp16
            self.scaler.load_state_dict(state["scaler"])
        progress = dict(state["progress"])
        self.loss_sum.fill_(progress.pop("epoch_loss_sum", 0.0))
        self.progress.update(progress)
        per_rank = state.get("rng_per_rank")
        world_size = dist.get_world_size() if dist.is_initialized() else 1
        set_rng_state(per_rank[dist.get_rank()] if per_rank and len(per_rank) == world_size else state["rng"])

    def is_finite(self) -> bool:
        """Weights and the epoch's loss so far are all finite (a state worth saving)."""
        finite = [torch.isfinite(p.detach()).all() for p in self.model.parameters()]
        return bool(torch.stack(finite).all()) and bool(torch.isfinite(self.loss_sum))


def build_train_state(cfg: dict, num_labels: int, total_steps: int, device: torch.device,
                      tfidf_size: int = 0) -> TrainState:
    """A fresh run's state from its config resolved for the machine (engine/training/run_config.py): the pretrained
    encoder with a new head, AdamW in its parameter groups, the warm-up and decay schedule over `total_steps`
    optimizer steps, and a grad scaler (active for fp16 only). train.py and bench/speed.py build their runs through
    this function."""
    model = build_model(cfg, num_labels, tfidf_size=tfidf_size).to(device)
    amp_dtype = dtype_from_name(cfg["amp_dtype"])
    optimizer = build_optimizer(model, cfg["lr"], cfg["head_lr_mult"], cfg["weight_decay"])
    scheduler = build_scheduler(optimizer, total_steps, cfg["warmup"])
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return TrainState(model, optimizer, scheduler, scaler, device, amp_dtype)
