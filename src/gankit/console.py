"""Messages for people: warnings and notes on stderr, one line each; under torchrun only the first process (RANK 0)
speaks, since every process would say the same."""

import os
import sys


def _speaks() -> bool:
    return os.environ.get("RANK", "0") == "0"


def warn(message: str) -> None:
    if _speaks():
        print(f"warning: {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    if _speaks():
        print(message, file=sys.stderr, flush=True)
