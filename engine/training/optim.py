"""AdamW with weight decay on weight matrices only, a faster-learning head, and linear warm-up then decay."""
import torch

from engine.config import ConfigError


def build_optimizer(model, lr: float, head_lr_mult: float, weight_decay: float) -> torch.optim.AdamW:
    """Biases and LayerNorm weights (every 1-d parameter) are spared weight decay; the freshly initialised
    head learns `head_lr_mult` times faster than the pretrained encoder. The fused AdamW kernel (one pass
    over each parameter's state) is the faster one on a CPU (docs/results.md, Speed)."""
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith("head.")
        key = (is_head, param.ndim >= 2)  # the same groups whatever the weight decay: a resume may change it
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": weight_decay if key[1] else 0.0,
                           "lr": lr * (head_lr_mult if is_head else 1.0), "is_head": is_head, "decays": key[1]}
        groups[key]["params"].append(param)
    params = [p for group in groups.values() for p in group["params"]]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.bfloat16, torch.float16)
                for p in params)
    return torch.optim.AdamW(list(groups.values()), lr=lr, fused=fused, foreach=None if fused else True)


def merge_decay_groups(optimizer, model) -> None:
    """The groups of a run saved at --weight-decay 0 by an older version, which kept weight matrices and the rest in
    one group (the head's and the encoder's), parameters in the model's order: so that its optimizer state loads.
    Such a run resumes at weight decay 0 only (`decays` None)."""
    order = {id(p): i for i, p in enumerate(model.parameters())}
    merged = {}
    for group in optimizer.param_groups:
        into = merged.setdefault(group["is_head"], {**group, "params": [], "decays": None})
        into["params"] += group["params"]
    for group in merged.values():
        group["params"].sort(key=lambda p: order[id(p)])
    optimizer.param_groups[:] = list(merged.values())


def build_scheduler(optimizer, total_steps: int, warmup_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(round(warmup_fraction * total_steps))

    def factor(step):
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def set_learning_rates(optimizer, scheduler, lr: float, head_lr_mult: float, weight_decay: float) -> None:
    """Make a restored optimizer and schedule follow these flags from the current step on (a resumed run whose
    flags changed): the schedule's peak rates, the rates in effect now, and the weight decay."""
    for i, group in enumerate(optimizer.param_groups):
        is_head = group.get("is_head", i >= 2)  # older checkpoints: the encoder's groups came first
        decays = group.get("decays", group["weight_decay"] > 0)
        if decays is None and weight_decay:
            raise ConfigError(f"--weight-decay {weight_decay}: this checkpoint was saved at weight decay 0 by a "
                              "version before 2026-12-04, which kept weight matrices and biases in one group; it "
                              "resumes at --weight-decay 0 only")
        peak = lr * (head_lr_mult if is_head else 1.0)
        group["initial_lr"] = scheduler.base_lrs[i] = peak
        group["lr"] = peak * scheduler.lr_lambdas[0](scheduler.last_epoch)
        group["weight_decay"] = weight_decay if decays else 0.0
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
