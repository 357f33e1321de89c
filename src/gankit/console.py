"""Messages for people: warnings and notes on stderr, one line each."""

import sys


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
