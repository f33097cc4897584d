"""Ctrl-C and SIGTERM during training: stop at the next optimizer step, save a resumable last.pt, end with
one line and the shell's exit status for the signal (130, 143)."""
import signal
from contextlib import contextmanager

import torch.distributed as dist

from engine.distributed import sum_over_ranks
from engine.errors import NAMES, Interrupted


class StopSignals:
    """While installed, SIGINT and SIGTERM are noted rather than acted on at once inside `deferred()` (the
    training batches: the loop checks `requested()` after each optimizer step, where the state is whole and
    can be saved); anywhere else, or at a second signal, they raise `Interrupted` at once."""

    def __init__(self):
        self.received = None
        self.deferring = False
        self._previous = {}

    def __enter__(self):
        for signum in NAMES:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave the signals alone
                pass
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        again = self.received is not None
        self.received = signum
        if again or not self.deferring:
            raise Interrupted(signum, forced=self.deferring)

    @contextmanager
    def deferred(self):
        """A signal in here is noted, and acted on once the block has run (a second one at once, `forced`)."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False

    def check(self) -> None:
        """Raise `Interrupted` for a signal already received: where its handler's exception was swallowed (raised
        inside a `__del__` that the garbage collector ran, say), work must not be committed as if none came."""
        if self.received is not None:
            raise Interrupted(self.received)

    def requested(self, collective: bool = False) -> int | None:
        """The signal received, if any. With `collective`, under DDP every rank learns whether any rank got
        one (a collective call: every rank must make it at the same step)."""
        if collective and dist.is_initialized() and dist.get_world_size() > 1:
            if sum_over_ranks(float(self.received is not None)) > 0:
                return self.received or signal.SIGTERM
            return None
        return self.received
