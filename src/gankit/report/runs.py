"""Read a run folder written by `gankit train`: its config, its metrics and its sample grids.

The reader is tolerant, because it runs beside a live (or crashed) training loop: a torn or garbled
line in `metrics.jsonl` is skipped, missing files give empty fields, and a resumed run that logged some
steps twice is cleaned by `Run.lines`, which keeps only the lines of the latest attempt.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gankit.config import kid_spread_is_none
from gankit.errors import RunError
from gankit.layout import CONFIG_FILE, METRICS_FILE, SAMPLES_DIR

SAMPLE_RE = re.compile(r"^epoch_(\d+)\.png$")
#: Every grid a run writes: an epoch's, at its end, or inside it after batch B (epoch_NNNN_batch_BBBB.png,
#: log.grids_per_epoch > 1).
GRID_RE = re.compile(r"^epoch_(\d+)(?:_batch_(\d+))?\.png$")

#: Keys that place a metrics line in training, axes rather than metrics: every line has step, epoch and time, and
#: step and eval lines the epochs done (`epochs_done`, fractional; lines of a gankit before it have none).
AXIS_KEYS = ("step", "epoch", "time", "epochs_done")


@dataclass(frozen=True)
class BestEval:
    """The evaluation with the lowest FID, and when in training it was reached."""

    fid: float
    epoch: int  # the epoch it ended, or, `unfinished`, the one a budget or a stop ended the run inside
    step: int
    time: float  # seconds of training wall-clock
    kid_mean: float | None = None
    kid_std: float | None = None
    at: float | None = None  # where in training, in epochs (fractional; `Run.eval_epochs`): 20.3 inside epoch 21
    unfinished: bool = False

    @property
    def share(self) -> float | None:
        """The share of the unfinished epoch `epoch` trained when it was reached; None at an epoch's end, or where it
        was not measured (the first epoch of a gankit before `epochs_done`)."""
        share = self.at - (self.epoch - 1) if self.unfinished and self.at is not None else math.nan
        return share if 0 < share < 1 else None  # (NaN compares False)


@dataclass
class Run:
    """Everything the report needs from one run folder."""

    path: Path
    name: str
    config: dict
    metrics: list[dict] = field(default_factory=list)  # every readable line, in file order
    samples: list[Path] = field(default_factory=list)  # samples/epoch_NNNN.png sorted by epoch
    best: BestEval | None = None
    final_grid: Path | None = None
    config_problem: str = ""  # why config.yaml could not be read, when `load_run` was told to go on without it
    _kept: dict = field(default_factory=dict, repr=False, compare=False)  # what `_kept_for` keeps

    @property
    def sample_epochs(self) -> list[int]:
        """The epoch of each entry in `samples`."""
        return [sample_epoch(p) for p in self.samples]

    def lines(self, kind: str) -> list[dict]:
        """Lines of one kind ("step", "epoch", "eval"), as the latest attempt of a resumed run wrote them.

        A resumed run restarts from its last checkpoint, so lines logged after that checkpoint by the
        attempt that crashed reappear later in the file with the same or smaller steps: a line whose step
        is not past the previous one drops the earlier lines from that step on.
        """
        return list(self._kept_for(("lines", kind), lambda: self._latest(kind)))

    def _kept_for(self, key, compute):
        """`compute()`, kept under `key` for the next call while `metrics` is the same list of the same length: the
        plots and the comparison page ask for a run's lines, keys and epoch ends dozens of times, each a pass over a
        long run's 100,000 lines (their drawing took 40 s). A run re-read by `load_run` reads its lines afresh."""
        stamp = (id(self.metrics), len(self.metrics))
        kept = self._kept.get(key)
        if kept is None or kept[0] != stamp:
            kept = self._kept[key] = stamp, compute()
        return kept[1]

    def _latest(self, kind: str) -> list[dict]:
        """`lines` of `kind`, from a pass over `metrics`."""
        kept: list[dict] = []
        for line in self.metrics:
            if line.get("kind") != kind:
                continue
            step = _number(line.get("step"))
            if step is None:
                continue
            while kept and kept[-1]["step"] >= step:
                kept.pop()
            kept.append(line)
        return kept

    def series(self, key: str, kinds: tuple[str, ...] = ("step", "epoch"), x: str = "step"):
        """(xs, ys) of `key` against axis `x` from the first of `kinds` whose lines carry it.

        Non-finite values become NaN so plots show a gap instead of breaking their axes.
        Returns two empty lists when no line carries the key.
        """
        for kind in kinds:
            xs, ys = [], []
            for line in self.lines(kind):
                xv, yv = _number(line.get(x)), _number(line.get(key))
                if xv is None or yv is None:
                    continue
                xs.append(xv)
                ys.append(yv if math.isfinite(yv) else math.nan)
            if xs:
                return xs, ys
        return [], []

    def epoch_positions(self, steps) -> list[float]:
        """Where each of `steps` lies in training, in epochs (fractional): a common measure of progress across runs
        whose steps mean different things (a step of the critic strategy is one G update fed by n_critic batches, of
        the others one batch). The epoch lines give each epoch's last step and the step and eval lines the epochs done
        at theirs (`epochs_done`: batches consumed over batches per epoch); a step between two of them is placed linearly, one
        past the last by the steps per epoch between the last two. A run without two such points (no epoch line yet,
        step lines of a gankit before `epochs_done`) falls back to the epoch its step lines say is under way."""
        ks, es = self._epoch_knots()
        if len(ks) < 2:
            under_way = {}
            for line in self.lines("step"):
                s, e = finite_number(line.get("step")), finite_number(line.get("epoch"))
                if s is not None and e is not None:
                    under_way[s] = e
            return [float(under_way.get(float(s), math.nan)) for s in steps]
        per_epoch = (ks[-1] - ks[-2]) / (es[-1] - es[-2])
        out = []
        for s in steps:
            s = float(s)
            out.append(es[-1] + (s - ks[-1]) / per_epoch if s > ks[-1] else _interp(s, ks, es))
        return out

    def eval_epochs(self, lines: list[dict]) -> list[float]:
        """Where each eval line of `lines` lies in training, in epochs: one of an epoch's end at that epoch (a critic
        step that crossed the end is past it, not the evaluation), the one that ended a run inside an epoch (a budget,
        a stop), whose line carries the unfinished epoch, at its own `epochs_done` (20.3 in epoch 21), else (a line
        of a gankit before eval lines carried it) where its step lies (`epoch_positions`); the line's epoch where
        neither is measured (NaN: no step line of a gankit before `epochs_done` to go by)."""
        ends = self._epoch_ends()
        out = []
        for line, at in zip(lines, self.epoch_positions([_number(line.get("step")) for line in lines])):
            epoch, done = _number(line.get("epoch")), finite_number(line.get("epochs_done"))
            at = done if done is not None else at
            if _end_key(line) in ends or not math.isfinite(at):
                at = math.nan if epoch is None else epoch
            out.append(at)
        return out

    def eval_series(self, key: str) -> tuple[list[float], list[float]]:
        """(epochs, values) of `key` in the eval lines that carry it, placed by `eval_epochs`; non-finite values are
        NaN, as in `series`."""
        lines = [line for line in self.lines("eval") if _number(line.get(key)) is not None]
        values = [_number(line[key]) for line in lines]
        return self.eval_epochs(lines), [v if math.isfinite(v) else math.nan for v in values]

    def _epoch_ends(self) -> set[tuple[float | None, float | None]]:
        """(step, epoch) of each epoch line: where each epoch ended."""
        return {_end_key(line) for line in self.lines("epoch")}

    def _epoch_knots(self) -> tuple[list[float], list[float]]:
        """(steps, epochs done at them), both increasing, from step 0: the epoch lines' ends and the step and eval
        lines' `epochs_done`, the latter where both place a step (a critic step that crossed an epoch's end is past
        it)."""
        ks, es = self._kept_for("epoch knots", self._knots)
        return list(ks), list(es)

    def _knots(self) -> tuple[list[float], list[float]]:
        """`_epoch_knots`, from a pass over the lines."""
        points = []
        for kind, key in (("epoch", "epoch"), ("step", "epochs_done"), ("eval", "epochs_done")):
            for line in self.lines(kind):
                s, e = finite_number(line.get("step")), finite_number(line.get(key))
                if s is not None and e is not None:
                    points.append((s, e))
        ks, es = [0.0], [0.0]
        for s, e in sorted(points, key=lambda p: (p[0], -p[1])):
            if s > ks[-1] and e > es[-1]:
                ks.append(s)
                es.append(e)
        return ks, es

    def numeric_keys(self, kind: str) -> list[str]:
        """Metric keys with a numeric value in some line of `kind`, in order of first appearance."""
        return list(self._kept_for(("numeric keys", kind), lambda: self._numeric_keys(kind)))

    def _numeric_keys(self, kind: str) -> list[str]:
        """`numeric_keys`, from a pass over `metrics`."""
        keys: dict[str, None] = {}
        for line in self.metrics:
            if line.get("kind") != kind:
                continue
            for k, v in line.items():
                if k not in AXIS_KEYS and _number(v) is not None:
                    keys.setdefault(k)
        return list(keys)

    @property
    def total_epochs(self) -> int | None:
        """Epochs finished: the last epoch line's (0 when steps were logged but no epoch ended); a run without metrics
        counts its last grid's; None when it has neither. Not the step lines' epoch nor the grid a budget writes when
        it ends a run inside an epoch: that epoch is unfinished (`unfinished_epoch`)."""
        if self.metrics:
            done = _max_of(self.lines("epoch"), "epoch", int)
            return done if done is not None else 0 if self.lines("step") else None
        return max(self.sample_epochs, default=None)

    @property
    def unfinished_epoch(self) -> tuple[int, float | None] | None:
        """(number, share done) of the epoch after the finished ones that the run trained in without finishing it (a
        budget, a stop or a crash ended the run inside it, or it is training now), or None. The share is where the last
        logged step lies (`epoch_positions`: its step line's `epochs_done`, else by the last finished epoch's steps per
        epoch); None without either to measure it by (the first epoch of a gankit before `epochs_done`), or when only
        the epoch's grid says the run got into it."""
        done = self.total_epochs
        if done is None or not self.metrics:
            return None
        ends = self.lines("epoch")
        last_end = max((finite_number(line.get("step")) or 0.0 for line in ends), default=0.0)
        last = max((s for kind in ("step", "eval") for s in (finite_number(line.get("step"))
                                                             for line in self.lines(kind)) if s is not None),
                   default=0.0)
        if last <= last_end and max(self.sample_epochs, default=0) <= done:
            return None
        measured = len(self._epoch_knots()[0]) > 1  # an epoch line, or step lines with their epochs_done
        share = self.epoch_positions([last])[0] - done if measured and last > last_end else math.nan
        return done + 1, min(share, 1.0) if share > 0 else None  # (NaN > 0 is False)

    @property
    def total_steps(self) -> int | None:
        return _max_of(self.metrics, "step", int)

    @property
    def total_time(self) -> float | None:
        return _max_of(self.metrics, "time", float)

    @property
    def evaluating_time(self) -> float | None:
        """Seconds of `total_time` spent in FID/KID evaluations: those logged before the run's last time (the
        evaluation that ends a run comes after it). None when the run has no evaluation, or one of them logged no
        `eval_seconds` (runs written before gankit logged it)."""
        evals = self.lines("eval")
        durations = [finite_number(line.get("eval_seconds")) for line in evals]
        if self.total_time is None or not evals or None in durations:
            return None
        return sum(finite_number(line.get("eval_seconds")) for line in self.evaluations_inside())

    def evaluations_inside(self) -> list[dict]:
        """The eval lines of the evaluations `total_time` includes: those logged before the run's last time (the
        evaluation that ends a run comes after it)."""
        total = self.total_time
        return [] if total is None else [line for line in self.lines("eval")
                                         if (finite_number(line.get("time")) or 0.0) < total]


