"""Training curves as PNG files in `<run>/plots/`, cheap enough to redraw after every epoch.

Figures are built with `matplotlib.figure.Figure` on the Agg canvas, never through pyplot, so drawing
works in a headless training job and leaves the caller's pyplot state and backend alone.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np

from gankit.report import _mplconfig

_mplconfig.choose()  # before matplotlib is imported, which reads the folder chosen
from matplotlib import rcParams  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import Formatter, MaxNLocator  # noqa: E402

from gankit.layout import PLOTS_DIR
from gankit.report._io import atomic_path
from gankit.report.fonts import displayable, fit_figure_text, mpl_families
from gankit.report.runs import Run, finite_number, load_run

DPI = 100
PNG_OPTIONS = {"compress_level": 1}  # redrawn every epoch: fast compression beats small files

LOSS_KEYS = ("d_loss", "g_loss")
ACC_KEYS = ("d_acc_real", "d_acc_fake")
AUX_ACC_KEYS = ("aux_acc_real", "aux_acc_fake")
AUX_ENTROPY_KEY = "aux_entropy"
WGAN_KEYS = ("wasserstein", "gp")
EVAL_KEYS = ("fid", "kid_mean", "kid_std", "n_fake", "n_real")
#: Keys the named figures draw; every other numeric key goes to `other.png`.
PLOTTED_KEYS = set(LOSS_KEYS + ACC_KEYS + AUX_ACC_KEYS + WGAN_KEYS + EVAL_KEYS + (AUX_ENTROPY_KEY,))
MAX_OTHER_PANELS = 12
TICK_LABEL_ROOM = 48  # points along an x axis for each tick: a label of 5 characters ('13.5k', '0.25M') and a gap
#: A run's logged time includes its FID/KID evaluations (a run evaluating often looks slower than one that does not).
TIME_LABEL = "time (minutes, evaluations included)"
LEGEND_ABOVE_PAD = 22  # points between an axes and its title, room for a one-row legend above the axes


def write_plots(run_dir) -> list[Path]:
    """Draw the curves the run's metrics allow and return the PNG paths written.

    `losses.png` (d_loss, g_loss), `accuracy.png` (discriminator accuracies; auxiliary classifier
    accuracies and entropy in a second panel when logged), `fid.png` (FID/KID vs epoch and vs minutes,
    only when eval lines exist), `wasserstein.png` (wasserstein estimate and gradient penalty, when
    logged) and `other.png` (every other numeric key, e.g. img_per_s or keys this module does not know).
    A figure whose data is absent is not written. Raises RunError when `run_dir` is not a run folder.
    """
    run = load_run(run_dir)
    out = Path(run_dir) / PLOTS_DIR
    written = []
    with own_style():
        for name, draw in (
            ("losses.png", losses_figure),
            ("accuracy.png", accuracy_figure),
            ("fid.png", fid_figure),
            ("wasserstein.png", wasserstein_figure),
            ("other.png", other_figure),
        ):
            fig = draw(run)
            if fig is not None:
                written.append(save_figure(fig, out / name))
    return written


@contextlib.contextmanager
def own_style():
    """matplotlib's own defaults while gankit draws (the caller's put back after): a notebook's style or settings
    (`plt.style.use("dark_background")`, `plt.rcParams["font.size"] = 22`) drew a run's plots black, or with their
    axis labels cut off by `new_figure`'s fixed margins. The backend is left alone."""
    from matplotlib import style

    with style.context("default"):
        yield


# ----------------------------------------------------------------------------------------- figures


def losses_figure(run: Run) -> Figure | None:
    curves = [(k, *run.series(k)) for k in LOSS_KEYS]
    curves = [c for c in curves if c[1]]
    if not curves:
        return None
    fig, ax = new_figure(1)
    for i, (key, xs, ys) in enumerate(curves):
        raw_and_smoothed(ax, xs, ys, color=f"C{i}", label=key)
    ax.set(xlabel="step", ylabel="loss")
    # an ACGAN's d_loss of 5-7 next to a DCGAN's 1 looked broken: the title says what is in it, as the compare page's
    run_title(ax, run.name, "losses (incl. class loss)" if with_class_loss(run) else "losses")
    integer_ticks(ax)
    ax.set_ylim(*robust_ylim([y for _, _, y in curves], ax.get_ylim()))
    ax.legend(loc="best")
    return fig


