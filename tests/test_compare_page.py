"""The comparison page's figures and tables: what they plot and how they are labelled."""

from __future__ import annotations

import json
import re

import pytest
from report_fakes import make_run

import gankit.report.compare as compare
from gankit.report.compare import write_compare_report
from gankit.report.runs import load_run


def _critic_run(tmp_path, name="wgan_gp_critic", epochs=3, steps_per_epoch=4, run_index=1, **kw):
    """A WGAN-GP run of the critic strategy: each step is one G update fed by n_critic = 5 batches, so an epoch has
    few steps; its critic loss is about 9.9 (mostly the gradient penalty) and its G loss near 0."""
    run = make_run(tmp_path, name, run_index=run_index, epochs=epochs, steps_per_epoch=steps_per_epoch,
                   loss="wgan_gp", torn=False, **kw)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        if "d_loss" in line:
            line["d_loss"], line["g_loss"], line["gp"] = 9.9 - 0.01 * line["step"], 0.001 * line["step"], 0.99
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


@pytest.fixture
def figures(monkeypatch):
    """Every figure the page embeds, in order."""
    drawn = []
    real = compare.figure_png

    def record(fig):
        drawn.append(fig)
        return real(fig)

    monkeypatch.setattr(compare, "figure_png", record)
    return drawn


def _loss_axes(figures):
    return [ax for fig in figures for ax in fig.axes if ax.get_ylabel() in ("d_loss", "g_loss")]


