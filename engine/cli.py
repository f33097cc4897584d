"""What the command-line scripts share: bad input ends with one line and exit status 2, not a traceback."""
import sys

from data.errors import InputError
from engine.loop import NonFiniteLossError


def run_cli(run, *args):
    try:
        return run(*args)
    except (InputError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
