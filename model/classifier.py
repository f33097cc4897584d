"""The classifier: a pretrained encoder, pooling over its token states, dropout and a linear head."""
import torch
import torch.nn.functional as F
from torch import nn

from model import cpu_fast, mpnet_attention
from model.cpu_fast import PLAIN_OR_SDPA, Dropout, register_plain_or_sdpa
from model.encoders import ModelError, encoder_from_config, load_encoder, tokenizer_from_files
from model.fused_head import FusedHead


class MultiLabelClassifier(nn.Module):
    """`head` reads the pooled embedding and is trained with the encoder; with `tfidf_size` (--features both) a
    `fused` head over the document's TF-IDF vector and its embedding is what predicts once it is fitted
    (engine/training/head_fit.py), in eval mode: training still runs through `head`, which fine-tunes the encoder."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1,
                 fast_paths: bool = True, chunk_pool: str = "max", tfidf_size: int | None = None,
                 fused_device=None):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ModelError(f"--pooling {pooling}: use mean or cls")
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # BERT's pooler is unused here: keep it out of the optimizer and DDP
        if fast_paths:
            cpu_fast.use_fast_dropout(encoder)
            if getattr(encoder, "embeddings", None) is not None:
                encoder.embeddings.register_forward_hook(cpu_fast.bf16_residual_stream)
        if chunk_pool not in ("max", "mean"):
            raise ModelError(f"--chunk-pool {chunk_pool}: use max or mean")
        self.encoder, self.pooling, self.chunk_pool = encoder, pooling, chunk_pool
        self.dropout = Dropout(dropout) if fast_paths else nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        self.fused = None if tfidf_size is None else FusedHead(tfidf_size, encoder.config.hidden_size, num_labels,
                                                               fused_device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, window_doc: torch.Tensor | None = None,
                num_docs: int | None = None, window_groups: torch.Tensor | None = None,
                tfidf_ids: torch.Tensor | None = None, tfidf_values: torch.Tensor | None = None) -> torch.Tensor:
        """Logits in fp32, a row per text; with `window_doc` (the rows are windows of chunked documents, and
        window i belongs to document window_doc[i] of `num_docs`) a row per document, its windows' logits pooled
        (max or mean); `window_groups` (on the host) runs the windows in groups, each at its own width
        (`document_rows`). Each window is encoded on its own, so a document's logits do not depend on what shares
        its batch. Under autocast the pooling and the head stay fp32: a bf16 head tied the probabilities of many
        labels, which blunts threshold tuning and the ranking metrics, and costs a sliver of the work. A fitted
        fused head (eval mode) reads each document's embedding, its windows' mean, and its TF-IDF vector."""
        if self.fused is not None and self.fused.ready and not self.training:
            embedding_part = document_rows(lambda ids, mask: self.fused.embedding_logits(self.window_embedding(ids, mask)),
                                           input_ids, attention_mask, window_doc, num_docs, window_groups,
                                           self.chunk_pool)
            return embedding_part + self.fused.tfidf_logits(tfidf_ids, tfidf_values)
        return document_rows(self.window_logits, input_ids, attention_mask, window_doc, num_docs, window_groups,
                             self.chunk_pool)

    def normalized_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                              window_doc: torch.Tensor | None = None, num_docs: int | None = None,
                              window_groups: torch.Tensor | None = None) -> torch.Tensor:
        """What the fused head's fit reads of each document (fp32): its L2-normalised pooled embedding, or a
        chunked document's windows' mean of them (the fused head's embedding part is linear in it, so with
        --chunk-pool mean the fit is exact)."""
        return document_rows(lambda ids, mask: F.normalize(self.window_embedding(ids, mask), dim=-1), input_ids,
                             attention_mask, window_doc, num_docs, window_groups, "mean")

    def window_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        with torch.autocast(states.device.type, enabled=False):
            states = states.float()
            if self.pooling == "cls":
                return states[:, 0]
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            return (states * mask).sum(1) / mask.sum(1).clamp(min=1)

    def window_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.window_embedding(input_ids, attention_mask)
        with torch.autocast(pooled.device.type, enabled=False):
            return self.head(self.dropout(pooled))


def document_rows(logits_of, input_ids: torch.Tensor, attention_mask: torch.Tensor, window_doc: torch.Tensor | None,
                  num_docs: int | None, window_groups: torch.Tensor | None, chunk_pool: str,
                  rows: tuple = ()) -> torch.Tensor:
    """`logits_of(input_ids, attention_mask, *rows)` over all rows, or group by group (rows up to each (end row,
    width) of `window_groups`, cut to that width: data/batching.py, `window_groups`; `rows`, more tensors of a row
    per window, are cut to the same rows); then, with `window_doc`, each document's windows pooled
    (`pool_windows`)."""
    if window_groups is None:
        logits = logits_of(input_ids, attention_mask, *rows)
    else:
        parts, start = [], 0
        for end, width in window_groups.tolist():
            parts.append(logits_of(input_ids[start:end, :width], attention_mask[start:end, :width],
                                   *(row[start:end] for row in rows)))
            start = end
        logits = torch.cat(parts)
    return logits if window_doc is None else pool_windows(logits, window_doc, num_docs, chunk_pool)


def pool_windows(logits: torch.Tensor, window_doc: torch.Tensor, n_docs: int, how: str) -> torch.Tensor:
    """(windows, labels) -> (documents, labels): each document's windows, by max or mean. Documents are
    numbered 0..n_docs-1 in `window_doc`, each with at least one window."""
    index = window_doc.unsqueeze(1).expand_as(logits)
    if how == "max":
        return logits.new_full((n_docs, logits.shape[1]), -torch.inf).scatter_reduce(0, index, logits, "amax")
    return logits.new_zeros((n_docs, logits.shape[1])).scatter_reduce(0, index, logits, "mean", include_self=False)


def build_model(cfg: dict, num_labels: int, encoder_config: dict | None = None,
                tfidf_size: int = 0) -> MultiLabelClassifier:
    """The pretrained encoder named by cfg["model"], or with `encoder_config` (from a checkpoint) the same
    architecture left for the checkpoint's weights, with a fresh head for `num_labels` labels. `cfg` is a run's
    whole config (`engine.config.make_config`, or a checkpoint's); cfg["attention_impl"] is the attention kernel
    resolved for the device (`resolve_attention`; unresolved: sdpa), and the one the encoder runs after
    `supported_attention` is `attention_impl(model)`. With cfg["features"] both, the model has a fused head over
    `tfidf_size` TF-IDF terms and the embedding (model/fused_head.py), unfitted, or with `encoder_config` left on
    the meta device for the checkpoint's weights (`build_from_checkpoint` assigns them)."""
    attention = cfg["attention_impl"] or "sdpa"
    if attention == PLAIN_OR_SDPA:
        register_plain_or_sdpa()
    if encoder_config:
        encoder = encoder_from_config(encoder_config, attention)
    else:
        encoder = load_encoder(cfg["model"], attention, cfg["attention_dropout"])
    mpnet_attention.use_fused_attention(encoder, attention)
    model = MultiLabelClassifier(encoder, num_labels, cfg["pooling"], cfg["dropout"], cpu_fast.enabled(cfg),
                                 cfg["chunk_pool"], tfidf_size if cfg["features"] != "encoder" else None,
                                 "meta" if encoder_config else None)
    if cfg["freeze_embeddings"] == "word":
        model.encoder.get_input_embeddings().requires_grad_(False)
    elif cfg["freeze_embeddings"] == "all":
        if not isinstance(getattr(model.encoder, "embeddings", None), nn.Module):
            raise ModelError(f"--freeze-embeddings all: the encoder of --model {cfg['model']} has no embeddings module")
        model.encoder.embeddings.requires_grad_(False)
    return model


def attention_impl(model: MultiLabelClassifier) -> str:
    """The attention kernel the encoder runs."""
    return mpnet_attention.fused_kernel(model.encoder) or model.encoder.config._attn_implementation


def build_from_checkpoint(state: dict):
    """(model with the checkpoint's weights, tokenizer) from a checkpoint alone: no hub, no model folder."""
    tfidf = state.get("tfidf")
    model = build_model(state["config"], len(state["label_names"]), state["encoder_config"],
                        len(tfidf["terms"]) if tfidf else 0)
    model.load_state_dict(state["model"], assign=True)  # the checkpoint's tensors, not copies of them
    return model, tokenizer_from_files(state["tokenizer_files"])
