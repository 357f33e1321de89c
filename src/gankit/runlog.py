"""The run's metric log: `metrics.jsonl` (one JSON object per line) and TensorBoard events (the same metrics,
and each epoch's sample grid as an image).

Every line has `kind` (step | epoch | eval | event: a NaN rollback), `step` (iterations so far), `epoch` and `time`
(training seconds since the run started, continuing across resumes); a step line also has `epochs_done`, where
training stands in epochs (fractional: batches consumed over batches per epoch), which `epoch` (the epoch under way,
a whole number) does not say inside an epoch. Lines are appended and
flushed one at a time; on resume, lines written after the checkpoint (and a torn last line from a
crash) are dropped so the log never holds duplicates.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

from gankit import console, distributed
from gankit.checkpoint import atomic_write_text, write_hint
from gankit.errors import RunError
from gankit.layout import METRICS_FILE, TENSORBOARD_DIR


def _quiet_tensorboard_threads() -> None:
    """TensorBoard writes from a thread of its own, which prints a raw traceback when a write fails (a full disk)
    before the next call in the training thread raises the same error (`RunLog._tb` turns that into a warning)."""
    previous = threading.excepthook
    if getattr(previous, "gankit", False):
        return

    def hook(args) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError)):
            previous(args)

    hook.gankit = True
    threading.excepthook = hook


def _event_files(folder: Path) -> list[str]:
    """The names of TensorBoard's event files in `folder`."""
    try:
        return sorted(p.name for p in folder.iterdir() if "tfevents" in p.name)
    except OSError:
        return []


