"""Argument checks shared by the benchmark scripts: bad input ends in one `error:` line with exit status 2, as in
gankit's own command line, before any work starts; gankit's own input errors (a missing dataset, an unknown config
key) and unwritable paths end the same way. Ctrl-C and SIGTERM end in one line too, after the scripts' cleanups
(their child processes stopped, temporary folders removed); results files are written whole or not at all."""

from __future__ import annotations

import argparse
import sys
import tempfile
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


def writable_folder(text: str) -> Path:
    """An argparse type: a folder that can be written in (checked before a long run, not after it), left as it was:
    the folders made for the check are removed again."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{path}' is a file: pass a folder name")
    made = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write in '{path}': {e.strerror or e}")
    finally:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                break
    return path


def write_json(path: Path, results: dict, indent: int = 2) -> None:
    """Write the results to `path` whole (through a temporary file): an interrupted run leaves no half a file."""
    import json

    from gankit.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(results, indent=indent))


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's main(); gankit's input errors and OS errors become one line on stderr, exit 2; Ctrl-C and
    SIGTERM (as `gankit` takes them) one line saying so, exit 130 or 143, with nothing written."""
    from gankit.cli import _fail, _sigterm_stops_the_command  # gankit's own one-line error and SIGTERM
    from gankit.errors import GankitError

    try:
        with _sigterm_stops_the_command():
            main()
    except KeyboardInterrupt as e:
        said = str(e) or "interrupted: stopped before it finished"
        print(f"{said}; no results written", file=sys.stderr, flush=True)
        sys.exit(getattr(e, "exit_code", 130))
    except GankitError as e:
        _fail(str(e), 2)
    except OSError as e:
        _fail(f"'{e.filename}': {e.strerror}" if e.filename else str(e), 2)
