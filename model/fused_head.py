"""The fused head: one linear layer over a document's TF-IDF vector and its encoder embedding (L2-normalised)."""
import warnings

import torch
import torch.nn.functional as F
from torch import nn

SPARSE_KEYS = ("tfidf_offsets", "tfidf_labels", "tfidf_weights")


class FusedHead(nn.Module):
    """logits = tfidf . W_tfidf + (e / |e|) . W_embedding + bias, for a document's sparse TF-IDF vector (given as
    `tfidf_ids`, `tfidf_values`: a row of term indices and values per document, padded with value 0) and its
    pooled embedding e (a chunked document's windows' embedding parts are pooled as their logits are).
    W_tfidf (terms x labels) is pruned and stored sparse, rows of terms in CSR: `tfidf_offsets` (terms + 1),
    `tfidf_labels` and `tfidf_weights` (one per weight kept, int32 / fp32); the fit keeps a few percent of the
    weights (docs/results.md, EU law). The weights are buffers, not parameters: they are fitted to convergence over
    the training documents' features (engine/training/head_fit.py), never by AdamW, so they add no optimizer state
    and no gradient. `active` (a buffer, and `ready` its Python bool) says whether this head predicts: it has been
    fitted, and (with --features auto) it scored better on validation than the encoder's own head."""

    def __init__(self, tfidf_size: int, embedding_size: int, num_labels: int, device=None, tfidf_kept: int = 0):
        """`device` "meta" allocates nothing, for weights a checkpoint will assign; `tfidf_kept`, the number of
        TF-IDF weights stored (an exported folder's config says it; a checkpoint's buffers take their own size)."""
        super().__init__()
        self.num_labels = num_labels
        self.register_buffer("tfidf_offsets", torch.zeros(max(1, tfidf_size) + 1, dtype=torch.int32, device=device))
        self.register_buffer("tfidf_labels", torch.zeros(tfidf_kept, dtype=torch.int32, device=device))
        self.register_buffer("tfidf_weights", torch.zeros(tfidf_kept, device=device))
        self.register_buffer("embedding_weight", torch.zeros(num_labels, embedding_size, device=device))
        self.register_buffer("bias", torch.zeros(num_labels, device=device))
        self.register_buffer("active", torch.zeros((), dtype=torch.bool, device=device))
        self.ready = False

    @property
    def tfidf_size(self) -> int:
        return len(self.tfidf_offsets) - 1

    def forward(self, embeddings: torch.Tensor, tfidf_ids: torch.Tensor, tfidf_values: torch.Tensor) -> torch.Tensor:
        """Logits of rows of one embedding and one TF-IDF vector each (a window and its document's vector)."""
        return self.embedding_logits(embeddings) + self.tfidf_logits(tfidf_ids, tfidf_values)

    def embedding_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings.float(), dim=-1), self.embedding_weight)

    def tfidf_logits(self, tfidf_ids: torch.Tensor, tfidf_values: torch.Tensor) -> torch.Tensor:
        """The TF-IDF vector's part and the bias: constant over a document's windows, so adding it before or after
        they are pooled (max or mean) gives the same logits."""
        return self.tfidf_scores(tfidf_ids, tfidf_values) + self.bias

    def tfidf_scores(self, tfidf_ids: torch.Tensor, tfidf_values: torch.Tensor) -> torch.Tensor:
        """tfidf . W_tfidf of each row (documents x labels, fp32): a sparse times a sparse matrix, the rows'
        vectors gathered into one (duplicate and padding entries summed, padding adds 0)."""
        rows, width = tfidf_ids.shape
        index = torch.stack([torch.arange(rows, device=tfidf_ids.device).repeat_interleave(width),
                             tfidf_ids.reshape(-1).long()])
        with warnings.catch_warnings():  # sparse CSR is "beta" in torch: say it once per process, not per batch
            warnings.simplefilter("ignore", UserWarning)
            vectors = torch.sparse_coo_tensor(index, tfidf_values.reshape(-1).float(), (rows, self.tfidf_size))
            vectors = vectors.coalesce().to_sparse_csr()
            vectors = torch.sparse_csr_tensor(vectors.crow_indices().to(torch.int32),
                                              vectors.col_indices().to(torch.int32), vectors.values(),
                                              size=vectors.shape)
            weights = torch.sparse_csr_tensor(self.tfidf_offsets, self.tfidf_labels, self.tfidf_weights,
                                              size=(self.tfidf_size, self.num_labels))
            return torch.sparse.mm(vectors, weights).to_dense()

    def activate(self, on: bool) -> None:
        """Whether this head predicts (else the encoder's own head does). Off while a fit rewrites the weights, so
        that a checkpoint saved meanwhile (a signal) predicts with the encoder's head and its resume fits again;
        off after validation where the encoder's head scored better (--features auto)."""
        self.active.fill_(on)
        self.ready = on

    @torch.no_grad()
    def set_weights(self, tfidf: dict, embedding_weight: torch.Tensor, bias: torch.Tensor) -> None:
        """The fitted weights: `tfidf` {SPARSE_KEYS: CSR arrays} of the TF-IDF block, the embedding block
        (labels x embedding) and the biases."""
        for key in SPARSE_KEYS:
            setattr(self, key, tfidf[key].to(getattr(self, key).device, getattr(self, key).dtype))
        self.embedding_weight.copy_(embedding_weight)
        self.bias.copy_(bias)
        self.activate(True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in SPARSE_KEYS[1:]:  # as many weights as the state holds
            found = state_dict.get(prefix + key)
            if isinstance(found, torch.Tensor) and found.shape != getattr(self, key).shape:
                setattr(self, key, torch.empty(found.shape, dtype=getattr(self, key).dtype,
                                               device=getattr(self, key).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.ready = self.active.device.type != "meta" and bool(self.active)  # missing: strict loading says so


def sparse_state(weights: dict) -> dict:
    """A state dict of format 2 (a checkpoint's model, an HF folder's model.safetensors) as format 3's: a fused
    head's dense terms x labels `fused.tfidf_weight` as CSR arrays of its nonzeros (engine/formats.py), so that
    its logits are the same."""
    dense = weights.get("fused.tfidf_weight")
    if not isinstance(dense, torch.Tensor) or dense.dim() != 2:
        return weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sparse = dense.float().to_sparse_csr()
    arrays = {"tfidf_offsets": sparse.crow_indices().to(torch.int32),
              "tfidf_labels": sparse.col_indices().to(torch.int32), "tfidf_weights": sparse.values().contiguous()}
    kept = {key: value for key, value in weights.items() if key != "fused.tfidf_weight"}
    return {**kept, **{f"fused.{key}": value for key, value in arrays.items()}}