def _event_second(name: str) -> int:
    """The second an event file was opened at, from its name (events.out.tfevents.<second>.<host>...)."""
    try:
        return int(name.split("tfevents.", 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return 0


def read_metrics(path: Path) -> list[dict]:
    """All well-formed lines of a metrics.jsonl; a torn or garbled line is skipped."""
    out = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def json_number(v) -> int | float | None:
    """A value as metrics.jsonl holds it, strict JSON: an int as it is, any other number (a tensor's, numpy's) as a
    float, null where it is not finite (NaN, infinity), which JSON has no word for."""
    return v if isinstance(v, int) else float(v) if math.isfinite(float(v)) else None


class RunLog:
    """metrics.jsonl, which the run cannot go on without (a line it cannot write is a RunError that says how to
    resume), and TensorBoard's events, which it can: a TensorBoard that cannot be imported or written is one warning
    and the run goes on without it."""

    def __init__(self, run_dir: Path, resume_step: int | None, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(run_dir) / METRICS_FILE
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.file = open(self.path, "a", encoding="utf-8")
        self.tb_dir = Path(run_dir) / TENSORBOARD_DIR
        self.tb = None
        self._config: tuple[str, str, int] | None = None  # what `config` wrote: written again after a `rewind` past it
        if tensorboard:  # a new run: none kept (those of an attempt that died before its first checkpoint)
            self._open_tensorboard(-1 if resume_step is None else resume_step)

    def _open_tensorboard(self, kept_step: int) -> None:
        """TensorBoard's writer; events after `kept_step` (from a run that went on past its checkpoint) are hidden,
        those at it kept, as in metrics.jsonl."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard is a dependency, but keep training if it is broken
            console.warn(f"TensorBoard cannot be imported ({e}): this run goes on without its TensorBoard log "
                         "(metrics.jsonl has every value); pip install tensorboard to have it")
            return
        _quiet_tensorboard_threads()
        before = _event_files(self.tb_dir)
        self._tb(lambda: setattr(self, "tb", SummaryWriter(str(self.tb_dir), purge_step=kept_step + 1)))
        new = sorted(set(_event_files(self.tb_dir)) - set(before))
        if self.tb is not None and new and before and max(before) > new[0]:
            # TensorBoard reads a run's event files in name order, and a name is the second, host, process id and a
            # counter that is not zero-padded: in the second of the last one (a resume or a rollback), 'pid.10'
            # sorts before 'pid.9' and the purge of what came after the checkpoint would be read first. A name of
            # the next second sorts after.
            self._tb(self.tb.close)
            (self.tb_dir / new[0]).unlink(missing_ok=True)
            time.sleep(max(0.0, min(3.0, _event_second(max(before)) + 1 - time.time())))
            self._tb(lambda: setattr(self, "tb", SummaryWriter(str(self.tb_dir), purge_step=kept_step + 1)))

    def _tb(self, call) -> None:
        """A call to TensorBoard's writer; one that fails drops the writer with one warning."""
        try:
            call()
        except Exception as e:  # noqa: BLE001  (OSError from its thread, or anything of a broken install)
            writer, self.tb = self.tb, None
            reason = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
            console.warn(f"TensorBoard's log in '{self.tb_dir}' cannot be written ({reason}): this run goes on "
                         "without it (metrics.jsonl has every value)")
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001
                    pass

    def _truncate(self, step: int) -> None:
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def rewind(self, step: int) -> None:
        """Drop every line written after `step` (the run went back to a checkpoint taken there)."""
        self.file.close()
        self._truncate(step)
        self.file = open(self.path, "a", encoding="utf-8")
        if self.tb is not None:
            self._tb(self.tb.close)
            self._open_tensorboard(step)
            if self._config is not None and self._config[2] > step:  # hidden with what came after `step`
                self.config(*self._config[:2], step + 1)

    def config(self, text: str, recipe: str, step: int) -> None:
        """The run's config.yaml `text` and its `recipe` lines (`config.recipe_line`) in TensorBoard's Text tab, at
        `step` (tags config/yaml/text_summary and config/recipe/text_summary: add_text adds the suffix)."""
        self._config = (text, recipe, step)
        if self.tb is None:
            return
        yaml_block = "".join(f"    {line}\n" for line in text.splitlines())  # indented: Markdown's code block

        def add() -> None:
            self.tb.add_text("config/yaml", yaml_block, step)
            self.tb.add_text("config/recipe", "  \n".join(f"`{line}`" for line in recipe.splitlines()), step)  # Markdown: a line each
            self.tb.flush()

        self._tb(add)

    def write(self, kind: str, step: int, epoch: int, time: float, values: dict[str, float],
              epochs_done: float | None = None) -> None:
        """One line of `values`, placed by `step`, `epoch`, `time` and, when given, `epochs_done` (an axis as those
        are: in metrics.jsonl only, not a TensorBoard scalar)."""
        clean = {k: json_number(v) for k, v in values.items()}
        axes = {} if epochs_done is None else {"epochs_done": round(epochs_done, 6)}
        rec = {"kind": kind, "step": step, "epoch": epoch, **axes, "time": round(time, 3), **clean}
        try:
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()
        except OSError as e:
            raise RunError(f"could not write '{self.path}' ({e.strerror or e}): {write_hint(e)}, then resume with "
                           f"{distributed.resume_command(self.run_dir)}") from None
        if self.tb is not None:
            self._tb(lambda: [self.tb.add_scalar(f"{kind}/{k}", v, step) for k, v in values.items()])

    def image(self, tag: str, path: Path, step: int) -> None:
        """A PNG the run wrote (an epoch's sample grid) into TensorBoard's Images tab, as its own bytes: not decoded
        and encoded again by `add_image` (which took as long as writing the grid: ~0.1 s for 64 images of 64 px)."""
        if self.tb is None:
            return
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        with Image.open(path) as im:  # the header only: size and channels
            size, channels = im.size, len(im.getbands())
        png = Path(path).read_bytes()
        image = Summary.Image(height=size[1], width=size[0], colorspace=channels, encoded_image_string=png)

        def add() -> None:
            self.tb._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
            self.tb.flush()

        self._tb(add)

    def close(self) -> None:
        if self.file.closed:
            return
        try:
            self.file.close()
        finally:
            if self.tb is not None:
                self._tb(self.tb.close)


class NullLog:
    """The log of a process that writes nothing (DDP ranks other than 0)."""

    def write(self, kind: str, step: int, epoch: int, time: float, values: dict[str, float],
              epochs_done: float | None = None) -> None:
        pass

    def rewind(self, step: int) -> None:
        pass

    def config(self, text: str, recipe: str, step: int) -> None:
        pass

    def image(self, tag: str, path: Path, step: int) -> None:
        pass

    def close(self) -> None:
        pass