def with_class_loss(run: Run) -> bool:
    """Whether the run's d_loss and g_loss include its auxiliary classifier's class loss: a conditional run (ACGAN,
    one that logged class accuracies) whose train.aux_weight is not 0."""
    train = run.config.get("train") if isinstance(run.config, dict) else None
    weight = train.get("aux_weight", 1.0) if isinstance(train, dict) else 1.0
    return weight != 0 and any(k in run.numeric_keys("step") for k in AUX_ACC_KEYS)


def accuracy_figure(run: Run) -> Figure | None:
    acc = [(k, *run.series(k)) for k in ACC_KEYS]
    acc = [c for c in acc if c[1]]
    aux = [(k, *run.series(k)) for k in AUX_ACC_KEYS]
    aux = [c for c in aux if c[1]]
    entropy = run.series(AUX_ENTROPY_KEY)
    has_aux = bool(aux or entropy[0])
    if not acc and not has_aux:
        return None
    fig, axes = new_figure(2 if acc and has_aux else 1)
    axes = list(np.atleast_1d(axes))
    if acc:
        ax = axes.pop(0)
        for i, (key, xs, ys) in enumerate(acc):
            raw_and_smoothed(ax, xs, ys, color=f"C{i + 2}", label=key)
        ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
        ax.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02))
        run_title(ax, run.name, "discriminator accuracy", pad=LEGEND_ABOVE_PAD)
        integer_ticks(ax)
        # above the panel, as the aux one: D's accuracies sit at 1.0 for long stretches, under any corner's legend
        legend_above(ax, *ax.get_legend_handles_labels())
    if has_aux:
        ax = axes.pop(0)
        for i, (key, xs, ys) in enumerate(aux):
            raw_and_smoothed(ax, xs, ys, color=f"C{i + 4}", label=key)
        ax.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02))
        run_title(ax, run.name, "auxiliary classifier", pad=LEGEND_ABOVE_PAD)
        integer_ticks(ax)
        handles, labels = ax.get_legend_handles_labels()
        if entropy[0]:
            ax2 = ax.twinx()
            raw_and_smoothed(ax2, *entropy, color="C6", label=AUX_ENTROPY_KEY)
            ax2.set_ylabel(AUX_ENTROPY_KEY)
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        # one legend for both y axes, above the panel: inside it ("best" of the left axis alone) covered aux_entropy
        legend_above(ax, handles, labels)
    fig.subplots_adjust(top=0.84)
    return fig


def legend_above(ax, handles, labels) -> None:
    """One row of legend between the panel and its title (drawn with pad=LEGEND_ABOVE_PAD): no curve under it."""
    ax.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), frameon=False,
              fontsize="small", borderaxespad=0.3, handlelength=1.5, columnspacing=1.2)


def fid_figure(run: Run) -> Figure | None:
    fid_lines = [line for line in run.lines("eval") if finite_number(line.get("fid")) is not None]
    kid_lines = [line for line in run.lines("eval") if finite_number(line.get("kid_mean")) is not None]
    if not fid_lines and not kid_lines:
        return None
    fig, axes = new_figure(2)
    for ax, x, scale, xlabel in zip(axes, ("epoch", "time"), (1.0, 60.0), ("epoch", TIME_LABEL)):
        handles = []
        if fid_lines:
            fxs = eval_xs(run, fid_lines, x) / scale
            handles += ax.plot(fxs, [line["fid"] for line in fid_lines], "o-", color="C0", ms=3, label="FID")
            if run.best is not None:
                bx = (run.best.at if x == "epoch" else run.best.time) / scale
                handles += ax.plot([bx], [run.best.fid], "*", color="C3", ms=13, label=f"best FID {run.best.fid:.2f}")
            ax.set_ylabel("FID (lower is better)")
        if kid_lines:
            kax = ax.twinx() if fid_lines else ax
            kxs = eval_xs(run, kid_lines, x) / scale
            kid = np.array([line["kid_mean"] for line in kid_lines], dtype=float)
            std = np.array([finite_number(line.get("kid_std")) for line in kid_lines], dtype=float)  # None -> nan
            handles += kax.plot(kxs, kid, "s--", color="C1", ms=3, label="KID")
            kax.fill_between(kxs, kid - std, kid + std, color="C1", alpha=0.15, lw=0)
            kax.set_ylabel("KID (lower is better)")
        ax.set(xlabel=xlabel)
        run_title(ax, run.name, f"FID / KID vs {x if x == 'epoch' else 'time'}", pad=LEGEND_ABOVE_PAD)
        if x == "epoch":
            epoch_ticks(ax, eval_xs(run, fid_lines + kid_lines, x))
        # above the panel: "best" of the FID axis alone put it over the KID curve and band of the twin axis
        legend_above(ax, handles, [h.get_label() for h in handles])
    fig.subplots_adjust(top=0.84)
    return fig


