"""User-facing errors: one line saying what is wrong and how to fix it.

The command line prints `error: <message>` and exits with status 2 for any `GankitError`;
library code raises the most specific subclass so callers can tell them apart.
"""


class GankitError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ConfigError(GankitError):
    """A configuration key or value is invalid."""


class DataError(GankitError):
    """A dataset folder, image or label file cannot be used."""


class RunError(GankitError):
    """A run folder or checkpoint cannot be used."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a command. Its message, printed as the command ends, says what was kept; an empty one means
    the command has already said it (the trainer names the checkpoint it saved). `exit_code` follows the shell's
    128 + signal number: 130 for Ctrl-C (SIGINT), 143 for a scheduler's SIGTERM, 129 for a hang-up (SIGHUP), so a
    job script can tell a preemption from a Ctrl-C."""

    def __init__(self, *args, exit_code: int = 130):
        super().__init__(*args)
        self.exit_code = exit_code
