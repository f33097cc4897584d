"""How a run ends early, as exceptions `engine.cli.run_cli` turns into one line and an exit status: a loss that
became NaN (2, as for `data.errors.InputError`), a signal (130 for SIGINT, 143 for SIGTERM)."""
import signal


class NonFiniteLossError(RuntimeError):
    """The loss or the weights became NaN or infinite: the message says at which step and what to try."""


NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Interrupted(Exception):
    """The run was stopped by a signal; the message says what was saved and how to continue (`explained`: it
    says so already). `forced`: a second signal, raised in the middle of a training step, where the state is
    not whole and must not be saved."""

    def __init__(self, signum: int, message: str | None = None, forced: bool = False):
        super().__init__(message or f"interrupted by {NAMES[signum]}")
        self.signum, self.explained, self.forced = signum, message is not None, forced

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
