"""What the command-line scripts share: bad input ends with one line and exit status 2, not a traceback; a
signal ends with one line and the shell's status for it (130 for Ctrl-C, 143 for SIGTERM)."""
import os
import sys

import torch

from data.errors import InputError
from engine.config import ConfigError
from engine.errors import Interrupted, NonFiniteLossError


def run_cli(run, *args):
    try:
        return run(*args)
    except (InputError, ConfigError, NonFiniteLossError) as e:
        fail(str(e))
    except OSError as e:  # a full disk, a read-only or missing folder: the system's own words, with the path
        where = e.filename if e.filename is not None else ""
        fail(f"{where}: {e.strerror or e}" if where else str(e.strerror or e))
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        raise SystemExit(e.exit_status) from None
    except KeyboardInterrupt:
        print("interrupted by SIGINT", file=sys.stderr)
        raise SystemExit(130) from None


def fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2) from None


def check_device(name: str) -> None:
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
