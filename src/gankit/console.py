"""Messages for people: warnings and notes on stderr, one line each; under torchrun only the first process (RANK 0)
speaks, since every process would say the same. Progress of long work: a tqdm bar on a terminal, plain lines
elsewhere."""

import contextlib
import os
import re
import sys
import time

LINE_EVERY = 30.0  # seconds between two progress lines when stderr is not a terminal
MAX_NAMED = 5  # names a message lists before it says "and N more"
ELLIPSIS = "\u2026"
#: The most characters of a path that a message shows (`short_path`): one too long for the file system has thousands.
MAX_PATH_SHOWN = 200


def printable(text: str, mark: str = "\ufffd") -> str:
    """`text` with the characters UTF-8 cannot hold as `mark`: a file name whose bytes are in another encoding (a
    Latin-1 folder name copied from an old Windows disk) reaches Python as lone surrogates, which a plot title, an
    HTML page or a UTF-8 file refuses."""
    return re.sub("[\ud800-\udfff]", mark, text)


def harmless(text: str) -> str:
    """`text` with its control characters but newline and tab written as escapes (`\\x1b`): a file name from someone
    else's archive or download may hold a terminal's escape sequences (clear the screen, rewrite the title), which a
    message that names it must show, not send."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", lambda m: ascii(m[0])[1:-1], text)


def speaks() -> bool:
    """False on torchrun's processes other than the first (read from RANK, so also before the process group)."""
    return os.environ.get("RANK", "0") == "0"


def speaks_on_its_machine() -> bool:
    """True on the first process (RANK 0) and on the first of each other machine (LOCAL_RANK 0): an error that may be
    one machine's own (its copy of the data is missing) is then said on that machine's terminal too."""
    return speaks() or os.environ.get("LOCAL_RANK") == "0"


_muted = 0  # depth of `muted` blocks


def warn(message: str) -> None:
    if speaks() and not _muted:
        _say(f"warning: {harmless(message)}")


def info(message: str) -> None:
    if speaks() and not _muted:
        _say(harmless(message))


def _say(line: str) -> None:
    """`line` on stderr, on a line of its own: a progress bar on the terminal (tqdm's, which keeps its cursor at the
    bar's end) is cleared first and drawn again below it; a line said mid-training (a thread count, an epoch's FID)
    was glued to the bar ("r epoch 10:  25%|#| 1/4 [00:00<00:02, training on 1 CPU thread ...")."""
    tqdm = sys.modules.get("tqdm")  # (no bar without it: not imported for a message)
    with tqdm.tqdm.external_write_mode(file=sys.stderr) if tqdm else contextlib.nullcontext():
        print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def muted(mute: bool = True):
    """Inside it (when `mute`), `warn` and `info` say nothing: for messages another command already said, where they
    do not matter (errors are raised as ever)."""
    global _muted
    _muted += mute
    try:
        yield
    finally:
        _muted -= mute


def terminal_gone() -> None:
    """The terminal hung up (an ssh connection dropped, a window closed): point stdout and stderr, where they went
    to it, at /dev/null, so that the progress bar and the last messages cannot fail the run while it saves."""
    import errno

    try:
        import termios  # (POSIX, as SIGHUP is)
    except ImportError:  # Windows: no hang-up to tell from another failure; the write that failed is dropped
        return

    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        try:
            termios.tcgetattr(fd)
            terminal = True  # a terminal still there: the hang-up says it is going
        except termios.error as e:  # a hung-up one fails with EIO (`os.isatty` just says False then)
            terminal = e.args[0] == errno.EIO  # ENOTTY, EBADF: a file, a pipe, closed: left as it is
        if terminal:
            os.dup2(null, fd)
    os.close(null)


