"""The attention kernels `--attention auto` picks, call by call, registered with transformers'
AttentionInterface under the name `PLAIN_OR_SDPA`.

On a CPU (timed on MiniLM's and bert-base's head shapes, 16 to 300 tokens, README):
- with attention dropout (training), PyTorch's SDPA leaves its flash kernel for a path that draws the mask
  with `bernoulli_`; plain attention with the cheap dropout of `model.dropout` took 0.26 to 0.98 of its time;
- without dropout, SDPA's flash kernel is the fastest, 1.2x to 5x faster than plain attention in fp32, except
  in bf16 on short sequences (up to 128 tokens), where plain attention took 0.4 to 0.8 of its time.
On a GPU: SDPA, whose kernels fuse the dropout.
"""
import torch

from model.dropout import dropout as cheap_dropout

PLAIN_OR_SDPA = "plain_or_sdpa"
SHORT = 128  # tokens: up to here plain attention beat SDPA's flash kernel in bf16 on a CPU


def plain_or_sdpa(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    short_bf16 = query.dtype == torch.bfloat16 and query.shape[-2] <= SHORT
    if query.device.type == "cpu" and (dropout > 0 or short_bf16):
        return plain_attention(query, key, value, attention_mask, scaling, dropout)
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def plain_attention(query, key, value, attention_mask, scaling, dropout):
    """softmax(q k^T * scaling + mask) v, with the cheap dropout on the probabilities; q, k, v are
    (batch, heads, length, head size); returns (batch, length, heads, head size) and the probabilities."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = cheap_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def register_plain_or_sdpa() -> None:
    """Makes `attn_implementation=PLAIN_OR_SDPA` known to transformers, with the additive float mask plain attention
    needs (SDPA takes it too). Idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(PLAIN_OR_SDPA, plain_or_sdpa)
    AttentionMaskInterface.register(PLAIN_OR_SDPA, eager_mask)