def wasserstein_figure(run: Run) -> Figure | None:
    curves = [(k, *run.series(k)) for k in WGAN_KEYS]
    curves = [c for c in curves if c[1]]
    if not curves:
        return None
    fig, axes = new_figure(len(curves))
    for i, (ax, (key, xs, ys)) in enumerate(zip(np.atleast_1d(axes), curves)):
        raw_and_smoothed(ax, xs, ys, color=f"C{i + 7}", label=key)
        title = "Wasserstein estimate" if key == "wasserstein" else "gradient penalty"
        ax.set(xlabel="step", ylabel=key)
        run_title(ax, run.name, title)
        integer_ticks(ax)
        ax.set_ylim(*robust_ylim([ys], ax.get_ylim()))
    return fig


#: Keys of other.png that count whole things: their axis ticks at whole numbers.
COUNT_KEYS = ("threads",)


def other_figure(run: Run) -> Figure | None:
    """Small multiples of every numeric key the named figures do not draw (img_per_s, unknown keys)."""
    panels = []  # (key, kinds)
    for kinds in (("step", "epoch"), ("eval",)):
        for kind in kinds:
            for key in run.numeric_keys(kind):
                if key not in PLOTTED_KEYS and all(key != k for k, _ in panels):
                    panels.append((key, kinds))
    panels = panels[:MAX_OTHER_PANELS]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.7 / (4.2 * cols), right=0.98, bottom=0.5 / (3 * rows), top=1 - 0.7 / (3 * rows),
                        wspace=0.35, hspace=0.6)
    run_title(fig, run.name, "")  # the figure's title, as the other plots name the run
    for i, (key, kinds) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        x = "epoch" if kinds == ("eval",) else "step"
        if kinds == ("eval",):  # where the evaluations lie in epochs, the one that ended a run inside an epoch too
            xs, ys = run.eval_series(key)
            ax.plot(xs, ys, "o-", ms=3, color="C0")
            epoch_ticks(ax, xs)
        else:
            xs, ys = run.series(key, kinds, x=x)
            raw_and_smoothed(ax, xs, ys, color="C0", label=key)
            integer_ticks(ax)
        ax.set(title=key, xlabel=x)
        if key in COUNT_KEYS:  # a count: 1 and 2 threads, not 1.2, 1.4... (nor 1.900, 1.925... when it never changed)
            integer_ticks(ax, "y")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))  # 1.5 with '1e-4' above, not 0.00015 (cut off)
        ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------------------- helpers


def run_title(where, name: str, kind: str, **kwargs) -> None:
    """Title `where` (an axes, or a figure: its suptitle) '<run name>: <kind>', the run's name shortened in the middle
    ('wgan_clip_a_ver…cope_with_it_xx: losses') so that the whole title fits over its panel: a long name was cut off at
    both sides, losing what the plot shows. An empty `kind` titles with the name alone."""
    from matplotlib.font_manager import FontProperties

    from gankit.console import ELLIPSIS, cut_middle, printable

    is_fig = isinstance(where, Figure)
    fig = where if is_fig else where.figure
    full = displayable(printable(name))
    families = mpl_families(full + ELLIPSIS)
    props = FontProperties(family=families, size=rcParams["figure.titlesize" if is_fig else "axes.titlesize"],
                           weight=rcParams["figure.titleweight" if is_fig else "axes.titleweight"])
    renderer = fig.canvas.get_renderer()
    budget = _title_room(where) - 20  # px, a little air at the sides

    def text(n):
        short = cut_middle(full, n)
        return f"{short}: {kind}" if kind else short

    def fits(n):
        return renderer.get_text_width_height_descent(text(n), props, ismath=False)[0] <= budget

    keep = len(full)
    if not fits(keep):
        lo, hi = 2, len(full) - 1  # the name keeps at least its first and last characters
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        keep = lo
    title = text(keep).replace("$", r"\$")
    if is_fig:
        where.suptitle(title, fontfamily=families, **kwargs)
    else:
        where.set_title(title, fontfamily=families, **kwargs)


