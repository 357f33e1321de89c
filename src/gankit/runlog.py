"""The run's metric log: `metrics.jsonl` (one JSON object per line) and TensorBoard events (the same metrics,
and each epoch's sample grid as an image).

Every line has `kind` (step | epoch | eval), `step` (iterations so far), `epoch` and `time`
(training seconds since the run started, continuing across resumes). Lines are appended and
flushed one at a time; on resume, lines written after the checkpoint (and a torn last line from a
crash) are dropped so the log never holds duplicates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from gankit.checkpoint import atomic_write_text


def read_metrics(path: Path) -> list[dict]:
    """All well-formed lines of a metrics.jsonl; a torn or garbled line is skipped."""
    out = []
    try:
        text = Path(path).read_text(errors="replace")
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


class RunLog:
    def __init__(self, run_dir: Path, resume_step: int | None, tensorboard: bool = True):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.file = open(self.path, "a")
        self.tb_dir = Path(run_dir) / "tensorboard"
        self.tb = None
        if tensorboard:
            self._open_tensorboard(resume_step)

    def _open_tensorboard(self, kept_step: int | None) -> None:
        """TensorBoard's writer; events after `kept_step` (from a run that went on past its checkpoint) are hidden,
        those at it kept, as in metrics.jsonl."""
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.tb_dir), purge_step=None if kept_step is None else kept_step + 1)
        except ImportError:  # tensorboard is a dependency, but keep training if it is broken
            self.tb = None

    def _truncate(self, step: int) -> None:
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def rewind(self, step: int) -> None:
        """Drop every line written after `step` (the run went back to a checkpoint taken there)."""
        self.file.close()
        self._truncate(step)
        self.file = open(self.path, "a")
        if self.tb is not None:
            self.tb.close()
            self._open_tensorboard(step)

    def write(self, kind: str, step: int, epoch: int, time: float, values: dict[str, float]) -> None:
        clean = {k: (v if isinstance(v, int) else float(v) if math.isfinite(float(v)) else None)
                 for k, v in values.items()}
        rec = {"kind": kind, "step": step, "epoch": epoch, "time": round(time, 3), **clean}
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{kind}/{k}", v, step)

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
        self.tb._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
        self.tb.flush()

    def close(self) -> None:
        if self.file.closed:
            return
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class NullLog:
    """The log of a process that writes nothing (DDP ranks other than 0)."""

    def write(self, kind: str, step: int, epoch: int, time: float, values: dict[str, float]) -> None:
        pass

    def rewind(self, step: int) -> None:
        pass

    def image(self, tag: str, path: Path, step: int) -> None:
        pass

    def close(self) -> None:
        pass
