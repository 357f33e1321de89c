"""Report: reading run folders, training plots, evolution GIF, grids and the HTML comparison."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageSequence
from report_fakes import GRID_SIZE, epoch_color, make_run

import gankit
from gankit.errors import RunError
from gankit.report.compare import flatten_config, format_duration, write_compare_report
from gankit.report.gif import LAST_FRAME_HOLD, pick_evenly, write_evolution_gif
from gankit.report.grids import label_grid, save_grid
from gankit.report.plots import smooth, write_plots
from gankit.report.runs import load_run

FIDS_A = [300.0, 200.0, 150.0, 120.0, 125.0]
FIDS_B = [250.0, 90.5, 95.0, 99.0, 101.0]


@pytest.fixture
def three_runs(tmp_path):
    a = make_run(tmp_path, "dcgan_bce", run_index=0, fids=FIDS_A)
    b = make_run(tmp_path, "wgan_gp", run_index=1, lr_g=1e-4, loss="wgan-gp", fids=FIDS_B,
                 extra={"wasserstein": 1.5, "gp": 0.1, "aux_acc_real": 0.4, "aux_entropy": 1.1})
    c = make_run(tmp_path, "no_fid", run_index=2, epochs=3, loss="hinge", fids=None)
    return a, b, c


def no_temp_files(folder):
    return not [p for p in folder.rglob("*.tmp")]


# ------------------------------------------------------------------------------------------- runs



def _config_section(page: str) -> str:
    """The page's config table section, its keys and values without their break points (<wbr>)."""
    return page[page.index('id="config-diff"'):page.index('id="best-metrics"')].replace("<wbr>", "")

def test_load_run_reads_everything_and_skips_the_torn_line(tmp_path):
    path = make_run(tmp_path, "r", epochs=5, steps_per_epoch=10, fids=FIDS_A)
    run = load_run(path)
    assert run.name == "r" and run.path == path
    assert run.config["train"]["lr_g"] == 2e-4
    assert len(run.metrics) == 5 * 10 + 5 + 5  # step + epoch + eval lines; the torn line is gone
    assert [p.name for p in run.samples] == [f"epoch_{e:04d}.png" for e in range(1, 6)]
    assert run.final_grid == path / "samples" / "epoch_0005.png"
    assert run.best.fid == 120.0 and run.best.epoch == 4 and run.best.step == 40
    assert run.best.time == pytest.approx(20.2) and run.best.kid_mean == pytest.approx(0.12)
    assert (run.total_epochs, run.total_steps, run.total_time) == (5, 50, pytest.approx(25.2))


def test_samples_sort_by_epoch_number_not_name(tmp_path):
    path = make_run(tmp_path, "r", epochs=2, samples=False)
    for e in (9999, 10000, 2):
        Image.new("RGB", (4, 4)).save(path / "samples" / f"epoch_{e}.png")
    (path / "samples" / "notes.png").write_bytes(b"")
    assert load_run(path).sample_epochs == [2, 9999, 10000]


def test_not_a_run_folder_is_a_one_line_run_error(tmp_path):
    for path in (tmp_path / "missing", tmp_path):
        with pytest.raises(RunError) as e:
            load_run(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value)
    (tmp_path / "config.yaml").write_text("a: [unclosed\n")
    with pytest.raises(RunError, match="not valid YAML"):
        load_run(tmp_path)


def test_resumed_run_keeps_the_latest_attempt_and_recovers_a_continued_torn_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"kind": "step", "step": s, "epoch": 1, "time": s, "d_loss": 1.0}) for s in (1, 2, 3, 4))
        + '\n{"kind": "step", "st'  # crash mid-write, then the resumed run appends from step 3
        + json.dumps({"kind": "step", "step": 3, "epoch": 1, "time": 9, "d_loss": 2.0}) + "\n"
        + json.dumps({"kind": "step", "step": 4, "epoch": 1, "time": 10, "d_loss": 2.0}) + "\n"
        + "not json\n[1, 2]\n"
    )
    run = load_run(tmp_path)
    assert [(line["step"], line["d_loss"]) for line in run.lines("step")] == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]
    assert run.series("d_loss") == ([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 2.0])
    assert run.best is None and run.samples == [] and run.config == {}



def test_a_run_read_again_after_its_metrics_grew_has_the_new_lines(tmp_path):
    """A run's lines, keys and epochs are kept between calls (the plots and the page ask for them dozens of times), for
    the metrics as they were read: a live run read again, or one whose metrics grew, has its new lines."""
    path = make_run(tmp_path, "live", epochs=2, steps_per_epoch=10, fids=None, torn=False)
    run = load_run(path)
    assert run.lines("step")[-1]["step"] == 20 and "queue_len" not in run.numeric_keys("step") and run.total_epochs == 2
    new = [{"kind": "step", "step": 21, "epoch": 3, "time": 30.0, "d_loss": 1.0, "queue_len": 5.0},
           {"kind": "epoch", "step": 40, "epoch": 3, "time": 31.0, "d_loss": 1.0}]  # an epoch of 20 steps
    with open(path / "metrics.jsonl", "a") as f:
        f.write("".join(json.dumps(line) + "\n" for line in new))
    again = load_run(path)
    assert [line["step"] for line in again.lines("step")][-2:] == [20, 21] and "queue_len" in again.numeric_keys("step")
    assert again.total_epochs == 3 and again.epoch_positions([25]) == pytest.approx([2.25])
    assert run.lines("step")[-1]["step"] == 20 and run.epoch_positions([25]) == pytest.approx([2.5])
    run.metrics.extend(new)  # the same run, its metrics grown
    assert run.lines("step")[-1]["step"] == 21 and "queue_len" in run.numeric_keys("step") and run.total_epochs == 3
    assert run.epoch_positions([25]) == pytest.approx([2.25])


def test_plots_and_the_compare_page_pass_over_a_runs_lines_a_few_times_and_draw_the_same(tmp_path, monkeypatch):
    """The plots and `gankit compare` of a run of 1,000,000 steps (110,000 lines) took 15-45 s each: every figure's
    curve, key list and epoch placement passed over all its lines again, about 40 passes for the plots and 80 for the
    page. Its lines, keys and epochs are kept (counted, not timed), and draw the same figures and page as without."""
    from gankit.report import runs
    from gankit.report.runs import Run

    class Counted(list):
        passes = 0

        def __iter__(self):
            Counted.passes += 1
            return list.__iter__(self)

    path = make_run(tmp_path, "r", fids=FIDS_A)
    pictures = lambda: {p.name: p.read_bytes() for p in write_plots(path)}  # noqa: E731
    page = lambda: re.sub(r"Generated [^.]*\.", "", write_compare_report([path], tmp_path / "r.html").read_text())  # noqa: E731
    read = runs.read_metrics
    monkeypatch.setattr(runs, "read_metrics", lambda p: Counted(read(p)))
    kept = pictures()
    assert Counted.passes < 10
    Counted.passes = 0
    kept_page = page()
    assert Counted.passes < 15
    monkeypatch.setattr(Run, "_kept_for", lambda self, key, compute: compute())
    assert pictures() == kept and page() == kept_page


# ------------------------------------------------------------------------------------------ plots