def not_a_run(path: Path, markers: str, fix: str = "pass a folder made by gankit train") -> RunError:
    """The error for a folder given as a run that has none of `markers`, with `fix`; one that holds runs (`runs`, for
    the runs in it) names them instead."""
    from gankit.console import short_list
    from gankit.data.folder import runs_held

    held = [str(d) for d in runs_held(path)]
    fix = f"pass one of the runs it holds ({short_list(held)})" if held else fix
    return RunError(f"'{path}' is not a gankit run folder (it has no {markers}): {fix}")


def load_run(path, unreadable_config_ok: bool = False) -> Run:
    """Read the run folder at `path`; raise RunError when it is not one. With `unreadable_config_ok`, a config.yaml
    that cannot be read (not YAML, not a mapping) in a run that has metrics or sample grids gives an empty `config`
    and says why in `config_problem` (the comparison page shows the rest of the run) instead of raising."""
    path = Path(path)
    if not path.exists():
        from gankit.train import missing_run

        raise missing_run(path)
    if not path.is_dir():
        raise RunError(f"{path} is a file, not a run folder")
    markers = (path / CONFIG_FILE, path / METRICS_FILE, path / SAMPLES_DIR)
    if not any(m.exists() for m in markers):
        raise not_a_run(path, f"{CONFIG_FILE}, {METRICS_FILE} or {SAMPLES_DIR}/")
    metrics = read_metrics(path / METRICS_FILE)
    samples = find_samples(path / SAMPLES_DIR)
    try:
        config, problem = read_config(path / CONFIG_FILE), ""
    except RunError as e:
        if not unreadable_config_ok or not (metrics or samples):  # nothing else to show of it
            raise
        config, problem = {}, str(e)
    run = Run(
        path=path,
        name=path.resolve().name,
        config=config,
        metrics=metrics,
        samples=samples,
        final_grid=samples[-1] if samples else None,
        config_problem=problem,
    )
    run.best = best_eval(run)
    return run


