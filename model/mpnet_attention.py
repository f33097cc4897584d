"""MPNet's self-attention on SDPA (or on the CPU's plain-or-SDPA kernel), which transformers 5 does not give it.

MPNet (all-mpnet-base-v2, our base-size encoder) adds a learned relative-position bias to every layer's
attention scores, and transformers runs it only as eager attention: scores divided by sqrt(head size), the bias
and the padding mask added in two more passes over a (batch, heads, length, length) tensor, a softmax, a
dropout and two batched products. Here the bias and the mask are summed in one pass and handed to PyTorch's
`scaled_dot_product_attention` as its float mask (its fused kernels scale the scores themselves), or, on a CPU
with the fast paths, to `cpu_fast.plain_or_sdpa`, which uses plain attention with the cheap dropout mask while
training. Same arithmetic, one rounding apart; the bias still learns, through the mask's gradient. Not a CPU
fast path: GPUs gain too, and `--fast-paths off` keeps it; `--attention eager` gives MPNet its own attention."""
import types

from torch import nn

from model.cpu_fast import PLAIN_OR_SDPA, plain_or_sdpa

KERNELS = ("sdpa", PLAIN_OR_SDPA)


def self_attention_forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False,
                           **kwargs):
    """MPNetSelfAttention.forward with `self.attention_kernel` in place of eager attention (no attention probabilities
    are returned: nothing here asks for them)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
    query, key, value = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.q, self.k, self.v))
    bias = position_bias
    if attention_mask is not None:
        bias = attention_mask if bias is None else bias + attention_mask
    if bias is not None:
        bias = bias.to(query.dtype)
    attend = plain_or_sdpa if self.attention_kernel == PLAIN_OR_SDPA else sdpa_attention_forward
    dropout = self.dropout.p if self.training else 0.0
    context, _ = attend(self, query, key, value, bias, scaling=self.attention_head_size ** -0.5, dropout=dropout)
    return (self.o(context.reshape(*hidden_states.shape[:-1], self.all_head_size)),)


def use_fused_attention(encoder: nn.Module, kernel: str) -> bool:
    """Gives each MPNet self-attention of `encoder` the attention kernel `kernel` (one of KERNELS); returns whether
    the encoder had any (other families are left as they are)."""
    from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

    if kernel not in KERNELS:
        return False
    found = False
    for module in encoder.modules():
        if isinstance(module, MPNetSelfAttention):
            module.attention_kernel = kernel
            module.is_causal = False  # transformers' SDPA wrapper assumes causal attention unless told
            module.forward = types.MethodType(self_attention_forward, module)
            found = True
    return found


def fused_kernel(encoder: nn.Module) -> str | None:
    """The kernel `use_fused_attention` gave this encoder, or None."""
    return next((m.attention_kernel for m in encoder.modules() if hasattr(m, "attention_kernel")), None)

