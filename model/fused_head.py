"""The fused head: one linear layer over a document's TF-IDF vector and its encoder embedding (L2-normalised)."""
import torch
import torch.nn.functional as F
from torch import nn


class FusedHead(nn.Module):
    """logits = tfidf . W_tfidf + (e / |e|) . W_embedding + bias, for a document's sparse TF-IDF vector (given as
    `tfidf_ids`, `tfidf_values`: a row of term indices and values per document, padded with value 0) and its
    pooled embedding e (a chunked document's windows' embedding parts are pooled as their logits are). The weights are buffers, not parameters: they are fitted to convergence over the training
    documents' features (engine/training/head_fit.py), never by AdamW, so they add no optimizer state and no gradient.
    `active` (a buffer, and `ready` its Python bool) says whether this head predicts: it has been fitted, and (with
    --features auto) it scored better on validation than the encoder's own head."""

    def __init__(self, tfidf_size: int, embedding_size: int, num_labels: int, device=None):
        """`device` "meta" allocates nothing, for weights a checkpoint will assign (a GiB at thousands of labels)."""
        super().__init__()
        self.register_buffer("tfidf_weight", torch.zeros(max(1, tfidf_size), num_labels, device=device))
        self.register_buffer("embedding_weight", torch.zeros(num_labels, embedding_size, device=device))
        self.register_buffer("bias", torch.zeros(num_labels, device=device))
        self.register_buffer("active", torch.zeros((), dtype=torch.bool, device=device))
        self.ready = False

    def forward(self, embeddings: torch.Tensor, tfidf_ids: torch.Tensor, tfidf_values: torch.Tensor) -> torch.Tensor:
        """Logits of rows of one embedding and one TF-IDF vector each (a window and its document's vector)."""
        return self.embedding_logits(embeddings) + self.tfidf_logits(tfidf_ids, tfidf_values)

    def embedding_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings.float(), dim=-1), self.embedding_weight)

    def tfidf_logits(self, tfidf_ids: torch.Tensor, tfidf_values: torch.Tensor) -> torch.Tensor:
        """The TF-IDF vector's part and the bias: constant over a document's windows, so adding it before or after
        they are pooled (max or mean) gives the same logits."""
        sparse = F.embedding_bag(tfidf_ids, self.tfidf_weight, per_sample_weights=tfidf_values.float(), mode="sum")
        return sparse + self.bias

    def activate(self, on: bool) -> None:
        """Whether this head predicts (else the encoder's own head does). Off while a fit rewrites the weights in
        place, so that a checkpoint saved meanwhile (a signal) predicts with the encoder's head and its resume fits
        again; off after validation where the encoder's head scored better (--features auto)."""
        self.active.fill_(on)
        self.ready = on

    @torch.no_grad()
    def set_weights(self, embedding_weight: torch.Tensor, bias: torch.Tensor) -> None:
        """The fitted embedding weights and biases; the fit writes `tfidf_weight` in place (engine/training/head_fit.py)."""
        self.embedding_weight.copy_(embedding_weight)
        self.bias.copy_(bias)
        self.activate(True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.ready = self.active.device.type != "meta" and bool(self.active)  # missing: strict loading says so
