"""The attention kernels `--attention auto` picks, call by call, registered with transformers'
AttentionInterface under the name `PLAIN_OR_SDPA`.

On a CPU, PyTorch's SDPA runs a flash kernel that is fast on long sequences without dropout, slow on short
ones, and without dropout support: with attention dropout it falls back to a path that draws the mask with
`bernoulli_` (3.6x slower than without dropout at 300 tokens). So on a CPU: plain attention with the cheap
dropout of `model.dropout` while training with attention dropout, or for short sequences; SDPA otherwise
(evaluation of long texts). On a GPU: SDPA, whose kernels fuse the dropout.
"""
import torch

from model.dropout import dropout as cheap_dropout

PLAIN_OR_SDPA = "plain_or_sdpa"
SHORT = 128  # tokens: up to here plain attention beat the SDPA kernel on a CPU (README, Speed)


def plain_or_sdpa(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.device.type == "cpu" and (dropout > 0 or query.shape[-2] <= SHORT):
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
