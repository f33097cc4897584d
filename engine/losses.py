"""The training loss over every (document, label) pair, and the label statistics of the training data that
shape it: positives weighed up (`--pos-weight`), a loss made for long tails (`--loss`), and the head's bias
started at each label's prior (`--head-bias prior`)."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def label_counts(labels: list[list[int]], num_labels: int) -> np.ndarray:
    return np.bincount([i for row in labels for i in row], minlength=num_labels).astype(np.float64)


def label_pos_weight(labels: list[list[int]], num_labels: int, mode: str, cap: float) -> torch.Tensor | None:
    """Each label's negatives / positives in the training data (`auto`) or its square root (`sqrt`), capped at
    `cap` (a label with no positive counts one); None for `none`."""
    if mode == "none":
        return None
    positives = label_counts(labels, num_labels)
    ratio = (len(labels) - positives) / np.maximum(positives, 1)
    return torch.tensor(np.minimum(np.sqrt(ratio) if mode == "sqrt" else ratio, cap), dtype=torch.float32)


def prior_logits(labels: list[list[int]], num_labels: int) -> torch.Tensor:
    """log(p / (1 - p)) of each label's share of the training documents (kept within 1/n of 0 and 1): a head
    whose bias starts here predicts the priors from the first step, rather than spending its first epoch
    pushing every logit down from 0 (probability 0.5)."""
    n = max(1, len(labels))
    prior = np.clip(label_counts(labels, num_labels) / n, 1 / (n + 1), n / (n + 1))
    return torch.tensor(np.log(prior / (1 - prior)), dtype=torch.float32)


class FocalLoss(nn.Module):
    """Binary focal loss (Lin et al. 2017) on logits, averaged over all pairs: each pair's cross-entropy is
    scaled by (1 - p_t)^gamma, so pairs the model already gets right (most negatives) weigh little. With
    `margin` it is the asymmetric loss (Ridnik et al. 2021): positives and negatives get their own focusing
    powers, and a negative's probability is shifted down by `margin` first, so easy negatives count for
    nothing at all."""

    def __init__(self, gamma_pos: float = 2.0, gamma_neg: float = 2.0, margin: float = 0.0,
                 pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.margin = gamma_pos, gamma_neg, margin
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        positive = F.logsigmoid(logits) * (1 - p) ** self.gamma_pos
        if self.pos_weight is not None:
            positive = positive * self.pos_weight
        if self.margin > 0:
            p_neg = (p - self.margin).clamp(min=0)
            negative = torch.log((1 - p_neg).clamp(min=1e-8)) * p_neg ** self.gamma_neg
        else:
            negative = F.logsigmoid(-logits) * p ** self.gamma_neg
        return -(targets * positive + (1 - targets) * negative).mean()


def build_loss(cfg: dict, pos_weight: torch.Tensor | None = None) -> nn.Module:
    """`--loss bce` (`BCEWithLogitsLoss`), `focal` (gamma 2) or `asl` (the asymmetric loss: gamma 0 for
    positives, 4 for negatives, margin 0.05, as its paper's defaults), each with `pos_weight` if given. The
    same config and weights rebuild the same loss from a checkpoint (evaluate.py's loss)."""
    kind = cfg.get("loss", "bce")
    if kind == "focal":
        return FocalLoss(2.0, 2.0, 0.0, pos_weight)
    if kind == "asl":
        return FocalLoss(0.0, 4.0, 0.05, pos_weight)
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight)