def _png_size(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_write_plots_draws_what_the_metrics_allow(three_runs):
    a, b, c = three_runs
    names = lambda paths: sorted(p.name for p in paths)  # noqa: E731
    assert names(write_plots(a)) == ["accuracy.png", "fid.png", "losses.png", "other.png"]
    assert names(write_plots(b)) == ["accuracy.png", "fid.png", "losses.png", "other.png", "wasserstein.png"]
    written = write_plots(c)
    assert names(written) == ["accuracy.png", "losses.png", "other.png"]  # no eval lines: no fid.png
    for path in written:
        assert path.parent == c / "plots"
        w, h = _png_size(path)
        assert 300 <= w <= 2000 and 200 <= h <= 1200
    assert no_temp_files(c)


# Every key the trainer logs (step/epoch lines) and each evaluation's keys (eval lines).
TRAINER_KEYS = ("d_loss", "g_loss", "d_acc_real", "d_acc_fake", "aux_acc_real", "aux_acc_fake", "aux_entropy",
                "wasserstein", "gp", "d_updates", "g_updates")


def test_plots_show_every_trainer_key_and_fid_kid_vs_epoch_and_time(tmp_path):
    from gankit.report import plots

    (tmp_path / "config.yaml").write_text("name: acgan\n")
    lines, step = [], 0
    for epoch in (1, 2, 3):
        for _ in range(5):
            step += 1
            lines.append({"kind": "step", "step": step, "epoch": epoch, "time": 10.0 * step,
                          **{k: 0.5 + 0.01 * step for k in TRAINER_KEYS[:-2]}})
        lines.append({"kind": "epoch", "step": step, "epoch": epoch, "time": 10.0 * step, "d_updates": 5 * step,
                      "g_updates": step})
        lines.append({"kind": "eval", "step": step, "epoch": epoch, "time": 60.0 * epoch + 30,
                      "fid": [90.0, 70.0, 80.0][epoch - 1], "kid_mean": 0.05 / epoch, "kid_std": 0.01, "n_fake": 64})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = load_run(tmp_path)

    shown = set()  # line labels and panel titles (other.png titles each panel with its key)
    for figure in (plots.losses_figure, plots.accuracy_figure, plots.wasserstein_figure, plots.other_figure):
        fig = figure(run)
        shown |= {ln.get_label() for ax in fig.axes for ln in ax.get_lines()} | {ax.get_title() for ax in fig.axes}
    assert set(TRAINER_KEYS) <= shown, set(TRAINER_KEYS) - shown

    fig = plots.fid_figure(run)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("vs epoch" in t for t in titles) and any("vs time" in t for t in titles)
    fid_lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "FID"]
    kid_lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "KID"]
    assert [list(ln.get_xdata()) for ln in fid_lines] == [[1, 2, 3], [1.5, 2.5, 3.5]]  # epochs; minutes
    assert list(fid_lines[0].get_ydata()) == [90.0, 70.0, 80.0] and len(kid_lines) == 2
    best = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label().startswith("best FID")]
    assert [list(ln.get_xdata()) for ln in best] == [[2], [2.5]]


def test_fid_png_draws_the_evaluation_that_ended_a_run_inside_an_epoch_where_it_lies(tmp_path):
    """A budget ended a run 30% into epoch 3 (10 batches an epoch) and evaluated there: its eval line carries epoch 3,
    the epoch under way, and fid.png drew that point and the best FID's star at 3, other.png its eval_seconds too.
    They lie at 2.3, where the step line of its step says training stood (epochs_done); the epoch ends' at 1 and 2."""
    from gankit.report import plots

    (tmp_path / "config.yaml").write_text("name: r\n")
    lines = []
    for step in range(1, 24):
        epoch = -(-step // 10)
        lines.append({"kind": "step", "step": step, "epoch": epoch, "epochs_done": step / 10, "time": float(step),
                      "d_loss": 0.5})
        if step % 10 == 0 or step == 23:
            if step % 10 == 0:
                lines.append({"kind": "epoch", "step": step, "epoch": epoch, "time": float(step), "d_loss": 0.5})
            lines.append({"kind": "eval", "step": step, "epoch": epoch, "time": float(step), "fid": 100.0 - step,
                          "kid_mean": 0.1 - step / 1000, "kid_std": 0.01, "n_fake": 64, "eval_seconds": 1.0})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = load_run(tmp_path)

    by_epoch = {}  # {label: xs} of the epoch panel's lines, the first of each (the minutes panel's follow)
    for ax in plots.fid_figure(run).axes:
        for ln in ax.get_lines():
            by_epoch.setdefault(ln.get_label(), list(ln.get_xdata()))
    assert by_epoch == {"FID": pytest.approx([1.0, 2.0, 2.3]), "best FID 77.00": pytest.approx([2.3]),
                        "KID": pytest.approx([1.0, 2.0, 2.3])}
    (ax,) = plots.other_figure(run).axes
    assert ax.get_title() == "eval_seconds" and list(ax.get_lines()[0].get_xdata()) == pytest.approx([1.0, 2.0, 2.3])
    assert (run.best.epoch, run.best.at, run.best.share) == (3, pytest.approx(2.3), pytest.approx(0.3))


@pytest.mark.parametrize("own, at", [(True, 2.45), (False, 2.3)])
def test_an_eval_line_lies_at_its_own_epochs_done_and_an_older_one_where_its_step_does(tmp_path, own, at):
    """The evaluation that ended a run at step 23 with no step line there (logged every 10 steps, 10 an epoch), its
    steps not all one batch (a critic run): at its own epochs_done, 2.45, also for the unfinished epoch's share; a
    line of a gankit before eval lines carried it (`own` False), where its step lies by the steps per epoch, 2.3."""
    (tmp_path / "config.yaml").write_text("name: r\n")
    lines = []
    for step in (10, 20):
        lines += [{"kind": kind, "step": step, "epoch": step // 10, "epochs_done": step / 10, "time": float(step),
                   "d_loss": 0.5} for kind in ("step", "epoch")]
    lines.append({"kind": "eval", "step": 23, "epoch": 3, **({"epochs_done": 2.45} if own else {}), "time": 23.0,
                  "fid": 50.0, "kid_mean": 0.1, "kid_std": 0.01, "n_fake": 64})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = load_run(tmp_path)
    assert run.eval_series("fid") == ([pytest.approx(at)], [50.0])
    assert (run.best.at, run.unfinished_epoch) == (pytest.approx(at), (3, pytest.approx(at - 2)))


def test_plots_and_compare_pages_are_the_same_whatever_the_callers_matplotlib_style(tmp_path):
    """A training (or compare) called from a notebook whose cells set a style or a font size drew the run's plots and
    the page's curves in it: black with `dark_background`, the axis labels cut off at 22 pt. The caller's settings
    are theirs again afterwards."""
    from matplotlib import rcParams, style

    run = make_run(tmp_path, "styled", fids=FIDS_A)
    pictures = lambda: {p.name: Image.open(p).convert("RGB").tobytes() for p in write_plots(run)}  # noqa: E731
    page = lambda: write_compare_report([run], tmp_path / "r.html").read_bytes()  # noqa: E731
    plain = pictures(), page()
    with style.context("dark_background"), style.context({"font.size": 22, "lines.linewidth": 6}):
        assert pictures() == plain[0]
        assert page() == plain[1]
        assert rcParams["font.size"] == 22 and rcParams["axes.facecolor"] == "black"


def test_write_plots_on_an_empty_run_writes_nothing(tmp_path):
    (tmp_path / "config.yaml").write_text("name: x\n")
    assert write_plots(tmp_path) == []


def _gankit_lines_run(fn) -> int:
    """How many lines of gankit's own code run while `fn` runs (sys.settrace's line events, loop iterations included)."""
    root = str(Path(gankit.__file__).parent)
    count = 0

    def local(frame, event, arg):
        nonlocal count
        count += event == "line"
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename.startswith(root) else None)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def test_write_plots_work_grows_linearly_with_the_lines(tmp_path):
    """A long run's thousands of metric lines must not cost a loop over the lines per line. Counted, not timed (a timed
    bound fails on a busy machine): 4x the lines may run at most 5x gankit's lines of code, where such a loop runs
    about 16x (Run.lines filtering its kept lines per line instead of popping from the end fails here)."""
    counts = []
    for steps in (100, 400):
        run = make_run(tmp_path, f"long{steps}", epochs=10, steps_per_epoch=steps, fids=[100.0 - e for e in range(10)],
                       samples=False)
        counts.append(_gankit_lines_run(lambda: write_plots(run)))
        assert (run / "plots" / "losses.png").is_file()
    assert 3 * counts[0] < counts[1] < 5 * counts[0]