def read_config(path: Path) -> dict:
    """The resolved config as a dict; {} when the file is missing."""
    if not path.exists():
        return {}
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"{path} is not valid YAML ({first})") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise RunError(f"{path} should hold a mapping of settings, found a {type(config).__name__}")
    return config


def read_metrics(path: Path) -> list[dict]:
    """Every line of `metrics.jsonl` that is a JSON object; torn or garbled lines are skipped."""
    if not path.exists():
        return []
    lines = []
    with open(path, "rb") as f:
        for raw in f:
            obj = _parse_line(raw)
            if isinstance(obj, dict):
                lines.append(obj)
    return lines


def _parse_line(raw: bytes):
    """A JSON line, or None. A line torn by a crash and then continued by the resumed run
    (`{"kind": "st{"kind": "step", ...}`) yields its last, complete object; the metrics are flat, so
    the last `{"` starts it."""
    try:
        return json.loads(raw)
    except ValueError:  # torn line, stray bytes, bad UTF-8
        pass
    start = raw.rfind(b'{"')
    if start <= 0:
        return None
    try:
        return json.loads(raw[start:])
    except ValueError:
        return None


def find_samples(folder: Path) -> list[Path]:
    """`epoch_NNNN.png` files of `folder` sorted by epoch number (not by name: epoch_10000 > epoch_9999)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if SAMPLE_RE.match(p.name) and p.is_file()]
    return sorted(found, key=sample_epoch)


def sample_epoch(path: Path) -> int:
    """The epoch number in a sample grid's file name."""
    m = SAMPLE_RE.match(Path(path).name)
    if m is None:
        raise ValueError(f"not a sample grid name: {path}")
    return int(m.group(1))


