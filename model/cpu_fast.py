"""The CPU fast paths, in one place, behind one switch (`--fast-paths on|off`, stored in every checkpoint).

PyTorch as it ships leaves a CPU slower than it needs to be on this workload. Each path here was measured
(README, Speed) and none changes what is computed beyond the draw of the dropout masks; each does nothing on
a GPU. With `--fast-paths off` none is used, and a run is PyTorch and transformers as they ship: stock
dropout, transformers' attention kernels (MPNet's on SDPA aside: model/mpnet_attention.py), glibc's allocator
defaults, and no bf16 autocast on a CPU unless `--amp bf16` asks for it.

1. Cheap dropout masks (`Dropout`, `cheap_dropout`). PyTorch's CPU dropout draws one 32-bit number per element from
   a Mersenne Twister, one element at a time: about 1 ms for the 170K activations of a batch of 16 tweets in
   MiniLM, 20 times a step, 10% of a training step in fp32 and 13% in bf16; on 300-token texts the
   attention-probability dropout alone made attention 3.6x slower. Here numpy's SFC64 fills 16 random bits
   per element, compared with the drop threshold. The generator is seeded from torch's RNG on every call, so
   `torch.manual_seed` and a checkpointed RNG state govern the masks as they govern `F.dropout`'s. The drop
   probability is exact to 1/65536.
2. Plain or SDPA attention, call by call (`PLAIN_OR_SDPA`, registered with transformers' AttentionInterface).
   On a CPU (MiniLM's and bert-base's head shapes, 16 to 300 tokens): with attention dropout (training),
   SDPA leaves its flash kernel for a path that draws the mask with `bernoulli_`, and plain attention with
   the cheap mask took 0.26 to 0.98 of its time; without dropout SDPA's flash kernel is the fastest (1.2x to
   5x plain attention in fp32), except in bf16 up to 128 tokens, where plain attention took 0.4 to 0.8 of
   its time.
3. A bf16 residual stream under CPU autocast (`bf16_residual_stream`).
4. Freed memory kept for reuse within an epoch and handed back between phases (`keep_freed_memory`,
   `release_freed_memory`): glibc's allocator settings.
5. The bf16 probe (`cpu_bf16_is_fast`): `--amp auto` autocasts to bf16 only on a CPU that runs it fast.
"""
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
    """Whether a run's config asks for the fast paths (runs from before the switch had them). `--compile` turns
    them off: they are eager-mode tricks (a NumPy mask, a hook) that would break torch.compile's graphs."""
    return cfg.get("fast_paths", "on") == "on" and not cfg.get("compile", False)


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


def keep_freed_memory(device="cpu") -> bool:
    """On a CPU device, lets glibc keep freed blocks of up to 32 MB for reuse instead of handing them back to
    the kernel (a GPU's memory has PyTorch's caching allocator: nothing to do).

    PyTorch's CPU allocator caches nothing, and by default glibc gives the top of its heap back to the kernel
    whenever enough of it is free and serves large blocks with fresh mappings, so each training step mapped
    its activations and gradients again and the kernel zeroed every page: 2,800 page faults a step in fp32
    and 6,300 in bf16 for MiniLM on tweets, 14 ms of system time in a 136 ms bf16 step (PyTorch's CPU tuning
    guide preloads jemalloc or tcmalloc for the same reason). Peak memory over an epoch was the same
    (1,487 MB against 1,486 MB). On an AVX2-only CPU in fp32, training steps on documents of 5 to 300 tokens
    took 1.43 s with it against 4.56 s with glibc's defaults (batch 16, 40 steps each; on tweet lengths the two
    were even there, 0.277 s against 0.278 s). Blocks over 32 MB keep their own mappings, as glibc does by default: kept in
    the heap, a freed block of one size could not serve the next request of the same size (PyTorch asks for
    64-byte alignment, which needs a little more), so repeated large blocks grew the heap without end.
    Returns whether it took (False off glibc, or for a GPU)."""
    if torch.device(device).type != "cpu":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1


def release_freed_memory(device="cpu") -> bool:
    """On a CPU device, hands the free pages inside glibc's heap back to the kernel (`malloc_trim(0)`); the
    blocks in use stay where they are. Called between training and validation and after validation: each
    phase frees blocks of sizes the other cannot reuse whole (training batches of 16 against evaluation
    batches of 64, of every length), and without this the holes add up. Training MiniLM on documents of 5 to
    300 tokens, resident memory grew from one epoch to the next (peak 4.1 GB, then 5.2 GB; bench/memory.py);
    with it, each epoch starts from the memory it needs. Within an epoch, trimming after every step too held
    the steps' peaks about a fifth lower (2.8 GB against 3.6 GB over 40 steps) but made them 30% slower (each
    step faulted its pages in again); every 20 steps changed neither. Returns whether it ran (False off glibc,
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