def _curve_ends(ax):
    """{run label: the last x of its drawn curve} (the labelled line of each run)."""
    return {line.get_label(): max(line.get_xdata()) for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_epoch_positions_place_steps_by_each_runs_steps_per_epoch(tmp_path):
    """Epoch lines give each epoch's last step: a step between two is placed linearly, one past the last by the
    last epoch's steps per epoch."""
    run = load_run(make_run(tmp_path, "r", epochs=3, steps_per_epoch=40))
    assert run.epoch_positions([40, 60, 120, 140]) == pytest.approx([1.0, 1.5, 3.0, 3.5])
    # a dataset that grew on a resume: epoch 3 took 80 steps, so a step past it is placed by 80 steps per epoch
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[:-1]]
    for line in lines:
        if line["kind"] == "epoch" and line["epoch"] == 3:
            line["step"] = 160
    (tmp_path / "r" / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert load_run(tmp_path / "r").epoch_positions([120, 160, 200]) == pytest.approx([2.5, 3.0, 3.5])
    critic = load_run(_critic_run(tmp_path, epochs=3, steps_per_epoch=1))
    assert critic.epoch_positions([1, 2, 3]) == pytest.approx([1.0, 2.0, 3.0])


def test_a_step_is_placed_among_a_long_runs_epochs_by_a_binary_search():
    """`gankit compare` of a run of 1,000,000 steps (50,000 epochs, 70,000 logged steps) ran for over 10 minutes:
    each step's place scanned the epoch ends from the first. It reads a handful of them now, and places it the same."""
    from gankit.report import runs

    class Counted(list):
        reads = 0

        def __getitem__(self, i):
            Counted.reads += 1
            return list.__getitem__(self, i)

    ks = Counted(float(20 * e) for e in range(50_001))
    es = [float(e) for e in range(50_001)]
    assert runs._interp(999_990.0, ks, es) == pytest.approx(49_999.5)
    assert Counted.reads < 100
    assert [runs._interp(x, ks, es) for x in (-10.0, 0.0, 10.0, 20.0, 1e6, 2e6)] == pytest.approx(
        [-0.5, 0.0, 0.5, 1.0, 50_000.0, 50_000.0])


def _with_epochs_done(run, batches_per_step=1, steps_per_epoch=80):
    """`run`'s step lines with the epochs done that training logs on them (batches consumed over batches per epoch):
    a step of the critic strategy consumes n_critic batches."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        if line["kind"] == "step":
            line["epochs_done"] = line["step"] * batches_per_step / steps_per_epoch
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def test_runs_shorter_than_an_epoch_are_drawn_along_the_epochs_their_step_lines_say_are_done(tmp_path, figures):
    """Runs compared inside their first epoch (a large dataset in its first hours on a CPU) had every point at
    epoch 1, the epoch under way: each curve was a vertical stroke. Their step lines' epochs_done place them: 20 steps
    of an 80-batch epoch end at 0.25, as do 4 critic steps of 5 batches; the axis has fractions of the epoch, not
    whole epochs around a squashed curve; the table says how far into epoch 1 they got."""
    import re

    bce = _with_epochs_done(_stopped_inside_an_epoch(make_run(tmp_path, "bce", epochs=1, steps_per_epoch=80,
                                                              torn=False), 20))
    critic = _with_epochs_done(_stopped_inside_an_epoch(_critic_run(tmp_path, epochs=1, steps_per_epoch=16), 4),
                               batches_per_step=5)
    run = load_run(bce)
    assert run.epoch_positions([1, 10, 20]) == pytest.approx([0.0125, 0.125, 0.25])
    assert load_run(critic).epoch_positions([1, 4]) == pytest.approx([0.0625, 0.25])
    assert (run.unfinished_epoch, load_run(critic).unfinished_epoch) == ((1, pytest.approx(0.25)),) * 2
    assert "epochs_done" not in run.numeric_keys("step")  # an axis, not a metric drawn as a curve
    page = write_compare_report([bce, critic], tmp_path / "r.html").read_text()
    axes = _loss_axes(figures)
    assert len(axes) == 4  # the critic's panels apart
    for ax in axes:
        for label, end in _curve_ends(ax).items():
            assert end == pytest.approx(0.25), (ax.get_title(), label, end)
        lo, hi = ax.get_xlim()
        assert lo > -0.1 and 0.25 < hi < 0.4, (ax.get_title(), lo, hi)  # the curve fills its panel
    table = page[page.index('id="best-metrics"'):page.index('id="final-grids"')]
    assert re.findall(r'<td class="num">(0 \(\+[^<]*)</td>', table) == ["0 (+25% of 1)"] * 2


def test_loss_curves_put_runs_on_epochs_and_wasserstein_losses_apart(tmp_path, figures):
    """A critic-strategy WGAN-GP run of 3 epochs (12 G steps) beside a BCE run of 3 epochs (120 steps): both curves
    end at epoch 3, the axis says "epoch", and the critic's loss (~9.9) has a panel of its own, so it does not
    squash the BCE run's curves."""
    bce = make_run(tmp_path, "bce", epochs=3, steps_per_epoch=40)
    wgp = _critic_run(tmp_path, epochs=3, steps_per_epoch=4)
    page = write_compare_report([bce, wgp], tmp_path / "r.html").read_text()
    axes = _loss_axes(figures)
    assert axes and all(ax.get_xlabel().startswith("epoch") for ax in axes)
    for ax in axes:
        for label, end in _curve_ends(ax).items():
            assert end == pytest.approx(3.0), (ax.get_title(), label, end)
    for ax in axes:  # no panel mixes the two families
        assert len(_curve_ends(ax)) == 1, ax.get_title()
    d_panels = [ax for ax in axes if ax.get_ylabel() == "d_loss"]
    assert len(d_panels) == 2
    bce_d = next(ax for ax in d_panels if "bce" in _curve_ends(ax))
    assert bce_d.get_ylim()[1] < 5  # the BCE run's D loss (0.3-1.5) fills its panel
    assert "critic" in next(ax for ax in d_panels if ax is not bce_d).get_title()
    assert "train.loss wgan and wgan_gp have panels of their own" in page


def test_loss_panels_say_smoothed_only_when_they_are(tmp_path, figures):
    """Under 20 points a curve is drawn as it is: the panel title does not claim smoothing."""
    short = make_run(tmp_path, "short", epochs=2, steps_per_epoch=8)  # 16 step lines: not smoothed
    write_compare_report([short], tmp_path / "r.html")
    titles = [ax.get_title() for ax in _loss_axes(figures)]
    assert titles and not any("smoothed" in t for t in titles), titles
    figures.clear()
    long = make_run(tmp_path, "long", epochs=2, steps_per_epoch=40)  # 80 step lines: smoothed
    write_compare_report([long], tmp_path / "r2.html")
    titles = [ax.get_title() for ax in _loss_axes(figures)]
    assert titles and all("smoothed" in t for t in titles), titles


def test_loss_curves_are_one_image_per_panel(tmp_path):
    """Separate images (D, G) that stack on a narrow screen, not one two-panel image shrunk to the screen."""
    a = make_run(tmp_path, "a", epochs=2)
    page = write_compare_report([a], tmp_path / "r.html").read_text()
    section = page[page.index('id="loss-curves"'):page.index('id="accuracy-curves"')]
    assert section.count("<img") == 2 and 'class="plots pair"' in section


def _acgan_run(tmp_path, name="acgan", run_index=1, **kw):
    """A conditional run (ACGAN): its losses include its auxiliary classifier's class loss (d_loss about 5 here, as
    a tiny MNIST run logs), and it logs its class accuracies."""
    run = make_run(tmp_path, name, run_index=run_index, torn=False,
                   extra={"aux_acc_real": 0.3, "aux_acc_fake": 0.6, "aux_entropy": 2.2}, **kw)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line["d_loss"] += 4.0
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def test_an_acgan_runs_losses_that_include_its_class_loss_are_said_so_and_drawn_apart(tmp_path, figures):
    """An ACGAN's d_loss (about 5, with its class loss) shared one axis with a DCGAN's (about 1), unlabelled, as if
    they compared: its losses have panels of their own that say "incl. class loss", and a note says why. A conditional
    run with train.aux_weight 0 has no class loss in them: it shares the others' panels."""
    import yaml

    dcgan = make_run(tmp_path, "dcgan", epochs=2)
    acgan = _acgan_run(tmp_path, epochs=2)
    page = write_compare_report([dcgan, acgan], tmp_path / "r.html").read_text()
    axes = _loss_axes(figures)
    assert len(axes) == 4 and all(len(_curve_ends(ax)) == 1 for ax in axes)  # no panel mixes the two
    titles = {ax.get_ylabel() + " " + next(iter(_curve_ends(ax))): ax.get_title() for ax in axes}
    assert titles["d_loss acgan"].startswith("discriminator loss (d_loss, incl. class loss): ACGAN runs")
    assert titles["g_loss acgan"].startswith("generator loss (g_loss, incl. class loss): ACGAN runs")
    assert titles["d_loss dcgan"].startswith("discriminator loss (d_loss): other runs")
    assert "include its auxiliary classifier's class loss" in page and "wgan_gp have panels" not in page
    config = yaml.safe_load((acgan / "config.yaml").read_text())
    config["train"]["aux_weight"] = 0.0
    (acgan / "config.yaml").write_text(yaml.safe_dump(config))
    figures.clear()
    page = write_compare_report([dcgan, acgan], tmp_path / "r2.html").read_text()
    assert [len(_curve_ends(ax)) for ax in _loss_axes(figures)] == [2, 2] and "class loss" not in page


def test_accuracy_curves_overlay_the_runs_d_accuracies_and_an_acgans_class_accuracies(tmp_path, figures):
    """The page showed no accuracy at all: D's accuracies on real images and fakes of every run that logged them, on
    one 0-1 scale against epochs, and the class accuracies of the ACGAN run alone."""
    dcgan = make_run(tmp_path, "dcgan", epochs=2)
    acgan = _acgan_run(tmp_path, epochs=2)
    page = write_compare_report([dcgan, acgan], tmp_path / "r.html").read_text()
    section = page[page.index('id="accuracy-curves"'):]
    assert section.count("<img") == 4
    panels = {ax.get_ylabel(): ax for fig in figures for ax in fig.axes if "acc" in ax.get_ylabel()}
    assert sorted(panels) == ["aux_acc_fake", "aux_acc_real", "d_acc_fake", "d_acc_real"]
    for key, ax in panels.items():
        runs = ["acgan"] if key.startswith("aux") else ["dcgan", "acgan"]
        assert list(_curve_ends(ax)) == runs and _curve_ends(ax)["acgan"] == pytest.approx(2.0)
        assert ax.get_ylim() == pytest.approx((-0.02, 1.02)) and ax.get_xlabel() == "epoch"
    assert "D accuracy on fakes (d_acc_fake)" in panels["d_acc_fake"].get_title()
    figures.clear()
    page = write_compare_report([dcgan], tmp_path / "r2.html").read_text()
    assert page[page.index('id="accuracy-curves"'):].count("<img") == 2


def test_fid_and_kid_time_axes_say_the_evaluations_are_included(tmp_path, figures):
    """The page's FID / KID vs time figures said 'training time (minutes)' of a time that includes the evaluations (as
    the best-metrics table says): a run evaluating often looked slower to train. Labelled as the run's own fid.png."""
    from gankit.report.plots import TIME_LABEL

    a = make_run(tmp_path, "a", epochs=2, fids=[200.0, 150.0])
    write_compare_report([a], tmp_path / "r.html")
    time_axes = [ax for fig in figures for ax in fig.axes if ax.get_ylabel().startswith(("FID", "KID"))
                 and ax.get_xlabel() != "epoch"]
    assert len(time_axes) == 2
    for ax in time_axes:
        assert ax.get_xlabel() == TIME_LABEL and "training time" not in ax.get_title(), ax.get_title()


def test_kid_curves_with_std_band_and_which_figure_compares(tmp_path, figures):
    """KID curves (kid_mean with a +- kid_std band) beside the FID ones; when the runs measured with different
    eval.n_fake, the page and the figures say the KID curves compare and the FID curves do not."""
    a = make_run(tmp_path, "a", run_index=0, epochs=3, fids=[200.0, 150.0, 120.0])
    b = make_run(tmp_path, "b", run_index=1, epochs=3, fids=[210.0, 160.0, 110.0])
    page = write_compare_report([a, b], tmp_path / "r.html").read_text()
    fid_section = page[page.index('id="fid-curves"'):page.index('id="loss-curves"')]
    assert 'alt="KID vs epoch"' in fid_section and 'alt="KID vs time (minutes, evaluations included)"' in fid_section
    kid_axes = [ax for fig in figures for ax in fig.axes if ax.get_ylabel().startswith("KID")]
    assert len(kid_axes) == 2
    for ax in kid_axes:
        assert len(ax.collections) == 2  # one band per run
        assert "kid_std" in ax.get_title()
        # each run's kid_mean (its FID / 1000 in these fakes), and a band from kid_mean - kid_std to + kid_std (0.001)
        curves = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        for line, band, fids in zip(curves, ax.collections, ([200.0, 150.0, 120.0], [210.0, 160.0, 110.0])):
            assert list(line.get_ydata()) == pytest.approx([f / 1000 for f in fids])
            ys = band.get_paths()[0].vertices[:, 1]
            assert (ys.min(), ys.max()) == pytest.approx((min(fids) / 1000 - 0.001, max(fids) / 1000 + 0.001))
    assert "not comparable" not in fid_section

    figures.clear()
    config = b / "config.yaml"
    config.write_text(config.read_text() + "eval:\n  n_fake: 5000\n")
    page = write_compare_report([a, b], tmp_path / "r.html").read_text()
    fid_section = page[page.index('id="fid-curves"'):page.index('id="loss-curves"')]
    assert "compare them on the KID curves" in fid_section and "FID curves do not compare" in fid_section
    titles = {ax.get_ylabel().split()[0]: ax.get_title() for fig in figures for ax in fig.axes}
    assert "not comparable" in titles["FID"] and "comparable across these runs" in titles["KID"]
    assert "not comparable" not in titles["KID"]


def test_training_time_says_it_includes_evaluations(tmp_path):
    """A run written before eval lines carried `eval_seconds` does not say how long its FID/KID evaluations took, so
    the times cannot leave them out: the table says they are in, and how many evaluations each run made."""
    a = make_run(tmp_path, "a", epochs=3, fids=[200.0, 150.0, 120.0])
    b = make_run(tmp_path, "b", run_index=1, epochs=3, fids=None)
    assert load_run(a).evaluating_time is None and load_run(b).evaluating_time is None
    page = write_compare_report([a, b], tmp_path / "r.html").read_text()
    best = page[page.index('id="best-metrics"'):page.index('id="final-grids"')]
    assert "<th>total time (evaluations included)</th>" in best
    assert "<th>time (evaluations included)</th>" in best
    assert "3 evaluations</span>" in best and "the FID/KID evaluations included" in best
    assert "does not say how long they took" in best


def test_the_table_says_how_long_the_evaluations_inside_each_total_took(tmp_path):
    """Eval lines carry their duration (`eval_seconds`): the time of those inside a run's total (all but the one at
    the run's end, logged at the total's time) is given under it."""
    a = make_run(tmp_path, "a", epochs=3, fids=[200.0, 150.0, 120.0], torn=False)
    lines = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    for line, seconds in zip((x for x in lines if x["kind"] == "eval"), (30.0, 45.0, 600.0)):
        line["eval_seconds"] = seconds
    (a / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = load_run(a)
    assert run.total_time == 60.2 and run.evaluating_time == 75.0  # the last evaluation (600 s) ends the run
    page = write_compare_report([a], tmp_path / "r.html").read_text()
    best = page[page.index('id="best-metrics"'):page.index('id="final-grids"')]
    assert "3 evaluations, 1m\u00a015s of this time" in best  # wraps in its cell, not between 1m and 15s
    assert "under each total, the time its evaluations took" in best and "does not say" not in best


def test_a_long_run_name_wraps_in_the_plot_legends(tmp_path, figures):
    """A run name longer than a loss or FID image is wide wrapped in its legend (it ran off the image's right edge),
    and the figure grows by the legend's height instead of squashing the axes."""
    long = "experiment_2026-12-07_pokemon_dcgan_baseline_with_label_smoothing_and_spectral_norm_" * 2
    runs = [make_run(tmp_path, long, epochs=2, fids=[200.0, 150.0])]
    runs += [make_run(tmp_path, f"run{i}", run_index=i, epochs=2, fids=[210.0, 160.0]) for i in range(1, 8)]
    write_compare_report(runs, tmp_path / "r.html")
    assert figures
    for fig in figures:
        (legend,) = fig.legends
        texts = [t.get_text() for t in legend.get_texts()]
        assert texts[0].replace("\n", "") == long and "\n" in texts[0]
        fig.canvas.draw()
        box = legend.get_window_extent()
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)
        assert fig.get_figheight() > 4.5


def test_the_plot_legends_read_in_the_runs_order_by_rows(tmp_path, figures):
    """Five runs in a legend of four columns read a, b, c, d / e, as the page lists them: matplotlib fills columns
    first, and the legend read a, c, d, e / b."""
    names = ["a", "b", "c", "d", "e"]
    runs = [make_run(tmp_path, name, run_index=i, epochs=2, fids=[210.0, 160.0]) for i, name in enumerate(names)]
    write_compare_report(runs, tmp_path / "r.html")
    assert figures
    for fig in figures:
        (legend,) = fig.legends
        fig.canvas.draw()
        boxes = [(t.get_window_extent(), t.get_text()) for t in legend.get_texts()]
        assert len({round(box.y0) for box, _ in boxes}) == 2  # two rows: the case tested
        by_rows = [text for box, text in sorted(boxes, key=lambda b: (-round(b[0].y0), b[0].x0))]
        assert by_rows == names, by_rows


def test_fid_curves_put_each_evaluation_at_its_epoch_and_minute_and_star_the_best(tmp_path, figures):
    a = make_run(tmp_path, "a", epochs=3, fids=[200.0, 150.0, 160.0])  # 40 steps an epoch, eval at step * 0.5 + 0.2 s
    write_compare_report([a], tmp_path / "r.html")
    by_epoch, by_time = [ax for fig in figures for ax in fig.axes if ax.get_ylabel().startswith("FID")]
    minutes = [(40 * e * 0.5 + 0.2) / 60 for e in (1, 2, 3)]
    for ax, xs in ((by_epoch, [1, 2, 3]), (by_time, minutes)):
        curve, star = ax.get_lines()
        assert curve.get_label() == "a" and list(curve.get_ydata()) == [200.0, 150.0, 160.0]
        assert list(curve.get_xdata()) == pytest.approx(xs)
        assert (star.get_xdata()[0], star.get_ydata()[0]) == pytest.approx((xs[1], 150.0))


def test_kid_figures_leave_out_a_run_that_logged_fid_alone(tmp_path, figures):
    a = make_run(tmp_path, "a", run_index=0, epochs=2, fids=[200.0, 150.0])
    b = make_run(tmp_path, "b", run_index=1, epochs=2, fids=[210.0, 160.0], torn=False)
    lines = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    for line in lines:  # an older run: FID without KID
        line.pop("kid_mean", None), line.pop("kid_std", None)
    (b / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = write_compare_report([a, b], tmp_path / "r.html").read_text()

    def labels(metric):
        return [[ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
                for fig in figures for ax in fig.axes if ax.get_ylabel().startswith(metric)]

    assert labels("FID") == [["a", "b"]] * 2 and labels("KID") == [["a"]] * 2
    assert "No KID logged: b." in page


def _stopped_inside_an_epoch(run, last_step):
    """`run`'s metrics.jsonl as a budget that ended it at `last_step` leaves it: the lines after that step gone, a
    step line at it (the grid of that unfinished epoch stays, as training writes one)."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kept = [line for line in lines
            if line["step"] < last_step or (line["step"] == last_step and line["kind"] == "step")]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
    return run


def test_epochs_count_finished_ones_and_say_how_far_into_an_unfinished_one(tmp_path):
    """A run stopped 40% into epoch 8 (7 epoch lines, the grid of epoch 8) showed "epochs 8" while the README says
    "epochs" counts finished epochs: it shows "7 (+40% of 8)", its last grid "epoch 8 (unfinished)"; a run that
    finished says its epochs alone; one killed in its first epoch has no finished epoch to measure the share by."""
    import re

    stopped = _stopped_inside_an_epoch(make_run(tmp_path, "stopped", epochs=8, steps_per_epoch=10, torn=False), 74)
    done = make_run(tmp_path, "done", run_index=1, epochs=5, steps_per_epoch=10)
    first = _stopped_inside_an_epoch(make_run(tmp_path, "first", run_index=2, epochs=1, steps_per_epoch=10,
                                              torn=False), 6)
    assert (load_run(stopped).total_epochs, load_run(stopped).unfinished_epoch) == (7, (8, pytest.approx(0.4)))
    assert (load_run(done).total_epochs, load_run(done).unfinished_epoch) == (5, None)
    assert (load_run(first).total_epochs, load_run(first).unfinished_epoch) == (0, (1, None))
    page = write_compare_report([stopped, done, first], tmp_path / "r.html").read_text()
    table = page[page.index('id="best-metrics"'):page.index('id="final-grids"')]
    rows = re.findall(r'</th><td colspan="6" class="missing">no FID logged</td><td class="num">([^<]*)</td>', table)
    assert rows == ["7 (+40% of 8)", "5", "0 (+part of 1)"]
    grids = page[page.index('id="final-grids"'):page.index('id="evolution"')]
    assert re.findall(r'<p class="note">(epoch [^<]*)</p>', grids) == ["epoch 8 (unfinished)", "epoch 5",
                                                                       "epoch 1 (unfinished)"]


def _evaluated_at_its_end(run, fid):
    """`run` (`_stopped_inside_an_epoch`) with the evaluation its budget's end writes: at its last step, of the epoch
    under way (an unfinished one), as training logs it."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = lines[-1]
    lines.append({"kind": "eval", "step": last["step"], "epoch": last["epoch"], "time": last["time"], "fid": fid,
                  "kid_mean": fid / 1000, "kid_std": 0.001, "n_fake": 1000})
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def test_the_evaluation_that_ends_a_run_inside_an_epoch_is_drawn_where_it_lies(tmp_path, figures):
    """A budget that ended a run at 20.3 epochs evaluates there, and its line carries epoch 21, the epoch under way:
    "FID vs epoch" and "KID vs epoch" drew that point and its best-FID star at 21, and the table said "reached at epoch
    21"; one stopped 25% into its first epoch was drawn at 1. Their step lines' epochs_done place them at 20.3 and 0.25,
    and the table says "20 (+30% of 21)" as its "epochs" cell does. A critic run's evaluations at its epochs' ends stay
    at those epochs (its step there is past the end by a few batches); a log of a gankit before epochs_done keeps the
    line's epoch, its share unmeasured."""
    import re

    fids = [300.0 - 10 * e for e in range(20)]
    long = _with_epochs_done(_evaluated_at_its_end(_stopped_inside_an_epoch(
        make_run(tmp_path, "long", epochs=21, steps_per_epoch=10, fids=fids, torn=False, samples=False), 203), 50.0),
        steps_per_epoch=10)
    short = _with_epochs_done(_evaluated_at_its_end(_stopped_inside_an_epoch(
        make_run(tmp_path, "short", run_index=1, epochs=1, steps_per_epoch=80, torn=False), 20), 400.0))
    critic = _with_epochs_done(_critic_run(tmp_path, epochs=3, steps_per_epoch=4, fids=[200.0, 150.0, 160.0]),
                               batches_per_step=5, steps_per_epoch=19)  # its epochs end at 1.05, 2.11, 3.16
    old = _evaluated_at_its_end(_stopped_inside_an_epoch(
        make_run(tmp_path, "old", run_index=3, epochs=1, steps_per_epoch=80, torn=False), 20), 410.0)
    page = write_compare_report([long, short, critic, old], tmp_path / "r.html").read_text()
    by_epoch = [ax for fig in figures for ax in fig.axes
                if ax.get_ylabel().startswith(("FID", "KID")) and ax.get_xlabel() == "epoch"]
    assert len(by_epoch) == 2
    for ax in by_epoch:
        assert _curve_ends(ax) == pytest.approx({"long": 20.3, "short": 0.25, "wgan_gp_critic": 3.0, "old": 1.0})
    stars = [x for ln in by_epoch[0].get_lines() if ln.get_marker() == "*" for x in ln.get_xdata()]
    assert stars == pytest.approx([20.3, 0.25, 2.0, 1.0])
    table = page[page.index('id="best-metrics"'):page.index('id="final-grids"')]
    figure = r'<td class="num(?: best)?">[^<]*(?:<span class="aside">best</span>)?</td>'  # best FID, KID at best
    reached = re.findall(rf'</th>{figure}{figure}<td class="num">([^<]*)</td>', table)
    assert reached == ["20 (+30% of 21)", "0 (+25% of 1)", "2", "0 (+part of 1)"]
    best = [load_run(r).best for r in (long, short, critic, old)]
    assert [(b.epoch, b.at, b.unfinished) for b in best] == [(21, pytest.approx(20.3), True),
                                                             (1, pytest.approx(0.25), True), (2, 2.0, False),
                                                             (1, 1.0, True)]

    figures.clear()  # the short run alone: its point inside epoch 1, on an axis of fractions of it
    write_compare_report([short], tmp_path / "r2.html")
    for ax in [ax for fig in figures for ax in fig.axes if ax.get_xlabel() == "epoch"]:
        lo, hi = ax.get_xlim()
        assert -0.1 < lo < 0.25 < hi < 0.4, (ax.get_ylabel(), lo, hi)


def test_epoch_axes_have_whole_epoch_ticks(tmp_path, figures):
    """The page's FID plot had ticks at 1.25, 1.50... epochs where the run's own plots/fid.png has whole epochs: every
    axis of epochs (FID, KID, the losses, whose points lie between whole epochs) ticks at whole numbers; the minutes
    axes are left as they are."""
    a = make_run(tmp_path, "a", epochs=3, steps_per_epoch=10, fids=[200.0, 150.0, 160.0])
    b = make_run(tmp_path, "b", run_index=1, epochs=2, steps_per_epoch=7, fids=[210.0, 170.0])
    write_compare_report([a, b], tmp_path / "r.html")
    by_epoch = [ax for fig in figures for ax in fig.axes if ax.get_xlabel() == "epoch"]
    assert sorted(ax.get_ylabel().split()[0] for ax in by_epoch) == ["FID", "KID", "d_acc_fake", "d_acc_real", "d_loss",
                                                                     "g_loss"]
    for ax in by_epoch:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert len(ticks) >= 2 and all(t == int(t) for t in ticks), (ax.get_ylabel(), ticks)


def test_the_best_metrics_headers_tell_the_best_fids_step_from_the_steps_trained(tmp_path):
    """The table's "step" (where the best FID was reached) and "steps" (the run's total) read alike: each says what
    it is, as "epochs" (trained) does beside "reached at epoch"."""
    a = make_run(tmp_path, "a", epochs=3, fids=[200.0, 150.0, 120.0])
    page = write_compare_report([a], tmp_path / "r.html").read_text()
    head = page[page.index('id="best-metrics"'):page.index('id="final-grids"')].split("</thead>")[0]
    assert re.findall(r"<th>([^<]*)</th>", head) == [
        "run", "best FID", "KID at best", "reached at epoch", "reached at step", "time (evaluations included)",
        "last FID", "epochs trained", "steps trained", "total time (evaluations included)"]


@pytest.fixture
def time_zone(monkeypatch):
    """Set the local time zone to a POSIX TZ string for the test (no zone database needed), then put it back."""
    import time

    def use(tz):
        monkeypatch.setenv("TZ", tz)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def test_the_generated_time_says_its_time_zone(tmp_path, time_zone):
    """'Generated 2026-12-07 23:41' did not say in which time zone: the local time comes with its UTC offset and
    zone name (five and a half hours east of UTC here)."""
    time_zone("XYZ-5:30")
    page = write_compare_report([make_run(tmp_path, "a", epochs=1)], tmp_path / "r.html").read_text()
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC\+05:30 \(XYZ\)\. ", page)
    time_zone("<-03>3")  # a zone without a name: its offset alone
    page = write_compare_report([make_run(tmp_path, "b", epochs=1)], tmp_path / "r.html").read_text()
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC-03:00\. ", page)


def test_compare_warns_when_conditional_runs_drew_their_fake_classes_otherwise(tmp_path, figures):
    """eval.fake_classes (a conditional run's fake classes by the real class counts, or uniformly: what a run made
    before the key keeps) changes what FID and KID measure: conditional runs that differ in it were compared without a
    word. An unconditional run draws no classes: an old dcgan run vs a new one says nothing."""
    a, b = (make_run(tmp_path, name, run_index=i, epochs=2, fids=[200.0, 150.0]) for i, name in enumerate("ab"))
    config = b / "config.yaml"
    config.write_text(config.read_text() + "eval:\n  fake_classes: data\n")  # a is older: it counts as uniform

    def page():
        figures.clear()
        text = write_compare_report([a, b], tmp_path / "r.html").read_text()
        return (text[text.index('id="best-metrics"'):text.index('id="final-grids"')],
                text[text.index('id="fid-curves"'):text.index('id="loss-curves"')])

    best, curves = page()
    assert "compare" not in best and "compare" not in curves
    assert not any("comparable" in ax.get_title() for fig in figures for ax in fig.axes)
    for run in (a, b):
        (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("arch: dcgan", "arch: acgan"))
    best, curves = page()
    assert "FID and KID with different eval.fake_classes: generated images of another mix of classes" in best
    assert "neither their FIDs nor their KIDs compare" in best
    assert "neither their FID nor their KID curves compare" in curves
    titles = {ax.get_ylabel().split()[0]: ax.get_title() for fig in figures for ax in fig.axes}
    assert "not comparable across these runs (different eval.fake_classes)" in titles["FID"]
    assert "not comparable across these runs (different eval.fake_classes)" in titles["KID"]
    config.write_text(config.read_text().replace("fake_classes: data", "fake_classes: uniform"))
    assert "compare" not in page()[0]


def _best_table(page: str) -> str:
    return page[page.index('id="best-metrics"'):page.index('id="final-grids"')]


def _rewritten(run, edit):
    """`run` with each line of its metrics.jsonl passed through `edit` (which changes it in place)."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        edit(line)
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def _row(table: str, label: str) -> str:
    start = table.index(f"\u2060{label}")
    return table[start:table.index("</tr>", start)]


def test_the_best_metrics_mark_the_lowest_figures_of_the_runs_measured_alike(tmp_path):
    """Every run's best FID was bold, so the best of 15 runs did not stand out: the lowest best FID, KID at best and
    last FID of the runs measured alike are bold and marked best; a run measured otherwise (another resolution) is
    ranked with none of them, however low its FID; nor is a run alone."""
    a = make_run(tmp_path, "a", epochs=2, fids=[200.0, 150.0], torn=False)
    b = make_run(tmp_path, "b", run_index=1, epochs=2, fids=[120.0, 130.0], torn=False)
    c = make_run(tmp_path, "c", run_index=2, epochs=2, fids=[100.0, 90.0], torn=False)
    (c / "config.yaml").write_text((c / "config.yaml").read_text().replace("resolution: 64", "resolution: 32"))
    table = _best_table(write_compare_report([a, b, c], tmp_path / "r.html").read_text())
    marked = '<td class="num best">{} <span class="aside">best</span></td>'
    assert marked.format("120.00") in _row(table, "b") and marked.format("0.1200 \u00b1 0.0010") in _row(table, "b")
    assert marked.format("130.00") in _row(table, "b")  # b's last FID, lower than a's 150
    assert "best" not in _row(table, "a") and "best" not in _row(table, "c")
    assert "Bold, marked best: the lowest best FID, KID at best and last FID of the runs measured alike" in table
    alone = _best_table(write_compare_report([a], tmp_path / "r.html").read_text())
    assert 'class="num best"' not in alone and "Bold, marked best" not in alone


def test_the_best_metrics_row_of_a_run_stopped_before_its_end_says_so(tmp_path):
    """The legend at the top alone said a run stopped before its end: its row, where its figures are read, says it
    too, the legend's words (how to resume it) as its title."""
    killed = make_run(tmp_path, "killed", epochs=2, steps_per_epoch=5, fids=[100.0, 90.0])
    (killed / "config.yaml").write_text((killed / "config.yaml").read_text().replace("epochs: 2", "epochs: 10"))
    done = make_run(tmp_path, "done", run_index=1, epochs=2, steps_per_epoch=5, fids=[100.0, 90.0])
    table = _best_table(write_compare_report([killed, done], tmp_path / "r.html").read_text())
    said = f"stopped before its end (2 of 10 epochs): it crashed or was stopped; gankit train --run {killed} resumes it"
    assert f'<br><span class="aside" title="{said}">stopped before its end (2 of 10 epochs)</span></th>' in \
        _row(table, "killed")
    assert "stopped" not in _row(table, "done")


def test_a_runs_only_evaluation_at_its_end_is_said_to_come_after_its_time(tmp_path):
    """A run evaluated once, at its end, read "1 evaluation, 0s of this time": that evaluation comes after the total."""
    def timed(line):
        if line["kind"] == "eval":
            line["eval_seconds"] = 40.0

    run = _rewritten(make_run(tmp_path, "a", epochs=1, fids=[100.0], torn=False), timed)
    assert load_run(run).evaluating_time == 0.0
    table = _best_table(write_compare_report([run], tmp_path / "r.html").read_text())
    assert "1 evaluation, after this time</span>" in table and "of this time" not in table


def test_the_best_metrics_write_big_counts_with_thousands_separators(tmp_path):
    """"reached at step 950000" and "steps trained 1000000" are read more easily as gankit writes counts elsewhere."""
    def scaled(line):
        line["step"] *= 10_000

    run = _rewritten(make_run(tmp_path, "a", epochs=2, steps_per_epoch=50, fids=[150.0, 200.0], torn=False), scaled)
    row = _row(_best_table(write_compare_report([run], tmp_path / "r.html").read_text()), "a")
    assert '<td class="num">500,000</td>' in row and '<td class="num">1,000,000</td>' in row  # reached at, trained
