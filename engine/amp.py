"""Mixed precision: which autocast dtype to use on this device, decided at run time."""
import torch

from data.errors import InputError
from model.cpu_fast import cpu_bf16_is_fast


def resolve_amp(mode: str, device: torch.device, fast_paths: bool = True) -> torch.dtype | None:
    """`auto`: bf16 on a GPU that has it (else fp16); on a CPU, with the fast paths (`model.cpu_fast`), bf16
    only where it runs matmuls clearly faster than fp32 (AMX, AVX512-BF16; an AVX2-only CPU emulates bf16
    hundreds of times slower), and without them fp32."""
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
    return torch.bfloat16 if fast_paths and cpu_bf16_is_fast() else None


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def dtype_name(dtype: torch.dtype | None) -> str:
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def dtype_from_name(name: str) -> torch.dtype | None:
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