def test_smooth_skips_nans():
    y = torch.tensor([1.0, float("nan"), 3.0, 5.0]).numpy()
    out = smooth(y, 3)
    assert out[1] == pytest.approx(2.0) and out[0] == pytest.approx(1.0) and out[2] == pytest.approx(4.0)
    assert out[3] == pytest.approx(5.0)  # the window shrinks at the ends: not pulled back to (3 + 5) / 2


# -------------------------------------------------------------------------------------------- gif


def evolution_gif_frames(gif_path) -> list[bytes]:
    """Each frame's RGB pixels."""
    with Image.open(gif_path) as im:
        return [frame.convert("RGB").tobytes() for frame in ImageSequence.Iterator(im)]


def _frame_epochs(gif_path, run_index, epochs):
    """Identify each GIF frame by the solid color of its grid area (the nearest fake epoch color)."""
    found = []
    with Image.open(gif_path) as im:
        for frame in ImageSequence.Iterator(im):
            pixel = frame.convert("RGB").getpixel((GRID_SIZE[0] // 2, GRID_SIZE[1] // 2))
            dist = {e: sum((p - q) ** 2 for p, q in zip(pixel, epoch_color(run_index, e))) for e in epochs}
            best = min(dist, key=dist.get)
            assert dist[best] < 30, (pixel, epoch_color(run_index, best))
            found.append(best)
    return found


def test_evolution_gif_has_every_epoch_in_order(tmp_path):
    run = make_run(tmp_path, "r", run_index=1, epochs=6, steps_per_epoch=2)
    path = write_evolution_gif(run, duration_ms=50)
    assert path == run / "evolution.gif" and no_temp_files(run)
    assert _frame_epochs(path, 1, range(1, 7)) == [1, 2, 3, 4, 5, 6]
    with Image.open(path) as im:
        assert im.size[0] == GRID_SIZE[0] and im.size[1] > GRID_SIZE[1]  # caption strip under the grid
        assert im.info.get("loop") == 0


def test_an_unfinished_epochs_frame_says_so_where_its_grid_is_wide_enough(tmp_path):
    """The frame of epoch `unfinished` is captioned "epoch N (unfinished)"; a grid too narrow for that gets "epoch N"
    rather than no caption at all."""
    from gankit.report.gif import _with_caption, evolution_gif_bytes

    grids = [tmp_path / f"epoch_{e:04d}.png" for e in (1, 2, 3)]
    for path in grids:
        Image.new("RGB", (200, 100), (40, 90, 200)).save(path)
    frames = [evolution_gif_frames(io.BytesIO(evolution_gif_bytes(grids, unfinished=u))) for u in (None, 3)]
    plain, marked = frames
    assert plain[:2] == marked[:2] and plain[2] != marked[2]  # only the last frame's caption differs
    narrow = Image.new("RGB", (60, 40))
    assert _with_caption(narrow, "epoch 3 (unfinished)", "epoch 3").tobytes() == _with_caption(narrow, "epoch 3").tobytes()
    assert _with_caption(narrow, "epoch 3 (unfinished)", "epoch 3").size[1] > 40


def test_evolution_gif_subsamples_evenly_and_keeps_the_last(tmp_path):
    run = make_run(tmp_path, "r", epochs=12, steps_per_epoch=1)
    assert _frame_epochs(write_evolution_gif(run, max_frames=5), 0, range(1, 13)) == [1, 4, 7, 9, 12]
    assert pick_evenly(list(range(10)), 1) == [9]


def test_evolution_gif_without_samples_is_none(tmp_path):
    run = make_run(tmp_path, "r", epochs=2, samples=False)
    assert write_evolution_gif(run) is None and not (run / "evolution.gif").exists()
    with pytest.raises(RunError, match="run folder not found"):
        write_evolution_gif(tmp_path / "nope")


def test_evolution_gif_skips_a_grid_being_written(tmp_path):
    run = make_run(tmp_path, "r", epochs=3, steps_per_epoch=1)
    last = run / "samples" / "epoch_0004.png"
    last.write_bytes((run / "samples" / "epoch_0003.png").read_bytes()[:40])  # truncated PNG
    assert _frame_epochs(write_evolution_gif(run), 0, range(1, 4)) == [1, 2, 3]
    for p in (run / "samples").iterdir():
        p.write_bytes(b"")
    assert write_evolution_gif(run) is None


# ------------------------------------------------------------------------------------------ grids


def test_save_grid_maps_minus_one_to_black_and_one_to_white(tmp_path):
    images = torch.full((4, 3, 8, 8), -1.0)
    images[1] = 1.0
    images[2] = 5.0  # clipped to 1
    path = save_grid(images.requires_grad_(), tmp_path / "g" / "grid.png")
    with Image.open(path) as im:
        assert im.size == (2 * 10 + 2, 2 * 10 + 2)  # two per row, 2 px padding
        assert im.getpixel((2 + 4, 2 + 4)) == (0, 0, 0)
        assert im.getpixel((12 + 4, 2 + 4)) == (255, 255, 255)
        assert im.getpixel((2 + 4, 12 + 4)) == (255, 255, 255)
    assert no_temp_files(tmp_path)
    with Image.open(save_grid(torch.zeros(6, 1, 8, 8), tmp_path / "gray.png", nrow=6)) as im:
        assert im.size == (6 * 10 + 2, 12)


def test_a_grid_over_max_side_is_reduced_by_a_whole_factor_and_says_so(tmp_path):
    """Training's grids at 1000 px were 8018 x 8018 (64 images): with `max_side` a larger grid is reduced by the
    smallest whole factor that fits (each cell still one image, black padding between), the factor in a PNG text entry
    for `gankit compare`; one that fits, or without `max_side` (`gankit sample --grid`), is written as it is."""
    from gankit.report.grids import REDUCED_KEY

    images = torch.full((16, 3, 16, 16), 1.0)  # 4 x 4 of 16 px: 74 px
    with Image.open(save_grid(images, tmp_path / "r.png", max_side=40)) as im:
        assert im.size == (37, 37) and im.info[REDUCED_KEY] == "2"
        assert im.getpixel((1 + 4, 1 + 4)) == (255, 255, 255) and im.getpixel((0, 0)) == (0, 0, 0)
    with Image.open(save_grid(images, tmp_path / "r3.png", max_side=30)) as im:
        assert im.size == (25, 25) and im.info[REDUCED_KEY] == "3"
    for path in (save_grid(images, tmp_path / "fits.png", max_side=74), save_grid(images, tmp_path / "full.png")):
        with Image.open(path) as im:
            assert im.size == (74, 74) and REDUCED_KEY not in im.info
    with Image.open(label_grid(torch.rand(5, 2, 3, 16, 16), list("abcde"), tmp_path / "l.png", max_side=50)) as im:
        assert im.height == (5 * 18 + 2 + 1) // 2 and im.info[REDUCED_KEY] == "2"


def test_label_grid_has_one_row_per_label_and_a_name_column(tmp_path):
    images = torch.rand(3, 4, 3, 16, 16) * 2 - 1
    path = label_grid(images, ["fire", "water", "grass"], tmp_path / "labels.png")
    with Image.open(path) as im:
        plain_width = 4 * 18 + 2
        assert im.size[1] == 3 * 18 + 2 and im.size[0] > plain_width + 10
        margin = im.crop((0, 0, im.size[0] - plain_width, im.size[1])).convert("L")
        assert margin.getextrema()[1] > 128  # white text drawn in the black name column
    with pytest.raises(ValueError, match="2 label names for 3 rows"):
        label_grid(images, ["a", "b"], tmp_path / "bad.png")


# ---------------------------------------------------------------------------------------- compare


def test_flatten_config_and_durations():
    assert flatten_config({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}
    assert (format_duration(5), format_duration(125), format_duration(7384)) == ("5s", "2m 05s", "2h 03m 04s")


def test_compare_report_shows_differences_best_metrics_and_all_images(three_runs, tmp_path):
    a, b, c = three_runs
    write_evolution_gif(a)  # b and c have no evolution.gif: made in memory
    out = write_compare_report([a, b, c], tmp_path / "out" / "report.html")
    page = out.read_text(encoding="utf-8")

    for sid in ("config-diff", "best-metrics", "final-grids", "evolution", "fid-curves", "loss-curves",
                "accuracy-curves"):
        assert f'id="{sid}"' in page
    diff = _config_section(page)
    for key in ("train.lr_g", "train.loss", "train.epochs", "name", "wgan-gp", "hinge"):
        assert key in diff
    for same in ("model.ngf", "data.resolution", "train.batch_size", "seed"):
        assert same not in diff
    # the name changes no training: greyed, after the keys that do
    assert '<tr class="aside"><th scope="row"><code>name</code>' in diff and "Grey rows" in diff
    assert diff.index("<code>name</code>") > max(diff.index(f"<code>{k}</code>") for k in ("train.lr_g", "train.loss"))
    assert '<tr class="aside"><th scope="row"><code>train.' not in diff
    best = page[page.index('id="best-metrics"'):page.index('id="final-grids"')]
    assert "120.00" in best and "90.50" in best and "no FID logged" in best
    assert "0.1200" in best  # KID at the best FID
    # 3 final grids + 3 GIFs + FID vs epoch + FID vs minutes + one loss figure
    # 3 grids, 3 GIFs, FID and KID vs epoch and vs time, (D, G) x 2 loss groups, D's accuracy on real images and
    # fakes, and the class accuracy on real images that wgan_gp logged
    assert page.count("<img ") == 17
    assert page.count('src="data:image/gif;base64,') == 3
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing external
    assert "<script" not in page and "<link" not in page
    for label in ("dcgan_bce", "wgan_gp", "no_fid"):
        assert label in page
    assert no_temp_files(out.parent)


def test_compare_report_shows_every_runs_samples_at_one_size(tmp_path):
    """A conditional run's grid (one row per class, a name column) is narrower and taller than an 8 x 8 grid: each
    run's grid and GIF get the share of the width that its number of images across takes, so images show at one
    size; a 32 px run's 8 x 8 grid is as wide as a 64 px one's."""
    wide, narrow, small = (make_run(tmp_path, name, run_index=i, epochs=2) for i, name in enumerate(("w", "n", "s")))
    Image.new("RGB", (8 * 66 + 2, 8 * 66 + 2)).save(wide / "samples" / "epoch_0002.png")  # 8 x 8 at 64 px
    Image.new("RGB", (4 * 66 + 2, 18 * 66 + 2)).save(narrow / "samples" / "epoch_0002.png")  # names + 3 columns
    config = small / "config.yaml"
    config.write_text(config.read_text().replace("resolution: 64", "resolution: 32"))
    Image.new("RGB", (8 * 34 + 2, 8 * 34 + 2)).save(small / "samples" / "epoch_0002.png")
    page = write_compare_report([wide, narrow, small], tmp_path / "r.html").read_text(encoding="utf-8")
    for sid in ("final-grids", "evolution"):
        section = page[page.index(f'id="{sid}"'):]
        section = section[:section.index("</section>")]
        widths = re.findall(r'<img class="sample" style="width: ([0-9.]+)%"', section)
        assert widths == ["100.0", "50.0", "100.0"], sid


def test_compare_report_sizes_a_reduced_grid_by_its_images_not_its_pixels(tmp_path):
    """Training reduces a grid over 4096 px (64 images at 1000 px: 8018 -> 4009 px): its 8 images across count as 8,
    not the 4 that its pixels over 1002 would give, beside a 4-across grid of the same resolution."""
    from PIL import PngImagePlugin

    from gankit.report.grids import REDUCED_KEY

    big, small = (make_run(tmp_path, name, run_index=i, epochs=2) for i, name in enumerate(("big", "small")))
    for run in (big, small):
        config = run / "config.yaml"
        config.write_text(config.read_text().replace("resolution: 64", "resolution: 1000"))
    info = PngImagePlugin.PngInfo()
    info.add_text(REDUCED_KEY, "2")
    Image.new("RGB", (4009, 4009)).save(big / "samples" / "epoch_0002.png", pnginfo=info)
    Image.new("RGB", (4 * 1002 + 2, 4 * 1002 + 2)).save(small / "samples" / "epoch_0002.png")
    page = write_compare_report([big, small], tmp_path / "r.html").read_text(encoding="utf-8")
    section = page[page.index('id="final-grids"'):]
    widths = re.findall(r'<img class="sample" style="width: ([0-9.]+)%"', section[:section.index("</section>")])
    assert widths == ["100.0", "50.0"]


def test_compare_report_notes_missing_pieces_and_escapes_config_text(tmp_path):
    full = make_run(tmp_path, "full", fids=FIDS_A)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.yaml").write_text('name: "<script>alert(1)</script>"\ntrain: {lr_g: 0.1}\n')
    page = write_compare_report([full, bare], tmp_path / "r.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _config_section(page) and "<script>" not in page
    assert page.count("Not available") >= 2  # bare: no final grid, no GIF
    assert "no FID logged" in page


def test_compare_single_run_shows_every_key_and_duplicate_names_get_parents(tmp_path):
    one = make_run(tmp_path / "x", "run", fids=None, samples=False)
    page = write_compare_report([one], tmp_path / "r.html").read_text()
    assert "model.ngf" in _config_section(page) and "data.resolution" in _config_section(page)
    assert "no run logged FID" in page
    two = make_run(tmp_path / "y", "run", fids=None, samples=False)
    page = write_compare_report([one, two], tmp_path / "r2.html").read_text()
    assert "x/run" in page and "y/run" in page


def test_run_names_with_dollars_or_a_leading_underscore_show_literally_in_plots_and_legends(tmp_path, monkeypatch):
    """matplotlib reads `$...$` as math (`budget_$100_vs_$200` failed to draw: train's plots and compare both ended
    in an internal error) and leaves out of a legend every label starting with "_" (`_baseline` had a curve and no
    entry)."""
    import gankit.report.compare as compare
    from gankit.report.plots import figure_png, losses_figure

    names = ["budget_$100_vs_$200", "_baseline", "price $5 and $6"]
    runs = [make_run(tmp_path, name, run_index=i, epochs=2, fids=FIDS_A) for i, name in enumerate(names)]
    for run in runs:
        assert {p.name for p in write_plots(run)} >= {"losses.png", "fid.png"}
    title = losses_figure(load_run(runs[0])).axes[0].title
    assert title._preprocess_math(title.get_text()) == ("budget_$100_vs_$200: losses", False)  # shown as it is
    figures = []

    def kept(fig):
        figures.append(fig)
        return figure_png(fig)

    monkeypatch.setattr(compare, "figure_png", kept)
    write_compare_report(runs, tmp_path / "r.html")
    assert len(figures) == 8  # FID and KID vs epoch and vs time, D loss, G loss, D accuracy on real images and fakes
    for fig in figures:
        (legend,) = fig.legends
        # every name, as it is (in matplotlib's column-first order: the legend reads by rows)
        assert sorted(t.get_text().replace("\\$", "$") for t in legend.get_texts()) == sorted(names)


def test_compare_counts_finished_epochs_and_does_not_show_a_stale_evolution_gif(tmp_path, monkeypatch):
    """A run in progress (or killed) logs steps of an epoch it has not finished, and its evolution.gif may be older
    than its last grids (written after a kill, or skipped at a short epoch's end): the page counted the unfinished
    epoch and showed the old GIF, which ended epochs earlier than the grid above it. The unfinished epoch is told
    apart (test_compare_page: '3 (+25% of 4)'), in the GIF made for the page too."""
    import os

    import gankit.report.compare
    from gankit.report.compare import _evolution_gif

    made, make = {}, gankit.report.compare.evolution_gif_bytes
    monkeypatch.setattr(gankit.report.compare, "evolution_gif_bytes", lambda *a, **k: made.update(k) or make(*a, **k))

    run = make_run(tmp_path, "r", epochs=3, steps_per_epoch=4, torn=False)
    write_evolution_gif(run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "step", "step": 13, "epoch": 4, "time": 6.5, "d_loss": 1.0, "g_loss": 1.0}) + "\n")
    assert load_run(run).total_epochs == 3
    assert _evolution_gif(load_run(run)) == ((run / "evolution.gif").read_bytes(), "")
    Image.new("RGB", GRID_SIZE, epoch_color(0, 4)).save(run / "samples" / "epoch_0004.png")
    os.utime(run / "evolution.gif", (time.time() - 60,) * 2)
    data, note = _evolution_gif(load_run(run))
    assert "older than the last grid" in note and made["unfinished"] == 4
    with Image.open(__import__("io").BytesIO(data)) as gif:
        assert gif.n_frames == 4
    assert load_run(run).total_epochs == 3  # the grid of an epoch a budget ended inside: not a finished epoch
    assert load_run(run).unfinished_epoch == (4, pytest.approx(0.25))  # step 13 of 4 an epoch


def test_an_evolution_gif_a_moment_older_than_the_last_grid_is_not_stale(tmp_path):
    """`cp -r` (no -p) gives a finished run's files new times in any order, milliseconds apart: its GIF was called
    stale and remade. A GIF older than the last grid by a moment is used as is; by a minute, it is remade."""
    import os

    from gankit.report.compare import _evolution_gif

    run = make_run(tmp_path, "r", epochs=3)
    Image.new("RGB", GRID_SIZE, epoch_color(0, 3)).save(run / "evolution.gif")  # one frame: told apart from a remade one
    grid_time = (run / "samples" / "epoch_0003.png").stat().st_mtime
    os.utime(run / "evolution.gif", (grid_time - 0.5,) * 2)
    assert _evolution_gif(load_run(run)) == ((run / "evolution.gif").read_bytes(), "")
    os.utime(run / "evolution.gif", (grid_time - 60,) * 2)
    data, note = _evolution_gif(load_run(run))
    assert "older than the last grid" in note
    with Image.open(__import__("io").BytesIO(data)) as gif:
        assert gif.n_frames == 3


def test_a_damaged_grid_or_evolution_gif_is_not_embedded_as_a_broken_image(tmp_path):
    """The page embedded a truncated samples/epoch_NNNN.png and a corrupt evolution.gif as they were, which showed
    as broken images: the newest grid that decodes is shown (the note names the ones that do not), the GIF is made
    from the grids instead, and a run with nothing readable says "Not available"."""
    import base64

    run = make_run(tmp_path, "r", epochs=3)
    write_evolution_gif(run)
    last = run / "samples" / "epoch_0003.png"
    last.write_bytes(last.read_bytes()[:80])  # cut inside its pixels (a disk that filled up, a copy stopped midway)
    gif = run / "evolution.gif"
    gif.write_bytes(gif.read_bytes()[:len(gif.read_bytes()) // 2])  # newer than the grids: not stale, damaged
    lone = make_run(tmp_path, "lone", run_index=1, epochs=1)
    (lone / "samples" / "epoch_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n not the rest")
    (lone / "evolution.gif").write_bytes(b"GIF89a garbage")
    page = write_compare_report([run, lone], tmp_path / "r.html").read_text()

    def uri(path):
        return base64.b64encode(path.read_bytes()).decode("ascii")

    grids = page[page.index('id="final-grids"'):page.index('id="evolution"')]
    assert uri(run / "samples" / "epoch_0002.png") in grids and uri(last) not in grids
    assert "epoch 2; epoch_0003.png cannot be read (damaged or truncated)" in grids
    assert "Not available: no grid in samples/ can be read (epoch_0001.png damaged or unreadable)." in grids
    evolution = page[page.index('id="evolution"'):page.index('id="fid-curves"')]
    assert uri(gif) not in evolution and "made from samples/ for this page (evolution.gif is damaged or truncated)" \
        in evolution
    assert evolution.count("data:image/gif") == 1  # r's, made from its two readable grids; none for lone
    assert "Not available: the sample grids cannot be read" in evolution


def test_a_run_without_config_yaml_is_left_out_of_the_config_table(tmp_path):
    """A run that lost its config.yaml made every key of the others "differ" (96 of 96, burying the one real
    difference): the table compares the runs that have one, and says which has none."""
    a, b, c = (make_run(tmp_path, name, run_index=i, epochs=1, lr_g=lr) for i, (name, lr)
               in enumerate((("a", 1e-4), ("b", 2e-4), ("lost", 2e-4))))
    (c / "config.yaml").unlink()
    page = write_compare_report([a, b, c], tmp_path / "r.html").read_text()
    diff = _config_section(page)
    assert re.findall(r"<code>([^<]+)</code>", diff) == ["train.lr_g", "name"]
    assert "No config.yaml in lost" in diff


def test_a_run_whose_config_yaml_cannot_be_read_is_compared_without_it(tmp_path, capsys):
    """One run's garbled config.yaml stopped `gankit compare` whole ("nockc/config.yaml is not valid YAML", no fix
    given): the page is written, that run's metrics, grids and curves in it, its config left out of the table, and a
    warning line names it. A folder with nothing else to show is still refused."""
    a, b = (make_run(tmp_path, name, run_index=i, epochs=2, lr_g=lr, fids=[90.0, 80.0]) for i, (name, lr)
            in enumerate((("a", 1e-4), ("b", 2e-4))))
    garbled, listed = (make_run(tmp_path, name, run_index=2 + i, epochs=2, fids=[70.0 + i, 60.0 + i])
                       for i, name in enumerate(("nockc", "listed")))
    (garbled / "config.yaml").write_text("train: {lr_g: [\n")
    (listed / "config.yaml").write_text("- 1\n- 2\n")
    page = write_compare_report([a, garbled, b, listed], tmp_path / "r.html").read_text()
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings)
    assert f"{garbled / 'config.yaml'} is not valid YAML" in warnings[0]
    assert f"{garbled} is compared without it" in warnings[0]
    assert f"{listed / 'config.yaml'} should hold a mapping" in warnings[1]
    diff = _config_section(page)
    assert re.findall(r"<code>([^<]+)</code>", diff) == ["train.lr_g", "name"]
    assert "An unreadable config.yaml in nockc, listed: left out of this table." in diff
    best = page[page.index('id="best-metrics"'):page.index('id="final-grids"')]
    # how nockc and listed measured is unknown: their 60.00 and 61.00 are shown, not ranked against a and b's 80.00
    assert best.count('<td class="num best">80.00 <span class="aside">best</span></td>') == 4  # best and last FIDs
    assert all(best.count(f'<td class="num">{fid:.2f}</td>') == 2 for fid in (60.0, 61.0))
    assert "Not ranked (config.yaml unreadable or missing, so how FID was measured is unknown): nockc and listed." \
        in best
    assert page.count('alt="nockc: final samples"') == 1
    (tmp_path / "only" / "config.yaml").parent.mkdir()
    (tmp_path / "only" / "config.yaml").write_text("a: [unclosed\n")
    with pytest.raises(RunError, match="not valid YAML"):
        write_compare_report([a, tmp_path / "only"], tmp_path / "r.html")


def test_a_key_an_older_runs_config_lacks_counts_as_its_default(tmp_path):
    """A run made by an older gankit lacks the keys added since: each counted as differing ("26 of 96 config keys
    differ" where 3 did). A lacking key counts as this gankit's default; one that differs from it shows "—" and the
    default; a key this gankit has no default for still differs. Nor do such runs' FIDs count as measured apart."""
    old, new = (make_run(tmp_path, name, run_index=i, epochs=1, fids=[90.0]) for i, name in enumerate(("old", "new")))
    config = new / "config.yaml"
    config.write_text(config.read_text() + "eval:\n  share: 0.1\n  n_fake: 1000\nmodel_extra: 3\n")
    config.write_text(config.read_text().replace("lr_g: 0.0002", "lr_g: 0.0001\n  ema: 0.0\n  nan_policy: rollback"))

    def diff():
        page = write_compare_report([old, new], tmp_path / "r.html").read_text()
        assert "do not compare" not in page  # eval.n_fake: 1000 is the default the old run used
        return _config_section(page)

    table = diff()
    assert re.findall(r"<code>([^<]+)</code>", table) == ["train.lr_g", "model_extra", "name"]
    assert "3 of 21 config keys differ; the 18 identical ones are not shown." in table
    assert '<td class="missing">\u2014</td>' in table  # model_extra: no default to count as

    config.write_text(config.read_text().replace("share: 0.1", "share: 0.5"))
    table = diff()
    assert re.findall(r"<code>([^<]+)</code>", table) == ["train.lr_g", "model_extra", "name", "eval.share"]
    assert '<td class="missing">\u2014 (default: 0.1)</td><td class="">0.5</td>' in table


def test_a_runs_name_keeps_its_swatch_and_breaks_after_its_separators_over_its_grids_and_in_the_legend(tmp_path):
    """On a phone, 15 runs of long names ('pokemon16_dcgan_bce_baseline_again'): the legend at the top and the captions
    over the grids and GIFs had each swatch alone on a line above its name, which broke inside words ('baseline_ag'
    over 'ain'), as the tables' names did before they were written as `_named` writes them."""
    from gankit.report.compare import _color, _named

    name = "pokemon16_dcgan_bce_baseline_again"
    page = write_compare_report([make_run(tmp_path, name, epochs=1)], tmp_path / "r.html").read_text()
    named = _named(name, _color(0))
    assert "<wbr>" in named and f"<li><b>{named}</b>" in page
    assert page.count(f"<figcaption>{named}</figcaption>") == 2  # its final grid and its GIF
    # in a table, the swatch keeps to the name's first part (STYLE's .lead); a short name without separators is that part
    assert named.endswith('\u2060pokemon16_<wbr></span>dcgan_<wbr>bce_<wbr>baseline_<wbr>again')
    assert _named("pokemon16", _color(0)).endswith('\u2060pokemon16</span>')


def test_the_config_table_highlights_the_values_other_than_their_rows_most_common_one(tmp_path):
    """Among 15 runs' columns, each run changing one key of a baseline, every row showed 15 values where one differed,
    nothing marking which: a value other than its row's most common one (of values as common, the first run's) is
    highlighted; not in the grey rows, whose values (the names) all differ."""
    runs = [make_run(tmp_path, f"r{i}", run_index=i, epochs=1, lr_g=1e-4 if i == 2 else 2e-4,
                     loss="hinge" if i in (1, 3) else "bce") for i in range(4)]

    def rows(page):
        table = _config_section(page)
        return {key: re.findall(r'<td class="([^"]*)">', row)
                for key, row in re.findall(r"<code>([^<]+)</code></th>(.*?)</tr>", table)}

    assert rows(write_compare_report(runs, tmp_path / "r.html").read_text()) == {
        "train.loss": ["", "odd", "", "odd"],  # 2 bce, 2 hinge: the first run's bce counts as the common one
        "train.lr_g": ["", "", "odd", ""],
        "name": ["", "", "", ""],
    }
    assert rows(write_compare_report(runs[1:3], tmp_path / "r.html").read_text())["train.lr_g"] == ["", "odd"]


def test_the_config_table_points_out_runs_with_the_same_training_config(tmp_path):
    """Two of 15 runs with one config (a repeat) showed only their names differing, in a grey row among 14 others, and
    their curves drawn on one another, one of them hidden: the table names such repeats; not runs that differ."""
    a, b = (make_run(tmp_path, name, run_index=i, epochs=1, fids=[90.0]) for i, name in enumerate(("base", "again_1")))
    c = make_run(tmp_path, "lr", run_index=2, epochs=1, lr_g=1e-4, fids=[80.0])
    (b / "config.yaml").write_text((b / "config.yaml").read_text().replace("every: 10", "every: 5"))  # log.every
    page = write_compare_report([a, c, b], tmp_path / "r.html").read_text()
    table = _config_section(page)
    assert "Repeats, the same training config (only grey rows differ): base and again_1;" in table
    assert "base and again_<wbr>1;" in page  # a long name breaks after its separators, not inside a word
    assert table.count("Repeats") == 1
    assert "Repeats" not in _config_section(write_compare_report([a, c], tmp_path / "r.html").read_text())


def test_compare_imports_neither_torch_nor_torchvision(tmp_path, monkeypatch):
    """The page reads two constants of report.grids, whose import of torchvision took 2.5 s of 18 (15 runs), and of
    torch ~3 s, as did `metrics.kid_spread_is_none`, asked of each eval line that logged n_fake and n_real; and
    torch again where a run stopped before its end, from gankit.distributed, which says how to resume it."""
    run = make_run(tmp_path, "a", epochs=1, fids=[100.0], torn=False)
    stopped = make_run(tmp_path, "stopped", run_index=1, epochs=1, fids=[90.0])
    (stopped / "config.yaml").write_text((stopped / "config.yaml").read_text().replace("epochs: 1", "epochs: 10"))
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        if line["kind"] == "eval":
            line["n_real"] = line["n_fake"]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for name in ("gankit.report.grids", "gankit.metrics", "gankit.distributed"):
        parent, _, child = name.rpartition(".")
        if name in sys.modules:  # (the import anew binds its package's attribute too: put back after the test, else a
            monkeypatch.setattr(sys.modules[parent], child, sys.modules[name])  # later test patched another module)
        monkeypatch.delitem(sys.modules, name, raising=False)  # imported anew (restored after the test)
    for name in ("torch", "torchvision", "torchvision.utils"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it fails
    page = write_compare_report([run, stopped], tmp_path / "r.html").read_text()
    assert "<img" in page and "0.1000</td>" in page  # KID without its spread: none by construction
    assert f"gankit train --run {stopped} resumes it" in page


def test_compare_rejects_folders_that_are_not_runs(tmp_path):
    with pytest.raises(RunError, match="not a gankit run folder"):
        write_compare_report([tmp_path], tmp_path / "r.html")
    with pytest.raises(RunError, match="no runs"):
        write_compare_report([], tmp_path / "r.html")


def test_compare_refuses_one_run_twice(tmp_path):
    """The same folder twice (however written) was compared with itself as "run" and "run (2)"."""
    run = make_run(tmp_path, "run", epochs=1)
    with pytest.raises(RunError, match="are the same run: pass each run once"):
        write_compare_report([run, tmp_path / "." / "run" / ".." / "run"], tmp_path / "r.html")
    with pytest.raises(RunError, match="'.*run' is given twice"):
        write_compare_report([run, run], tmp_path / "r.html")


def test_compare_warns_when_runs_measured_fid_with_other_image_counts(tmp_path):
    """eval.n_fake / n_real change the FID a run logs (FID falls with more images): they are not greyed as
    "what a run writes", and the best-metrics table says that such runs' FIDs do not compare."""
    a, b = (make_run(tmp_path, name, run_index=i, epochs=2, fids=[200.0, 150.0]) for i, name in enumerate("ab"))

    def best_metrics(*runs):
        page = write_compare_report(list(runs), tmp_path / "r.html").read_text()
        return _config_section(page), \
            page[page.index('id="best-metrics"'):page.index('id="final-grids"')]

    _, best = best_metrics(a, b)
    assert "do not compare" not in best
    config = b / "config.yaml"
    config.write_text(config.read_text() + "eval:\n  n_fake: 5000\n  every: 1\n")
    diff, best = best_metrics(a, b)
    assert "FID with different eval.n_fake" in best and "their KIDs do" in best
    assert '<tr><th scope="row"><code>eval.n_fake</code>' in diff
    assert '<tr class="aside"><th scope="row"><code>eval.every</code>' in diff


def test_compare_warns_that_runs_at_other_resolutions_measured_fid_against_other_real_images(tmp_path):
    """Among 15 runs, one at 32 px had a FID measured against the real images at 32 px, the others at 16 px: nothing said
    that their FIDs and KIDs do not compare; said, it must name that run, or the other 14, which do compare, seem not
    to."""
    a, b, c = (make_run(tmp_path, name, run_index=i, epochs=2, fids=[200.0, 150.0]) for i, name in enumerate("abc"))
    (b / "config.yaml").write_text((b / "config.yaml").read_text().replace("resolution: 64", "resolution: 32"))
    page = write_compare_report([a, b, c], tmp_path / "r.html").read_text()
    best = page[page.index('id="best-metrics"'):page.index('id="final-grids"')]
    assert ("These runs measured FID and KID with different data.resolution: each run is measured against the real"
            " images at its own resolution, other images, so neither their FIDs nor their KIDs compare.") in best
    assert ("Measured otherwise: data.resolution 32 in b, 64 in the others (runs measured alike compare with each"
            " other).") in best


def test_compare_greys_eval_fake_classes_when_no_run_is_conditional(tmp_path):
    """An old dcgan run (config.yaml without eval.fake_classes: it counts as uniform) and a new one showed an
    eval.fake_classes row styled as a real difference, though unconditional runs draw no classes: greyed, and said
    why; among conditional runs it is a difference like any other."""
    a, b = make_run(tmp_path, "a", epochs=2), make_run(tmp_path, "b", run_index=1, epochs=2, lr_g=1e-4)
    config = b / "config.yaml"
    config.write_text(config.read_text() + "eval:\n  fake_classes: data\n")
    diff = _config_section(write_compare_report([a, b], tmp_path / "r.html").read_text())
    assert '<tr class="aside"><th scope="row"><code>eval.fake_classes</code>' in diff
    assert "Grey too: eval.fake_classes, which matters to conditional runs only (none of these is)." in diff
    assert diff.index("<code>eval.fake_classes</code>") > diff.index("<code>train.lr_g</code>")  # after what matters
    config.write_text(config.read_text().replace("arch: dcgan", "arch: acgan"))  # one conditional run: it matters
    diff = _config_section(write_compare_report([a, b], tmp_path / "r.html").read_text())
    assert '<tr><th scope="row"><code>eval.fake_classes</code>' in diff and "Grey too" not in diff


def test_gankit_compare_counts_the_runs_once_it_takes_more_than_a_moment(tmp_path, monkeypatch, capsys):
    """8 runs whose evolution GIFs were out of date took 17 s without a word: past PROGRESS_AFTER_S (here 0) the
    command counts the runs done, in a line off a terminal (or a bar on one); a quicker comparison says nothing."""
    from gankit import console
    from gankit.cli import main
    from gankit.report import compare

    runs = [str(make_run(tmp_path, name, run_index=i, epochs=2)) for i, name in enumerate("abc")]
    monkeypatch.setattr(compare, "PROGRESS_AFTER_S", 600.0)  # (a loaded machine may take the real 2 s)
    with pytest.raises(SystemExit) as done:
        main(["compare", *runs, "-o", str(tmp_path / "r.html")])
    assert done.value.code == 0 and capsys.readouterr().err == ""
    monkeypatch.setattr(compare, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(console, "LINE_EVERY", 0.0)
    with pytest.raises(SystemExit) as done:
        main(["compare", *runs, "-o", str(tmp_path / "r.html")])
    lines = capsys.readouterr().err.splitlines()
    assert done.value.code == 0 and [line.split(" (")[0] for line in lines] == [
        "comparing runs: 1/3 runs", "comparing runs: 2/3 runs"], lines
    write_compare_report(runs, tmp_path / "r.html")  # (the library says nothing unless asked)
    assert capsys.readouterr().err == ""


def test_twenty_runs_get_twenty_colours():
    from gankit.report.compare import _color, _dash

    assert len({_color(i) for i in range(20)}) == 20
    assert len({(_color(i), _dash(i)) for i in range(40)}) == 40  # plotted lines: colour and dash


def test_compare_marks_a_run_that_stopped_before_its_budget(tmp_path):
    """A run killed at epoch 2 of its 10 showed as a finished run of 2 epochs: the legend says it stopped early and how
    to resume it; not of a run whose max_steps were spent inside its epochs, nor of one with a budget in minutes."""
    def run(name, i, budget):
        path = make_run(tmp_path, name, run_index=i, epochs=2, steps_per_epoch=5)
        (path / "config.yaml").write_text((path / "config.yaml").read_text().replace("epochs: 2", budget))
        return path

    killed = run("killed", 0, "epochs: 10\n  max_steps: 100")
    stepped, timed = run("stepped", 1, "epochs: 10\n  max_steps: 10"), run("timed", 2, "epochs: 10\n  minutes: 1")
    page = write_compare_report([killed, stepped, timed, run("done", 3, "epochs: 2")], tmp_path / "r.html").read_text()
    header = page[:page.index("<nav>")]
    assert header.count("stopped before its end") == 1
    assert (f"stopped before its end (2 of 10 epochs, 10 of 100 iterations): it crashed or was stopped; gankit train"
            f" --run {killed} resumes it</span></li>") in header


def test_compare_marks_a_run_that_is_training_now(tmp_path):
    from gankit import runlock

    live, done = make_run(tmp_path, "live", epochs=1), make_run(tmp_path, "done", run_index=1, epochs=1)
    with runlock.hold(live, "--run"):
        page = write_compare_report([live, done], tmp_path / "r.html").read_text()
    header = page[:page.index("<nav>")]
    assert header.count("training now") == 1 and header.index("training now") < header.index("\u2060done")
    assert "training now" not in write_compare_report([live, done], tmp_path / "r.html").read_text()


def test_a_run_folder_whose_name_is_not_utf8_has_its_plots_and_compare_page(tmp_path):
    """A folder name in Latin-1 bytes (an old Windows disk) reaches Python as lone surrogates: matplotlib refused the
    title (train's plots failed at every epoch end) and the compare page could not be encoded."""
    import os

    name = os.fsdecode(b"caf\xe9")
    runs = [make_run(tmp_path, name, epochs=2, fids=FIDS_A), make_run(tmp_path, "plain", run_index=1, epochs=2)]
    assert {p.name for p in write_plots(runs[0])} >= {"losses.png", "fid.png"}
    page = write_compare_report(runs, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "caf\ufffd" in page


def test_evolution_gif_holds_the_last_frame_not_the_first(tmp_path):
    run = make_run(tmp_path, "r", epochs=3, steps_per_epoch=1)
    with Image.open(write_evolution_gif(run, duration_ms=50)) as im:
        assert [f.info["duration"] for f in ImageSequence.Iterator(im)] == [50, 50, 50 * LAST_FRAME_HOLD]


def test_best_fid_is_the_earliest_of_equal_ones(tmp_path):
    best = load_run(make_run(tmp_path, "r", epochs=4, fids=[200.0, 150.0, 150.0, 170.0])).best
    assert (best.fid, best.epoch, best.step) == (150.0, 2, 80)


def test_the_table_shows_the_last_fid_and_the_final_grid_its_epoch(tmp_path):
    a = make_run(tmp_path, "a", epochs=4, fids=[200.0, 150.0, 120.0, 130.0])
    page = write_compare_report([a], tmp_path / "r.html").read_text()
    best = page[page.index('id="best-metrics"'):page.index('id="final-grids"')]
    assert '<td class="num">120.00</td>' in best and '<td class="num">130.00</td>' in best  # one run: none is best
    assert "200.00" not in best
    grids = page[page.index('id="final-grids"'):page.index('id="evolution"')]
    assert '<p class="note">epoch 4</p>' in grids and "epoch 1<" not in grids


def test_a_run_without_fid_measured_with_other_counts_raises_no_warning(tmp_path):
    """Only runs that logged FID are compared on eval.n_fake."""
    a = make_run(tmp_path, "a", run_index=0, epochs=2, fids=[200.0, 150.0])
    c = make_run(tmp_path, "c", run_index=1, epochs=2, fids=None)
    (c / "config.yaml").write_text((c / "config.yaml").read_text() + "eval:\n  n_fake: 5000\n")
    page = write_compare_report([a, c], tmp_path / "r.html").read_text()
    assert "eval.n_fake" in _config_section(page)
    assert "do not compare" not in page and "not comparable" not in page


def test_other_png_draws_a_key_only_eval_lines_carry_against_epochs(tmp_path):
    from gankit.report import plots

    (tmp_path / "config.yaml").write_text("name: r\n")
    lines = []
    for epoch in (1, 2, 3):
        lines.append({"kind": "step", "step": 5 * epoch, "epoch": epoch, "time": 10.0 * epoch, "d_loss": 0.5})
        lines.append({"kind": "eval", "step": 5 * epoch, "epoch": epoch, "time": 10.0 * epoch + 1,
                      "fid": 90.0 - epoch, "eval_seconds": 2.0 * epoch})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    fig = plots.other_figure(load_run(tmp_path))
    assert fig is not None
    (ax,) = fig.axes
    assert ax.get_title() == "eval_seconds" and ax.get_xlabel() == "epoch"
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 3] and list(ax.get_lines()[0].get_ydata()) == [2, 4, 6]


def test_other_png_does_not_draw_the_epochs_done_of_step_lines(tmp_path):
    """Step lines place themselves with epochs_done (fractional epochs, as step and time place them): an axis, not a
    metric, so other.png has no panel of it."""
    from gankit.report import plots

    (tmp_path / "config.yaml").write_text("name: r\n")
    lines = [{"kind": "step", "step": s, "epoch": 1, "epochs_done": s / 80, "time": float(s), "img_per_s": 100.0 + s}
             for s in range(10, 60, 10)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    fig = plots.other_figure(load_run(tmp_path))
    assert [ax.get_title() for ax in fig.axes] == ["img_per_s"]


@pytest.mark.parametrize("after", [1, 2], ids=["changed", "constant"])
def test_other_png_ticks_the_thread_count_at_whole_numbers(tmp_path, after):
    """The threads panel (the count gankit.threads chose) had ticks at 1.2, 1.4... threads; a count that never changed
    (the usual run) at 1.900, 1.925... 2.100."""
    from gankit.report import plots

    (tmp_path / "config.yaml").write_text("name: r\n")
    lines = [{"kind": "step", "step": s, "epoch": 1, "time": float(s), "threads": 2 if s < 30 else after}
             for s in range(10, 60, 10)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    fig = plots.other_figure(load_run(tmp_path))
    (ax,) = fig.axes
    fig.canvas.draw()
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert ax.get_title() == "threads" and ticks and all(float(t).is_integer() for t in ticks), ticks
    assert 2 in ticks


# ------------------------------------------------------------------------------------------ writes


@pytest.mark.skipif(sys.platform == "win32", reason="no signal 0 to tell an ended process")
def test_a_write_removes_what_a_kill_left_of_an_earlier_write_of_the_same_file(tmp_path, capsys):
    """A kill -9 while `compare -o report.html` (or `sample --grid`) wrote left `.report.html.PID.tmp` beside it, which
    no later write removed (its own has another PID). The next write of report.html removes those of ended processes,
    with a line; that of a process still running (writing it now) is left to it."""
    import subprocess

    from gankit.report._io import write_bytes_atomic

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    cut = tmp_path / f".report.html.{int(ended.stdout)}.tmp"
    cut.write_bytes(b"<html>half a pa")  # the state the kill left
    running = tmp_path / f".report.html.{os.getppid()}.tmp"
    running.write_bytes(b"")
    write_bytes_atomic(tmp_path / "report.html", b"<html></html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "report.html"]
    assert f"removed '{cut}', left by a write of 'report.html' that a kill cut short" in capsys.readouterr().err


# ----------------------------------------------------------------------------- matplotlib's folder


@pytest.fixture
def mpl_env(tmp_path, monkeypatch):
    """HOME below a regular file (unwritable even for root), no XDG folders, no MPLCONFIGDIR, temporary files in
    tmp_path/tmp: what `_mplconfig.choose` sees on a cluster account or in a container with a read-only HOME."""
    import tempfile

    (tmp_path / "a-file").write_text("")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "a-file" / "home"))
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR"):
        monkeypatch.setenv(name, "")  # (set, so that monkeypatch removes what `choose` sets)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def test_matplotlib_says_nothing_when_home_cannot_be_written(mpl_env):
    """matplotlib logged 'mkdir -p failed for path ~/.config/matplotlib' and 'Matplotlib created a temporary cache
    directory ... it is highly recommended to set the MPLCONFIGDIR environment variable' in every training run."""
    import os
    import subprocess

    env = {**os.environ, "TMPDIR": str(mpl_env / "tmp"), "PYTHONPATH": str(Path(gankit.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", "import gankit.report.plots, matplotlib; print(matplotlib.get_cachedir())"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.strip() == str(mpl_env / "tmp" / f"gankit-matplotlib-{os.getuid()}")


def test_matplotlib_gets_a_private_folder_kept_between_runs(mpl_env):
    import os

    from gankit.report import _mplconfig

    _mplconfig.choose.__wrapped__()
    folder = mpl_env / "tmp" / f"gankit-matplotlib-{os.getuid()}"
    assert os.environ["MPLCONFIGDIR"] == str(folder) and (folder.stat().st_mode & 0o777) == 0o700
    os.environ["MPLCONFIGDIR"] = ""
    _mplconfig.choose.__wrapped__()  # the next run: the same folder
    assert os.environ["MPLCONFIGDIR"] == str(folder)


def test_matplotlib_is_not_given_a_folder_others_can_write(mpl_env):
    """A `gankit-matplotlib-<uid>` that others may write (or another user made) could hold a matplotlibrc of theirs:
    a new folder is used instead."""
    import os

    from gankit.report import _mplconfig

    shared = mpl_env / "tmp" / f"gankit-matplotlib-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    _mplconfig.choose.__wrapped__()
    chosen = Path(os.environ["MPLCONFIGDIR"])
    assert chosen != shared and chosen.parent == mpl_env / "tmp" and chosen.is_dir()


@pytest.mark.parametrize("setting", ["MPLCONFIGDIR", "HOME"])
def test_matplotlib_keeps_its_folder_where_it_can_write_it(mpl_env, monkeypatch, setting):
    """A folder the user set, or a writable HOME, is left to matplotlib."""
    import os

    from gankit.report import _mplconfig

    monkeypatch.setenv(setting, str(mpl_env / "mine"))
    _mplconfig.choose.__wrapped__()
    assert os.environ["MPLCONFIGDIR"] == (str(mpl_env / "mine") if setting == "MPLCONFIGDIR" else "")
    assert not list((mpl_env / "tmp").iterdir())
