"""Data-parallel helpers: one process per device, started by torchrun (RANK / WORLD_SIZE / LOCAL_RANK)."""
import os

import numpy as np
import torch
import torch.distributed as dist


def init_distributed(device_arg: str) -> tuple[torch.device, int, int]:
    """(device, rank, world size); a single process when not started by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_arg)
    if world_size > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world_size


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def gather_rows(array: np.ndarray) -> np.ndarray:
    """Concatenate the rows every rank holds (ranks may hold different numbers of rows)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return array
    return np.concatenate(all_gather_objects(array))


def all_gather_objects(value) -> list:
    """Every rank's `value`, in rank order (a collective call: every rank makes it)."""
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def sum_over_ranks(value: float) -> float:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item()


def average(value: float) -> float:
    return sum_over_ranks(value) / (dist.get_world_size() if dist.is_initialized() else 1)


def barrier():
    if dist.is_initialized():
        dist.barrier()


def cleanup():
    if dist.is_initialized():
        dist.destroy_process_group()
