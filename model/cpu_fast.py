"""The CPU fast paths, in one place, behind one switch (`--fast-paths on|off`, stored in every checkpoint): cheap
dropout masks (`Dropout`), plain or SDPA attention chosen call by call (`PLAIN_OR_SDPA`), a bf16 residual stream
under CPU autocast, freed memory kept for reuse within an epoch (`keep_freed_memory`, `release_freed_memory`),
and the bf16 probe of `--amp auto` (`cpu_bf16_is_fast`). Each removes a cost PyTorch as it ships pays on a CPU
(measured in docs/results.md, Speed and Memory); none changes what is computed beyond the draw of the dropout
masks, and each does nothing on a GPU. With `--fast-paths off` a run is PyTorch and transformers as they ship."""
import ctypes
import ctypes.util
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SWITCH = ("on", "off")


def enabled(cfg: dict) -> bool:
    """Whether a run's config asks for the fast paths (runs from before the switch had them). A compiled run
    (`compiled`, what --compile resolved to) has them off: they are eager-mode tricks (a NumPy mask, a hook) that
    would break torch.compile's graphs."""
    return cfg["fast_paths"] == "on" and cfg["compiled"] in ("off", None)


def keep_mask(shape, p: float) -> torch.Tensor:
    """A uint8 tensor of `shape`, 1 with probability 1 - p (to within 1/65536), on the CPU."""
    n = math.prod(shape)
    seed = int(torch.randint(0, 2 ** 62, ()).item())
    bits = np.random.SFC64(seed).random_raw(-(-n // 4)).view(np.int16)[:n]
    # 16 uniform random bits read as int16 are uniform over [-32768, 32767]: exactly p of them fall below
    # the threshold (to within 1/65536).
    keep = bits >= round(p * 65536) - 32768
    return torch.from_numpy(keep.view(np.uint8)).view(shape)


def cheap_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or p >= 1:
        return F.dropout(x, p, True)
    return x * keep_mask(x.shape, p).to(x.dtype).mul_(1 / (1 - p))


class Dropout(nn.Dropout):
    """`nn.Dropout` with the cheap CPU mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cheap_dropout(x, self.p, self.training)


def use_fast_dropout(module: nn.Module) -> nn.Module:
    """Turns every plain `nn.Dropout` inside `module` into a `Dropout` of the same probability (in place)."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p, child.inplace))
    return module


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
    scores = torch.matmul(query, key.transpose(2, 3))
    # mask + scaling * scores in one pass over the (batch, heads, length, length) scores, not two
    scores = scores * scaling if attention_mask is None else torch.add(attention_mask, scores, alpha=scaling)
    probs = cheap_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def register_plain_or_sdpa() -> None:
    """Makes `attn_implementation=PLAIN_OR_SDPA` known to transformers, with the additive float mask plain attention
    needs (SDPA takes it too). Idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(PLAIN_OR_SDPA, plain_or_sdpa)
    AttentionMaskInterface.register(PLAIN_OR_SDPA, eager_mask)


def bf16_residual_stream(module, inputs, output):
    """Under CPU autocast, the embeddings' output in the autocast dtype (bf16). Left in fp32, it makes every
    residual add of every layer fp32 again, and autocast then casts each sublayer's input down and its
    gradient back: 60 casts a step; without them a bf16 training step of MiniLM spent 15 ms instead of 33 ms
    in casts and copies. (On a GPU LayerNorm autocasts to fp32 anyway, so this would only add casts there.)"""
    if output.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return output.to(torch.get_autocast_dtype("cpu"))
    return None


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's own upper bound for its adaptive threshold on 64-bit


def prepare(cfg: dict, device) -> None:
    """What a run or an evaluation with the fast paths on does before its first batch: freed memory kept for reuse."""
    if enabled(cfg):
        keep_freed_memory(device)


def keep_freed_memory(device="cpu") -> bool:
    """On a CPU device, lets glibc keep freed blocks of up to 32 MB for reuse instead of handing them back to the
    kernel, which made every training step fault its activations in again (docs/results.md, Speed); larger blocks
    keep their own mappings, as a heap of them would grow without end. Returns whether it took (False off glibc,
    or for a GPU, whose memory has PyTorch's caching allocator)."""
    if torch.device(device).type != "cpu":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1


def release_freed_memory(device="cpu") -> bool:
    """On a CPU device, hands the free pages inside glibc's heap back to the kernel (`malloc_trim(0)`), between
    training and validation and after validation: each phase frees blocks the other cannot reuse, and without it
    resident memory grew from epoch to epoch (docs/results.md, Memory). Returns whether it ran (False off glibc,
    or for a GPU)."""
    if torch.device(device).type != "cpu":
        return False
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def cpu_bf16_is_fast() -> bool:
    """bf16 autocast pays on a CPU whose bf16 matmul is clearly faster than fp32 (AMX: ~6x, AVX512-BF16: ~2x)."""
    return cpu_bf16_speedup() > 1.3


def cpu_bf16_speedup(size: int = 512, repeats: int = 10) -> float:
    """Time of an fp32 matmul over a bf16 one of the same size on this CPU (a few milliseconds)."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return 0.0
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        seconds[dtype] = time.perf_counter() - start
    return seconds[torch.float32] / seconds[torch.bfloat16]