def _title_room(where) -> float:
    """Pixels a title centred over `where` may take: a figure's width; an axes' width and as much again on each side
    as the nearer of the figure's edge and half the gap to a neighbouring panel allows."""
    fig_box = where.bbox if isinstance(where, Figure) else where.figure.bbox
    if isinstance(where, Figure):
        return fig_box.width
    box = where.get_position().transformed(where.figure.transFigure)
    left, right = box.x0 - fig_box.x0, fig_box.x1 - box.x1
    for other in where.figure.axes:
        o = other.get_position().transformed(where.figure.transFigure)
        if o.y1 <= box.y0 or o.y0 >= box.y1:  # another row
            continue
        if o.x1 <= box.x0:
            left = min(left, (box.x0 - o.x1) / 2)
        elif o.x0 >= box.x1:
            right = min(right, (o.x0 - box.x1) / 2)
    return box.width + 2 * min(left, right)


def literal(text: str) -> str:
    """`text` (a run's folder name) as matplotlib shows it literally: a `$` would start math notation, which garbles
    `price $5 and $6` and fails to draw `budget_$100_vs_$200`; bytes that are not UTF-8 show as U+FFFD (matplotlib
    cannot draw them); a character no installed font has is written as a stand-in (`fonts.displayable`), not a box."""
    from gankit.console import printable

    return displayable(printable(text)).replace("$", r"\$")


