"""How this process was launched (alone, or by torchrun), and what to type to resume a run: torch-free, so that
`gankit compare` can say how to resume a run stopped before its end without importing torch (gankit.distributed
re-exports them)."""

from __future__ import annotations

import os
import shlex


def launched() -> bool:
    """True when this process is one of several started by torchrun (WORLD_SIZE > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def run_option() -> str:
    """The run-folder flag for messages to name: after `-m gankit train`, torchrun reads `--run` as an abbreviation
    of its own `--run-path` and stops with "ambiguous option", so under torchrun it is `--run-dir`."""
    return "--run-dir" if launched() else "--run"


def resume_command(run_dir) -> str:
    """What to type to resume the run in `run_dir` (quoted for the shell: a name with a space pastes as one)."""
    if launched():
        return f"the same torchrun command (with --run-dir {shlex.quote(str(run_dir))})"
    return f"gankit train --run {shlex.quote(str(run_dir))}"
