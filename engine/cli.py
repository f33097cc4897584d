"""What the command-line scripts share: bad input ends with one line and exit status 2, not a traceback; a
signal ends with one line and the shell's status for it (130 for Ctrl-C, 143 for SIGTERM)."""
import sys

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
