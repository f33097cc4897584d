"""Mixed precision: which autocast dtype to use on this device, decided at run time."""
import time

import torch

from data.errors import InputError


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """`auto`: bf16 on a GPU that has it (else fp16); on a CPU, bf16 only where it runs matmuls clearly faster
    than fp32 (AMX, AVX512-BF16); an AVX2-only CPU emulates bf16 hundreds of times slower."""
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if mode == "bf16" else torch.float16
    if mode == "fp16":
        raise InputError("--amp fp16 needs a CUDA device; on a CPU use bf16, auto or off")
    if mode == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if cpu_bf16_is_fast() else None


def trained_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a run resolved when it started, which a resumed run keeps (rather than deciding
    again, perhaps differently, on another machine), if this device can run it."""
    dtype = dtype_from_name(name)
    if dtype == torch.float16 and device.type != "cuda":
        raise InputError("this run trained with fp16 autocast, which needs a CUDA device; pass --amp bf16 or "
                         "--amp off to continue it here")
    return dtype


def inference_dtype(trained: str, device: torch.device) -> torch.dtype | None:
    """The dtype a checkpoint was validated in (so its logged metrics are reproduced), unless this device cannot
    run it well: fp16 autocast needs a GPU, and bf16 on a CPU without fast bf16 would crawl."""
    dtype = dtype_from_name(trained)
    if device.type == "cpu" and (dtype == torch.float16 or (dtype == torch.bfloat16 and not cpu_bf16_is_fast())):
        return resolve_amp("auto", device)
    return dtype


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def dtype_name(dtype: torch.dtype | None) -> str:
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def dtype_from_name(name: str) -> torch.dtype | None:
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
