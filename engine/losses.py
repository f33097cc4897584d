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


def label_prior(labels: list[list[int]], num_labels: int) -> torch.Tensor:
    """Each label's share of the training documents, kept within 1/(n+1) of 0 and 1 (a label with no positive
    or no negative still has a finite log-odds)."""
    n = max(1, len(labels))
    prior = np.clip(label_counts(labels, num_labels) / n, 1 / (n + 1), n / (n + 1))
    return torch.tensor(prior, dtype=torch.float32)


def log_odds(prior: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of each label's prior: a head whose bias starts here predicts the priors from the first
    step, rather than spending its first epoch pushing every logit down from 0 (probability 0.5)."""
    return torch.logit(prior.double()).float()


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


class DistributionBalancedLoss(nn.Module):
    """The distribution-balanced loss (Wu et al. 2020), with the settings Huang et al. (2021) found best for
    multi-label text (Reuters-21578 and PubMed), on top of the focal loss (gamma 2, both sides weighed 0.5):
    - re-balanced weights: a document's pairs weigh by how much its labels over-sample label j when
      documents are drawn for their rarer labels, r = (1/p_j) / sum over its labels k of 1/p_k, smoothed to
      alpha + sigmoid(beta * (r - mu)); documents whose labels are all frequent weigh more than 0.1,
      those that carry a frequent label beside a rare one weigh less on the frequent one;
    - negative-tolerant regularisation: each logit is shifted by kappa * log(p / (1 - p)) (rare labels start
      lower), and negatives' logits are scaled by `neg_scale` (their weight divided by it), so the flood of
      easy negatives stops pushing rare labels' logits ever lower.
    Predictions use the raw logits; the shift and scale live in the loss only. `prior` is each label's share of
    the training documents (`label_prior`)."""

    def __init__(self, prior: torch.Tensor, pos_weight: torch.Tensor | None = None, alpha: float = 0.1,
                 beta: float = 10.0, mu: float = 0.9, kappa: float = 0.05, neg_scale: float = 2.0,
                 gamma: float = 2.0):
        super().__init__()
        self.alpha, self.beta, self.mu, self.neg_scale, self.gamma = alpha, beta, mu, neg_scale, gamma
        self.register_buffer("inverse_prior", 1 / prior)
        self.register_buffer("shift", kappa * log_odds(prior))
        self.register_buffer("pos_weight", pos_weight)

    def rebalanced_weights(self, targets: torch.Tensor) -> torch.Tensor:
        """alpha + sigmoid(beta * (r - mu)) for every pair (a document without labels: alpha + 1)."""
        sampled = (targets * self.inverse_prior).sum(1, keepdim=True)
        ratio = self.inverse_prior / sampled.clamp(min=1e-12)
        return self.alpha + torch.sigmoid(self.beta * (ratio - self.mu))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = self.rebalanced_weights(targets)
        positive = targets > 0
        z = torch.where(positive, logits + self.shift, (logits + self.shift) * self.neg_scale)
        weight = torch.where(positive, weight, weight / self.neg_scale)
        if self.pos_weight is not None:
            weight = torch.where(positive, weight * self.pos_weight, weight)
        bce = F.binary_cross_entropy_with_logits(z, targets, reduction="none")
        focus = (1 - torch.exp(-bce)) ** self.gamma
        return (0.5 * focus * weight * bce).mean()


def build_loss(cfg: dict, pos_weight: torch.Tensor | None = None, prior: torch.Tensor | None = None) -> nn.Module:
    """`--loss bce` (`BCEWithLogitsLoss`), `focal` (gamma 2), `asl` (the asymmetric loss: gamma 0 for
    positives, 4 for negatives, margin 0.05, as its paper's defaults) or `db` (the distribution-balanced loss,
    which needs the labels' training `prior`), each with `pos_weight` if given. The same config and statistics
    rebuild the same loss from a checkpoint (evaluate.py's loss)."""
    kind = cfg["loss"]
    if kind == "db":
        if prior is None:
            raise ValueError("--loss db needs the labels' training priors")
        return DistributionBalancedLoss(prior, pos_weight)
    if kind == "focal":
        return FocalLoss(2.0, 2.0, 0.0, pos_weight)
    if kind == "asl":
        return FocalLoss(0.0, 4.0, 0.05, pos_weight)
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight)


def training_loss(cfg: dict, train_labels: list[list[int]], num_labels: int, device: torch.device):
    """(loss, positive weights or None, label priors) of a run: the statistics come from its training labels and
    are kept in its checkpoints, so that evaluate.py rebuilds the same loss."""
    pos_weight = label_pos_weight(train_labels, num_labels, cfg["pos_weight"], cfg["pos_weight_max"])
    prior = label_prior(train_labels, num_labels)
    loss_fn = build_loss(cfg, pos_weight.to(device) if pos_weight is not None else None, prior.to(device))
    return loss_fn, pos_weight, prior
