"""What a command asks of this machine: a device that exists, and folders and files it can write (checked before any
work, for engine/config.py's `check_machine`)."""
import os

from data.errors import InputError


def check_device(name: str) -> None:
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: not a device (auto, cpu, cuda, cuda:1 ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); "
                         "use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--device {name}: use auto, cpu or cuda[:N]")


def check_writable_folder(path: str, flag: str) -> None:
    """A folder that exists and can be written, or that can be created."""
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing) or "."
    if not os.path.isdir(existing):
        raise InputError(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: {existing} is not writable")


def check_output_file(path: str | None, flag: str) -> None:
    """A file to write: not a folder, in a folder that exists or can be made."""
    if path is None:
        return
    if os.path.isdir(path):
        raise InputError(f"{flag} {path}: is a folder; name a file")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), flag)