def best_eval(run: Run) -> BestEval | None:
    """The eval line of `run` with the lowest finite FID (the earliest on ties), or None."""
    best = None
    lines = run.lines("eval")
    ends = run._epoch_ends()
    for line, at in zip(lines, run.eval_epochs(lines)):
        fid = _number(line.get("fid"))
        if fid is None or not math.isfinite(fid):
            continue
        if best is None or fid < best.fid:
            best = BestEval(
                fid=fid,
                epoch=int(_number(line.get("epoch")) or 0),
                step=int(_number(line.get("step")) or 0),
                time=float(_number(line.get("time")) or 0.0),
                kid_mean=_number(line.get("kid_mean")),
                kid_std=None if _no_spread(line) else _number(line.get("kid_std")),
                at=at,
                unfinished=_end_key(line) not in ends,
            )
    return best


def _end_key(line: dict) -> tuple[float | None, float | None]:
    """(step, epoch) of a line: an eval line's is an epoch line's when it is of that epoch's end."""
    return _number(line.get("step")), _number(line.get("epoch"))


def _no_spread(line: dict) -> bool:
    """An eval line whose KID spread is none by construction (`config.kid_spread_is_none`; lines of a gankit before
    n_real was logged keep theirs)."""
    n_fake, n_real = _number(line.get("n_fake")), _number(line.get("n_real"))
    return n_fake is not None and n_real is not None and kid_spread_is_none(int(n_fake), int(n_real))


def _number(v) -> float | None:
    """`v` as a float when it is a JSON number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def finite_number(v) -> float | None:
    """`v` as a float when it is a finite JSON number (not a bool, NaN or infinity), else None."""
    n = _number(v)
    return n if n is not None and math.isfinite(n) else None


def _max_of(lines: list[dict], key: str, cast):
    values = [n for n in (_number(line.get(key)) for line in lines) if n is not None and math.isfinite(n)]
    return cast(max(values)) if values else None


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Linear interpolation of `x` in the increasing `xs` (a binary search: the segment scan took `gankit compare` 10
    minutes over a run of 1,000,000 steps, each of its 70,000 logged steps scanning as many knots)."""
    i = bisect.bisect_left(xs, x, 1)
    if i == len(xs):
        return ys[-1]
    return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - xs[i - 1]) / (xs[i] - xs[i - 1])
