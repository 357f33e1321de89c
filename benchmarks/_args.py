"""Argument checks shared by the benchmark scripts: bad input ends in one `error:` line with exit status 2, as in
gankit's own command line, before any work starts; gankit's own input errors (a missing dataset, an unknown config
key) and unwritable paths end the same way."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def at_least(minimum: float, kind: type = int) -> Callable[[str], float]:
    """An argparse type: a number of `kind` >= minimum."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if not value >= minimum:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value
    return parse


def positive(text: str) -> float:
    """An argparse type: a finite number > 0 (minutes, seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {text}")
    return value


def number_list(kind: type = int, minimum: float = 1) -> Callable[[str], list]:
    """An argparse type: a comma list of numbers >= minimum, e.g. 32,64,128."""
    one = at_least(minimum, kind)

    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",")]
        if not text.strip() or any(not t for t in items):
            raise argparse.ArgumentTypeError(f"expected a comma list such as 32,64, got {text!r}")
        return [one(t) for t in items]
    return parse


def writable_file(text: str) -> Path:
    """An argparse type: a file that can be written (checked before a long run, not after it), left as it was: an
    existing file is opened for appending, a new one created and removed again."""
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder '{path.parent}' does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{path}' is a folder: pass a file name")
    existed = path.exists()
    try:
        with open(path, "a" if existed else "x"):
            pass
        if not existed:
            path.unlink()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write '{path}': {e.strerror or e}")
    return path


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's main(); gankit's input errors and OS errors become one line on stderr, exit 2."""
    from gankit.cli import _fail  # gankit's own one-line error
    from gankit.errors import GankitError

    try:
        main()
    except GankitError as e:
        _fail(str(e), 2)
    except OSError as e:
        _fail(f"'{e.filename}': {e.strerror}" if e.filename else str(e), 2)