def integer_ticks(ax, axis: str = "x") -> None:
    """Ticks at whole numbers only on `ax`'s x axis (steps, epochs: a 3-step run showed 1.25, 1.5, ...), or its y axis.

    Call it after plotting: limits spanning under two whole numbers (one point, a constant) widen to the nearest ones
    around (MaxNLocator's integer ticks fall back to fractions there).
    """
    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))
    if axis == "x":  # (the y axes keep their ScalarFormatter: other.png's write 1e6 above a panel)
        # as many ticks as labels of 5 characters fit (matplotlib's own count left 3 characters: '10.5k12k13.5k')
        width = ax.get_position().width * ax.figure.get_figwidth() * 72  # points
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=max(2, int(width // TICK_LABEL_ROOM))))
        ax.xaxis.set_major_formatter(CountFormatter())
    lo, hi = getattr(ax, f"get_{axis}lim")()
    if np.isfinite(lo) and np.isfinite(hi) and hi - lo < 2:
        lo, hi = math.floor(lo), math.ceil(hi)
        getattr(ax, f"set_{axis}lim")(lo - (hi - lo < 2), hi + (hi - lo < 2))


class CountFormatter(Formatter):
    """Labels of an axis of whole numbers (steps, epochs) that reaches 10,000, in thousands or millions ('150k', '1.2M'):
    a long run's steps, '150000300000450000', ran into each other in other.png's panels."""

    top = 0.0  # the largest tick's size, set by the axis before it asks for labels

    def set_locs(self, locs):
        self.top = max((abs(v) for v in locs), default=0.0)

    def __call__(self, value, pos=None):
        top = max(self.top, abs(value))
        scale, suffix = (1e6, "M") if top >= 1e6 else (1e3, "k") if top >= 1e4 else (1, "")
        return f"{value / scale:.4g}{suffix}" if value else "0"


def eval_xs(run: Run, lines: list[dict], x: str) -> np.ndarray:
    """The eval `lines`' places along axis `x`: "epoch", where each lies in training (`Run.eval_epochs`: the one that
    ended a run inside an epoch at 20.3, not at the epoch 21 its line says), or "time"."""
    if x == "epoch":
        return np.array(run.eval_epochs(lines), dtype=float)
    return np.array([finite_number(line.get(x)) for line in lines], dtype=float)  # None -> nan


def epoch_ticks(ax, xs) -> None:
    """Ticks of an axis of epochs at whole epochs (`integer_ticks`), but at fractions of the epoch where the points
    `xs` all lie inside one (runs shorter than an epoch): their whole epochs would squash them between two ticks."""
    xs = np.asarray(xs, dtype=float)
    xs = xs[np.isfinite(xs)]
    if not (xs.size and np.ptp(xs) < 1 and np.any(xs % 1)):
        integer_ticks(ax)


def new_figure(panels: int, width: float = 6.4, height: float = 4.0):
    """A figure with `panels` side-by-side axes, attached to the Agg canvas.

    Margins are fixed (room for a twin y axis on the right) rather than computed by a layout engine,
    which would double the drawing time.
    """
    fig = Figure(figsize=(width * panels, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.85 / (width * panels), right=1 - 1.0 / (width * panels), bottom=0.13, top=0.9,
                        wspace=0.35 if panels > 1 else 0)
    axes = fig.subplots(1, panels)
    for ax in np.atleast_1d(axes):
        ax.grid(alpha=0.3)
    return fig, axes


def raw_and_smoothed(ax, xs, ys, color, label, alpha=0.25):
    """Raw values as a faint line under their moving average; returns the smoothed line.

    A series that never decreases (a counter such as d_updates) is drawn raw: averaging bends its ends. A short
    curve gets markers, large ones when it has one or two points (a line through one point draws nothing).
    """
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    finite = ys[np.isfinite(ys)]
    window = 1 if finite.size < 2 or np.all(np.diff(finite) >= 0) else smoothing_window(len(ys))
    if window > 1:
        ax.plot(xs, ys, color=color, lw=0.7, alpha=alpha)
        (line,) = ax.plot(xs, smooth(ys, window), color=color, lw=1.6, label=label)
    else:
        few = finite.size <= 2
        (line,) = ax.plot(xs, ys, color=color, lw=1.4, marker="o" if finite.size < 30 else None, ms=7 if few else 4,
                          label=label)
    return line


def smoothing_window(n: int) -> int:
    """Moving-average width: about 1/30 of the curve, no smoothing for short curves."""
    return 1 if n < 20 else max(3, n // 30)


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average of `y` that skips NaNs (a window of only NaNs stays NaN).

    The window shrinks symmetrically near the ends (the last point averages itself alone): a window cut off on one
    side pulled the ends towards the middle (a rising curve ended below its last values).
    """
    y = np.asarray(y, dtype=float)
    if window <= 1 or y.size == 0:
        return y
    valid = np.isfinite(y)
    half = np.minimum(window // 2, np.minimum(np.arange(y.size), np.arange(y.size)[::-1]))
    i = np.arange(y.size)
    sums = np.concatenate([[0.0], np.cumsum(np.where(valid, y, 0.0))])
    counts = np.concatenate([[0], np.cumsum(valid)])
    total, count = sums[i + half + 1] - sums[i - half], counts[i + half + 1] - counts[i - half]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def robust_ylim(curves, current):
    """Y limits that ignore rare spikes (a loss exploding for a few steps would flatten everything else).

    Keeps matplotlib's own limits unless the 0.5-99.5 percentile range is under half of them.
    """
    values = np.concatenate([np.asarray(c, dtype=float) for c in curves]) if curves else np.array([])
    values = values[np.isfinite(values)]
    if values.size < 50:
        return current
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi <= lo or (hi - lo) * 2 > (current[1] - current[0]):
        return current
    pad = 0.1 * (hi - lo)
    return lo - pad, hi + pad


def save_figure(fig: Figure, path) -> Path:
    """Save `fig` as PNG at `path` atomically (its texts drawable: `fonts.fit_figure_text`)."""
    fit_figure_text(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return Path(path)


def figure_png(fig: Figure) -> bytes:
    """`fig` as PNG bytes (for embedding in HTML), its texts drawable (`fonts.fit_figure_text`)."""
    fit_figure_text(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return buf.getvalue()