def _reader_gone(stream) -> None:
    """Nothing reads `stream`'s pipe any more (`gankit train ... 2>&1 | head`, a `tee` that went with its terminal
    while `nohup` kept gankit running): point its fd at /dev/null, so that the command goes on without a reader (a
    training's numbers stay in its run folder, metrics.jsonl) instead of click ending it at once with exit 1 and
    no word."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # a stream of Python's own (a notebook's): its failed write is dropped
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


class _Output:
    """sys.stdout or sys.stderr: a write that fails because the terminal hung up (EIO, before its SIGHUP comes) sends
    the output to /dev/null instead of raising in the middle of a training step, and so does one to a pipe that
    nothing reads any more (EPIPE); other failures off a terminal (a full disk under a log file) still raise."""

    def __init__(self, stream, terminal: bool):
        self._stream, self._terminal = stream, terminal

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as e:
            self._failed(e)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            self._failed(e)

    def _failed(self, e: OSError) -> None:
        if isinstance(e, BrokenPipeError):
            _reader_gone(self._stream)
        elif self._terminal:
            terminal_gone()
        else:
            raise e

    def __getattr__(self, name):
        return getattr(self._stream, name)


def guard_terminal() -> None:
    """Wrap sys.stdout and sys.stderr in `_Output` (once, at the command's start)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, _Output):
            continue
        try:
            tty = stream.isatty()
        except (OSError, ValueError):
            tty = False
        setattr(sys, name, _Output(stream, tty))


def guard_encoding() -> None:
    """Make sys.stdout write what its encoding cannot as escapes (`\\u30dd`), as Python's stderr does, instead of
    raising: Windows writes a file or a pipe (`gankit train ... > log.txt`) in its ANSI code page (cp1252), where a
    Japanese run name failed the command at its last line, after the work was done."""
    stream = sys.stdout
    if stream is not None and getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="backslashreplace")


def count(n: int, noun: str) -> str:
    """'1 image', '3 images', '20,331 files' (thousands separated, as progress bars and lines count)."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def short_list(names: list[str]) -> str:
    """The first MAX_NAMED names, then how many more."""
    shown = ", ".join(names[:MAX_NAMED])
    return shown if len(names) <= MAX_NAMED else f"{shown} and {len(names) - MAX_NAMED} more"


def cut_middle(text: str, keep: int) -> str:
    """`text` with its middle cut out for an ellipsis so that `keep` of its characters remain, the first and the last
    ('wgan_clip_a_ver\u2026cope_with_it_xx'); whole when it has no more."""
    return text if keep >= len(text) else text[:(keep + 1) // 2] + ELLIPSIS + text[len(text) - keep // 2:]


def short_path(path) -> str:
    """`path` as a message shows it: whole, or its start and its end with an ellipsis between (at most
    MAX_PATH_SHOWN characters) where it is longer: a path too long for the file system made an error line of 5000."""
    return cut_middle(str(path), MAX_PATH_SHOWN - 1)


def clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def draws_bars() -> bool:
    """Whether stderr is a terminal to draw progress bars on. A pseudo-terminal that nothing gave a size (0 columns:
    `script` or `docker run -t` started from a job, not from a terminal), or only a width (0 rows: tqdm leaves out the
    bars below the screen's last row), shows tqdm's bars as nothing at all: it gets the plain lines of a log file."""
    if not sys.stderr.isatty():
        return False
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        return size.columns > 0 and size.lines > 0
    except (OSError, ValueError):  # a terminal that does not say its size: tqdm's own default width
        return True


def progress(total: int, desc: str, unit: str, enabled: bool = True, delay: float | None = None):
    """A progress counter for `total` units of work (`.update(n)`, a context manager): a tqdm bar on a terminal
    (gone when done); into a log file or a pipe, where a bar's redraws would pile up into one endless line, a plain
    line at most every LINE_EVERY seconds; nothing when disabled or on a process that does not speak. `delay`: the
    seconds before anything shows, for work that is often over sooner (by default a bar shows at once, the first
    line after LINE_EVERY seconds)."""
    from tqdm import tqdm

    if not enabled or not speaks():
        return tqdm(total=total, disable=True)
    desc = harmless(desc)  # (a data folder's name)
    if not draws_bars():
        return _Lines(total, desc, unit, delay)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True, delay=delay or 0)


class _Lines:
    """Off a terminal: `desc: n/total unit (p%), m:ss in, about m:ss left`, at most every LINE_EVERY seconds (the
    first after `first` seconds, where given)."""

    def __init__(self, total: int, desc: str, unit: str, first: float | None = None):
        self.total, self.desc, self.unit, self.n, self.first = total, desc, unit, 0, first
        self.start = self.last = time.monotonic()
        self.said = False  # a line yet

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        wait = LINE_EVERY if self.first is None or self.said else self.first
        if now - self.last >= wait and self.n < self.total:
            self.last, self.said = now, True
            spent = now - self.start
            left = f", about {clock(spent * (self.total - self.n) / self.n)} left" if self.n else ""
            info(f"{self.desc}: {self.n:,}/{self.total:,} {self.unit} ({self.n / self.total:.0%}), {clock(spent)} in{left}")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
