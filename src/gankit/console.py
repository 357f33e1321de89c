"""Messages for people: warnings and notes on stderr, one line each; under torchrun only the first process (RANK 0)
speaks, since every process would say the same."""

import os
import sys


def speaks() -> bool:
    """False on torchrun's processes other than the first (read from RANK, so also before the process group)."""
    return os.environ.get("RANK", "0") == "0"


def warn(message: str) -> None:
    if speaks():
        print(f"warning: {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    if speaks():
        print(message, file=sys.stderr, flush=True)
