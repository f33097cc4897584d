"""The C allocator, tuned for training on a CPU."""
import ctypes
import ctypes.util

import torch

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
    (1,487 MB against 1,486 MB). Blocks over 32 MB keep their own mappings, as glibc does by default: kept in
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
