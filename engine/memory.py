"""The C allocator, tuned for training on a CPU: freed blocks kept for reuse within an epoch, handed back to the
kernel between epochs, so a long run's memory does not grow."""
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
