"""One training epoch: forward and backward batch by batch (a chunked batch part by part), optimizer steps."""
import math
import time
from contextlib import nullcontext

import torch
from tqdm import tqdm

from engine.amp import autocast
from engine.distributed import average
from engine.predictions import document_logits
from engine.errors import NonFiniteLossError


def accumulate_gradients(model, batch: dict, loss_fn, device: torch.device, amp_dtype, scale=lambda loss: loss,
                         grad_accum: int = 1, sync: bool = True) -> tuple[torch.Tensor, int, int]:
    """Forward and backward over one batch, adding its gradient (`scale`d, over `grad_accum`) to the weights'
    gradients -> (its loss, detached; its documents; its real tokens). A chunked batch cut into parts (data/batching.py,
    `document_parts`) runs part by part, each weighed by its share of the documents: the loss is a mean over
    (document, label) pairs, so the gradient is the whole batch's while a part's activations are all it holds.
    Under DDP the gradients are reduced only where `sync` (the step's last batch), after its last part."""
    parts = batch.get("parts", [batch])
    docs = sum(len(part["labels"]) for part in parts)
    non_blocking = device.type == "cuda"
    loss, tokens = torch.zeros((), device=device), 0
    for k, part in enumerate(parts):
        labels = part["labels"].to(device, non_blocking=non_blocking)
        reduce = sync and k + 1 == len(parts)
        with model.no_sync() if hasattr(model, "no_sync") and not reduce else nullcontext():
            with autocast(device, amp_dtype):
                logits = document_logits(model, part, device, non_blocking)
            part_loss = loss_fn(logits.float(), labels) * (len(labels) / docs)
            scale(part_loss / grad_accum).backward()
        loss += part_loss.detach()
        tokens += int(part["attention_mask"].sum())
    return loss, docs, tokens


def train_one_epoch(state, loader, loss_fn, grad_accum: int = 1, clip_grad: float = 1.0, log_every: int = 10,
                    logger=None, on_step=None, epoch_label: str = "") -> dict:
    """Trains `state` (a `TrainState`: model, optimizer, schedule, scaler, device, autocast dtype, progress) on
    the batches of `loader` that are left of this epoch. After every optimizer step, `state.progress` says
    where the epoch stands (step, batches, examples and tokens done) and `on_step(state)` runs (to save, or stop on a signal). The
    loss stays on the device between log points: no host sync in the hot loop. Returns the epoch's mean loss
    (over all its batches, those before a resume included), its examples and tokens (likewise), the speed of
    this part of it and the seconds to its first optimizer step (a compiled model's first compile)."""
    model, optimizer, scheduler, scaler = state.forward_model, state.optimizer, state.scheduler, state.scaler
    device, amp_dtype, progress = state.device, state.amp_dtype, state.progress
    batches_before, examples_before, tokens_before = (progress[key] for key in ("batches_done", "examples_done",
                                                                               "tokens_done"))
    model.train()
    window_loss, window_batches = torch.zeros((), device=device, dtype=torch.float64), 0
    n_batches, n_examples, n_tokens, first_step_seconds = len(loader), 0, 0, None
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"train {epoch_label}", leave=False, dynamic_ncols=True, disable=logger is None)
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(bar):
        is_step = (i + 1) % grad_accum == 0 or i + 1 == n_batches
        loss, docs, tokens = accumulate_gradients(model, batch, loss_fn, device, amp_dtype, scaler.scale, grad_accum, is_step)
        state.loss_sum += loss
        window_loss += loss
        window_batches += 1
        n_examples += docs
        n_tokens += tokens
        if not is_step:
            continue
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        progress["step"] += 1
        if first_step_seconds is None:  # under torch.compile, the first step compiles
            first_step_seconds = time.perf_counter() - start
        progress.update(batches_done=batches_before + i + 1, examples_done=examples_before + n_examples,
                        tokens_done=tokens_before + n_tokens)
        if progress["step"] % log_every == 0 or i + 1 == n_batches:
            mean_loss = window_loss.item() / window_batches
            if not math.isfinite(mean_loss):
                raise NonFiniteLossError(f"the training loss became {mean_loss} at step {progress['step']}; try a "
                                         "lower --lr or --amp off")
            if logger is not None:
                logger.scalars({"loss": mean_loss, "lr": scheduler.get_last_lr()[0]}, progress["step"], "train")
                bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
            window_loss.zero_()
            window_batches = 0
        if on_step is not None:
            on_step(state)
    seconds = time.perf_counter() - start
    return {"loss": average(state.loss_sum.item() / max(1, progress["batches_done"])),
            "examples": progress["examples_done"], "tokens": progress["tokens_done"], "seconds": seconds,
            "examples_per_s": n_examples / max(seconds, 1e-9), "first_step_seconds": first_step_seconds or 0.0}


