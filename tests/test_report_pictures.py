"""What the training plots and image grids look like: the defects a visual review found (titles cut off, boxes for
non-ASCII text, a legend over a curve, fractional step ticks, invisible one-point curves, smoothed counters, a
mislabelled time axis, grids with empty cells)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gankit.report import plots
from gankit.report.runs import load_run


def write_run(path, lines, name=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(f"name: {json.dumps(name or path.name)}\n")
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return load_run(path)


def step_lines(n, every=1, **keys):
    return [{"kind": "step", "step": s, "epoch": 1, "time": float(s), **{k: f(s) for k, f in keys.items()}}
            for s in range(every, n + 1, every)]


def x_ticks(ax):
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_step_and_epoch_axes_have_whole_number_ticks_only(tmp_path):
    """A 3-step run's wasserstein.png showed steps 1.25, 1.5, ...; fid.png epochs 1.5, 2.5."""
    run = write_run(tmp_path / "r", step_lines(3, wasserstein=lambda s: 0.1 * s, gp=lambda s: 0.01, d_loss=float,
                                               img_per_s=float)
                    + [{"kind": "eval", "step": 3, "epoch": e, "time": 60.0 * e, "fid": 100.0 - e} for e in (1, 2)])
    axes = [plots.wasserstein_figure(run).axes[0], plots.losses_figure(run).axes[0],
            plots.fid_figure(run).axes[0], plots.other_figure(run).axes[0]]
    for ax in axes:
        ticks = x_ticks(ax)
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


@pytest.mark.parametrize("steps", [13_000, 1_000_000])
def test_the_step_and_epoch_ticks_of_a_long_run_do_not_run_into_each_other(tmp_path, steps):
    """A run of 1,000,000 steps and 50,000 epochs: other.png's panels labelled their steps '150000300000450000...'
    and the evaluations' epochs '6000120001800024000...', one unreadable run of digits."""
    lines = step_lines(steps, every=steps // 50, d_loss=lambda s: 1.0, img_per_s=lambda s: 100.0 + s % 7)
    epochs = steps // 20
    run = write_run(tmp_path / "r", lines + [{"kind": "eval", "step": 20 * e, "epoch": e, "time": 0.02 * e,
                                               "fid": 100.0 - e / 1000, "eval_seconds": 3.0}
                                              for e in range(epochs // 20, epochs + 1, epochs // 20)])
    for fig in (plots.other_figure(run), plots.losses_figure(run), plots.fid_figure(run)):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            labels = [t for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= x <= hi and t.get_text()]
            boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
            assert len(boxes) >= 3, ax.get_title()
            gaps = [b.x0 - a.x1 for a, b in zip(boxes, boxes[1:])]
            assert min(gaps) >= 4, (ax.get_title(), [t.get_text() for t in labels], gaps)


def test_a_curve_of_one_or_two_points_has_visible_markers(tmp_path):
    """40 steps with log.every=50... one point per loss: the line through it drew nothing but a 3 px dot."""
    for steps in (40, 80):  # one point per loss, then two
        run = write_run(tmp_path / f"r{steps}", step_lines(steps, every=40, d_loss=lambda s: 0.7, g_loss=lambda s: 1.2))
        lines = plots.losses_figure(run).axes[0].get_lines()
        assert {len(line.get_xdata()) for line in lines} == {steps // 40}
        for line in lines:
            assert line.get_marker() == "o" and line.get_markersize() >= 6


def test_counters_are_drawn_raw_and_smoothing_keeps_the_ends(tmp_path):
    """other.png averaged d_updates (1..48) with a centred window cut at the end: its line ended at 47.5, not 48. The
    same cut window pulled a loss curve's last point back towards the middle."""
    run = write_run(tmp_path / "r", step_lines(48, d_updates=float, g_updates=float,
                                               img_per_s=lambda s: 100.0 + (s % 3)))
    fig = plots.other_figure(run)
    for ax in fig.axes[:2]:
        assert ax.get_title() in ("d_updates", "g_updates")
        lines = ax.get_lines()
        assert len(lines) == 1 and list(lines[0].get_ydata()) == [float(s) for s in range(1, 49)]
    rising = np.arange(100, dtype=float)
    for window in (3, 4, 9):
        out = plots.smooth(rising, window)
        assert out[-1] == pytest.approx(99.0) and out[0] == pytest.approx(0.0)
        assert out == pytest.approx(rising)  # a symmetric window leaves a straight line as it is


def test_fid_time_axis_says_the_evaluations_are_included(tmp_path):
    """fid.png said 'training time (minutes)' of a time that includes the FID evaluations themselves (a run evaluating
    FID looked 8x slower than one without)."""
    run = write_run(tmp_path / "r", step_lines(4, d_loss=float) + [
        {"kind": "eval", "step": 2 * e, "epoch": e, "time": 60.0 * e, "fid": 100.0 - e} for e in (1, 2)])
    assert plots.fid_figure(run).axes[1].get_xlabel() == "time (minutes, evaluations included)"


def test_axis_labels_and_tick_labels_stay_inside_the_figure(tmp_path):
    """fid.png's right-hand 'KID (lower is better)' was cut at the image's edge, and other.png's tick labels of a
    learning rate (0.00015) at its left edge."""
    run = write_run(tmp_path / "r", step_lines(24, every=2, d_loss=float, lr_g=lambda s: 1.5e-4 * (1 - s / 30),
                                               lr_d=lambda s: 1.5e-4, img_per_s=lambda s: 50.0) + [
        {"kind": "eval", "step": 8 * e, "epoch": e, "time": 60.0 * e, "fid": 480.0 - e, "kid_mean": 0.62 - e / 100,
         "kid_std": 0.01, "n_fake": 64} for e in (1, 2, 3)])
    for fig in (plots.fid_figure(run), plots.other_figure(run)):
        fig.canvas.draw()
        renderer, width = fig.canvas.get_renderer(), fig.bbox.x1
        for ax in fig.axes:
            texts = [ax.yaxis.label, *ax.get_yticklabels()]
            for text in (t for t in texts if t.get_text()):
                box = text.get_window_extent(renderer)
                assert box.x0 >= 0 and box.x1 <= width, (ax.get_title(), text.get_text(), box.x0, box.x1, width)


def test_the_auxiliary_classifier_legend_covers_no_curve(tmp_path):
    """The aux panel's legend (loc='best' of the left axis alone) covered the aux_entropy curve of the twin axis: one
    legend, with both axes' lines, outside the plotting area."""
    run = write_run(tmp_path / "r", step_lines(45, every=15, d_acc_real=lambda s: 0.9, d_acc_fake=lambda s: 0.8,
                                               aux_acc_real=lambda s: 0.1 + s / 450, aux_acc_fake=lambda s: s / 45,
                                               aux_entropy=lambda s: 2.8 - s / 90))
    fig = plots.accuracy_figure(run)
    fig.canvas.draw()
    aux = [ax for ax in fig.axes if "auxiliary" in ax.get_title()]
    (ax,) = aux
    legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None and a is not fig.axes[0]]
    assert len(legends) == 1
    (legend,) = legends
    assert [t.get_text() for t in legend.get_texts()] == ["aux_acc_real", "aux_acc_fake", "aux_entropy"]
    box, area = legend.get_window_extent(), ax.get_window_extent()
    assert box.y0 >= area.y1 - 1  # above the plotting area: no curve under it
    title = ax.title.get_window_extent()
    assert title.y0 >= box.y1 - 1 and title.y1 <= fig.bbox.y1  # between the axes and the title, inside the figure


def test_the_discriminator_accuracy_legend_covers_no_curve(tmp_path):
    """D's accuracies often sit at 1.0 (a D that wins), where loc='best' put the legend, in the upper right corner,
    over them: it goes above the panel, under the title, as the auxiliary classifier's does."""
    run = write_run(tmp_path / "r", step_lines(12, every=3, d_acc_real=lambda s: 0.93 if s == 3 else 1.0,
                                               d_acc_fake=lambda s: 0.93 if s == 3 else 1.0))
    fig = plots.accuracy_figure(run)
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["d_acc_real", "d_acc_fake"]
    box, area = legend.get_window_extent(), ax.get_window_extent()
    assert box.y0 >= area.y1 - 1  # above the plotting area: no curve under it
    title = ax.title.get_window_extent()
    assert title.y0 >= box.y1 - 1 and title.y1 <= fig.bbox.y1  # between the axes and the title, inside the figure


def test_the_fid_kid_legend_covers_no_curve(tmp_path):
    """fid.png's legend (loc='best' of the FID axis alone) sat in the upper right corner over the KID curve and band of
    the twin axis when KID rose at the end while FID fell: one legend, above each panel, as the accuracy plot's."""
    run = write_run(tmp_path / "r", step_lines(6, d_loss=float) + [
        {"kind": "eval", "step": 2 * e, "epoch": e, "time": 60.0 * e, "fid": 515.0 - 3 * e, "kid_mean": [0.629, 0.626,
         0.643][e - 1], "kid_std": 0.011, "n_fake": 64} for e in (1, 2, 3)])
    fig = plots.fid_figure(run)
    fig.canvas.draw()
    fid_axes = [ax for ax in fig.axes if "FID / KID" in ax.get_title()]
    assert len(fid_axes) == 2
    for ax in fid_axes:
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == ["FID", "best FID 506.00", "KID"]
        box, area = legend.get_window_extent(), ax.get_window_extent()
        assert box.y0 >= area.y1 - 1  # above the plotting area: no curve under it
        title = ax.title.get_window_extent()
        assert title.y0 >= box.y1 - 1 and title.y1 <= fig.bbox.y1  # between the axes and the title, inside the figure


# ------------------------------------------------------------------------------------------- fonts


@pytest.fixture
def only_fonts(monkeypatch):
    """Pretend the installed fallback fonts are exactly `families` (none: DejaVu Sans alone), whatever this machine has."""
    from gankit.report import fonts

    def use(*families):
        monkeypatch.setattr(fonts, "FALLBACK_FAMILIES", families)
        monkeypatch.setattr(fonts, "FALLBACK_MARKERS", (), raising=False)
        fonts.fonts.cache_clear()
        fonts.font_for.cache_clear()

    monkeypatch.setattr(fonts, "_told", [], raising=False)  # the once-a-process warning, said again in each test
    yield use
    fonts.fonts.cache_clear()
    fonts.font_for.cache_clear()


@pytest.fixture
def installed_fonts(monkeypatch):
    """Pretend matplotlib's font list holds DejaVu Sans and `fakes` ((family, file, weight): a family name given to one
    of matplotlib's own font files), whatever this machine has."""
    import matplotlib
    from matplotlib import font_manager

    from gankit.report import fonts

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"

    def use(*fakes):
        entries = [font_manager.FontEntry(fname=str(ttf / "DejaVuSans.ttf"), name="DejaVu Sans", style="normal",
                                          weight=400)]
        entries += [font_manager.FontEntry(fname=str(ttf / file), name=family, style="normal", weight=weight)
                    for family, file, weight in fakes]
        monkeypatch.setattr(font_manager.fontManager, "ttflist", entries)
        fonts.fonts.cache_clear()
        fonts.font_for.cache_clear()
        return [f.family for f in fonts.fonts()]

    monkeypatch.setattr(fonts, "_told", [], raising=False)
    yield use
    fonts.fonts.cache_clear()
    fonts.font_for.cache_clear()


def _margin(path, grid_width):
    from PIL import Image

    with Image.open(path) as im:
        return im.crop((0, 0, im.size[0] - grid_width, im.size[1])).convert("L")


def test_label_grid_draws_accents_and_writes_a_stand_in_for_characters_no_font_has(tmp_path, only_fonts):
    """Pillow's built-in font drew 'Électrique' as '□lectrique' and '火' as '□': every missing glyph the same box."""
    import torch
    from PIL import ImageChops

    from gankit.report import fonts
    from gankit.report.grids import label_grid

    only_fonts()
    images = torch.zeros(1, 2, 3, 32, 32)
    width = 2 * 34 + 2

    def margin(label):
        return _margin(label_grid(images, [label], tmp_path / "g.png"), width)

    for a, b in (("Électrique", "Ôlectrique"), ("火", "水"), ("Ψυχή", "Душа")):
        first, second = margin(a), margin(b)
        assert first.getextrema()[1] > 128  # something is drawn
        assert first.size != second.size or ImageChops.difference(first, second).getbbox(), (a, b)  # not one box
    assert fonts.pil_font("火", 12)[1] == "U+706B" and fonts.pil_font("Électrique", 12)[1] == "Électrique"
    # the stand-in is what is drawn: the margin holds the same pixels as the label written out
    assert ImageChops.difference(margin("火"), margin("U+706B")).getbbox() is None


def test_stand_ins_strip_accents_else_name_the_code_point(only_fonts):
    from gankit.report import fonts

    only_fonts()
    ascii_only = fonts.Font("ascii", "", 0, frozenset(range(32, 127)))
    assert fonts.displayable("Électrique ünï", ascii_only) == "Electrique uni"
    assert fonts.displayable("dcgan 日本", ascii_only) == "dcgan U+65E5 U+672C"
    assert fonts.displayable("dcgan fid ünï 日本") == "dcgan fid ünï U+65E5 U+672C"  # DejaVu Sans has ü, ï
    # a code point followed by digits read as another one: 'ポケモン64' gave 'U+30DD U+30B1 U+30E2 U+30F364'
    assert fonts.displayable("ポケモン64", ascii_only) == "U+30DD U+30B1 U+30E2 U+30F3 64"
    assert fonts.displayable("v2日本_x", ascii_only) == "v2 U+65E5 U+672C_x"


def test_cjk_fonts_of_windows_macos_and_linux_are_found_in_the_installed_font_list(installed_fonts):
    """Only a few Linux and Chinese font names were looked for: Japanese on Windows (Yu Gothic, Meiryo), Korean (Malgun
    Gothic) and any 'Noto Sans CJK HK' or 'Source Han Sans K' were not used, their text written as code points."""
    from gankit.report import fonts

    assert installed_fonts() == ["DejaVu Sans"]
    assert fonts.mpl_families("ほのお") == ["DejaVu Sans"]
    assert installed_fonts(("Source Han Sans K", "STIXGeneral.ttf", 400), ("Yu Gothic", "DejaVuSans-Bold.ttf", 700),
                           ("Yu Gothic", "STIXGeneral.ttf", 400), ("Malgun Gothic", "DejaVuSerif.ttf", 400),
                           ("Liberation Sans", "DejaVuSansMono.ttf", 400)) == [
        "DejaVu Sans", "Yu Gothic", "Malgun Gothic", "Source Han Sans K"]  # the list's order, then by name
    assert fonts.font_for("Ⓐ").family == "Yu Gothic" and "STIXGeneral" in fonts.font_for("Ⓐ").path  # regular face
    assert fonts.mpl_families("run Ⓐ") == ["DejaVu Sans", "Yu Gothic", "Malgun Gothic", "Source Han Sans K"]
    assert fonts.mpl_families("run A") == ["DejaVu Sans"]


def test_text_no_font_has_gives_one_warning_line_saying_what_to_install(tmp_path, only_fonts, capsys):
    """Without a CJK font, class folders 'ほのお', 'みず' and a run 'ポケモン64' were drawn as code points with no word
    why: one line now says which text and what to install, once however many figures follow."""
    import warnings

    import torch
    from matplotlib.figure import Figure

    from gankit.report import fonts
    from gankit.report.grids import label_grid

    only_fonts()
    run = write_run(tmp_path / "ポケモン64", step_lines(5, d_loss=float))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's 'Glyph ... missing from font(s) DejaVu Sans', one per glyph
        for _ in range(2):
            grid = label_grid(torch.zeros(2, 2, 3, 32, 32), ["ほのお", "みず"], tmp_path / "g.png")
            plots.figure_png(plots.losses_figure(run))
            fig = Figure()
            fig.add_subplot().plot([1, 2], label="みず")
            fig.axes[0].legend()
            plots.figure_png(fig)
    assert grid.is_file() and fig.axes[0].get_legend().get_texts()[0].get_text() == "U+307F U+305A"
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: no installed font can draw 'ほのお': figures write stand-ins ('ほ' -> 'U+307B')")
    assert "sudo apt install fonts-noto-cjk" in line and "fontlist-*.json" in line

    fonts._told.clear()  # another process: other characters, another hint
    assert fonts.displayable("run Ⓐ") == "run A"
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: no installed font can draw 'Ⓐ' in 'run Ⓐ': ") and "Noto Sans Symbols" in line


def test_plot_titles_draw_non_ascii_run_names_without_boxes_or_warnings(tmp_path, only_fonts):
    """A run named 'dcgan fid ünï 日本' had boxes in its titles and a 'Glyph missing from DejaVu Sans' warning per
    glyph: characters no installed font has become stand-ins, the rest are drawn with a fallback font."""
    import warnings

    run = write_run(tmp_path / "dcgan fid ünï 日本", step_lines(30, d_loss=float, img_per_s=lambda s: s % 3))
    only_fonts()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.losses_figure(run)
        plots.figure_png(fig)
    assert fig.axes[0].get_title() == "dcgan fid ünï U+65E5 U+672C: losses"

    # With a font that has the character (STIXGeneral has Ⓐ, DejaVu Sans lacks it), it is drawn in that font.
    run = write_run(tmp_path / "run Ⓐ", step_lines(30, d_loss=float))
    only_fonts("STIXGeneral")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.losses_figure(run)
        plots.figure_png(fig)
    title = fig.axes[0].title
    assert title.get_text() == "run Ⓐ: losses" and title.get_fontfamily() == ["DejaVu Sans", "STIXGeneral"]
    only_fonts()
    assert plots.losses_figure(run).axes[0].get_title() == "run A: losses"


# ------------------------------------------------------------------------------------------ titles

LONG_NAMES = ("wgan_clip_a_very_long_run_name_to_see_how_titles_and_legends_cope_with_it_xx",
              "experiment 2026-12-07 pokemon dcgan baseline with label smoothing and spectral norm")


@pytest.mark.parametrize("name", LONG_NAMES)
def test_a_long_run_name_is_shortened_in_the_middle_so_the_whole_title_fits(tmp_path, name):
    """A long run name, put first in the title, was cut off on both sides: ': losses' and the like were lost."""
    keys = dict(d_loss=float, g_loss=float, wasserstein=float, gp=float, d_acc_real=lambda s: 0.5,
                aux_acc_real=lambda s: 0.5, aux_entropy=lambda s: 1.0 - s / 100, img_per_s=float)
    run = write_run(tmp_path / name, step_lines(40, **keys) + [
        {"kind": "eval", "step": 20 * e, "epoch": e, "time": 60.0 * e, "fid": 100.0 - e} for e in (1, 2)])
    kinds = {"losses (incl. class loss)": plots.losses_figure, "Wasserstein estimate": plots.wasserstein_figure,
             "gradient penalty": plots.wasserstein_figure, "discriminator accuracy": plots.accuracy_figure,
             "auxiliary classifier": plots.accuracy_figure, "FID / KID vs epoch": plots.fid_figure,
             "FID / KID vs time": plots.fid_figure}
    for kind, figure in kinds.items():
        fig = figure(run)
        fig.canvas.draw()
        titles = [ax.title for ax in fig.axes if ax.get_title()]
        (title,) = [t for t in titles if t.get_text().endswith(f": {kind}")]
        text = title.get_text()
        assert "\u2026" in text and text.startswith(name[:8]) and text.endswith(f"{name[-6:]}: {kind}"), text
        box = title.get_window_extent()
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, (kind, box)  # inside the picture
        assert not any(t.get_window_extent().overlaps(box) for t in titles if t is not title)  # nor over a neighbour
    short = write_run(tmp_path / "short", step_lines(40, d_loss=float))
    assert plots.losses_figure(short).axes[0].get_title() == "short: losses"


def test_an_acgan_runs_losses_png_says_its_losses_include_the_class_loss(tmp_path):
    """An ACGAN's d_loss (5-7 early on) includes its auxiliary classifier's class loss, as the compare page's panels
    say: its own losses.png said "losses" only, and looked like a D gone wrong beside a DCGAN's 1."""
    acgan = write_run(tmp_path / "acgan", step_lines(30, d_loss=lambda s: 7 - s / 10, g_loss=float,
                                                     aux_acc_real=lambda s: s / 30))
    assert plots.losses_figure(acgan).axes[0].get_title() == "acgan: losses (incl. class loss)"
    dcgan = write_run(tmp_path / "dcgan", step_lines(30, d_loss=float, g_loss=float))
    assert plots.losses_figure(dcgan).axes[0].get_title() == "dcgan: losses"
    (tmp_path / "acgan" / "config.yaml").write_text("name: acgan\ntrain:\n  aux_weight: 0.0\n")  # no class loss in
    assert plots.losses_figure(load_run(tmp_path / "acgan")).axes[0].get_title() == "acgan: losses"


def test_other_png_names_the_run_like_the_other_plots(tmp_path):
    """other.png's panels were titled with their keys only: the run's name, shortened, is the figure's title."""
    fig = plots.other_figure(write_run(tmp_path / LONG_NAMES[1], step_lines(40, img_per_s=float, lr_now=float)))
    fig.canvas.draw()
    title = fig._suptitle
    assert title is not None and title.get_text().startswith("experiment 2026") and title.get_text().endswith("norm")
    box = title.get_window_extent()
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1
    assert not any(box.overlaps(ax.title.get_window_extent()) for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes] == ["img_per_s", "lr_now"]


# ------------------------------------------------------------------------------------------- grids


@pytest.mark.parametrize("n, across, down", [(3, 3, 1), (10, 5, 2), (64, 8, 8), (4, 2, 2), (12, 4, 3), (2, 2, 1),
                                             (7, 3, 3), (5, 3, 2)])
def test_save_grid_fills_a_rectangle_when_one_is_not_too_elongated(tmp_path, n, across, down):
    """-n 3 gave a 2 x 2 grid with a black cell, -n 10 a 4 x 3 one with two: a full layout of aspect up to 3 is used
    (7 or 5 images have none: near-square as before)."""
    import torch
    from PIL import Image

    from gankit.report.grids import save_grid

    with Image.open(save_grid(torch.zeros(n, 3, 8, 8), tmp_path / "g.png")) as im:
        assert im.size == (across * 10 + 2, down * 10 + 2)
    with Image.open(save_grid(torch.zeros(n, 3, 8, 8), tmp_path / "g.png", nrow=1)) as im:
        assert im.size == (12, n * 10 + 2)  # an explicit nrow is kept


def test_noto_fonts_of_other_scripts_are_found_and_the_hint_names_their_package(installed_fonts, only_fonts,
                                                                                   capsys):
    """A class or run named in Thai ('ทดสอบ'), Devanagari, Bengali, Tamil, Ethiopic... was written as code points even
    with Debian's fonts-noto-core installed (only CJK and symbol fonts were looked for), and the warning named symbol
    fonts. Their Noto families are found by name (no scan of every installed file); the warning names the package."""
    from gankit.report import fonts

    assert installed_fonts(("Noto Sans Thai UI", "DejaVuSerif.ttf", 400),
                           ("Noto Sans Symbols", "DejaVuSerif.ttf", 400),
                           ("Noto Sans Thai", "STIXGeneral.ttf", 400), ("Noto Sans Hebrew", "DejaVuSerif.ttf", 400),
                           ("Noto Sans CJK JP", "DejaVuSans-Bold.ttf", 400)) == [
        "DejaVu Sans", "Noto Sans CJK JP", "Noto Sans Thai", "Noto Sans Hebrew", "Noto Sans Symbols"]
    assert fonts.font_for("Ⓐ").family == "Noto Sans Thai"  # (this fake's file, STIXGeneral, has it)

    only_fonts()
    assert fonts.displayable("ทดสอบ") == "U+0E17 U+0E14 U+0E2A U+0E2D U+0E1A"
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: no installed font can draw 'ทดสอบ': ")
    assert "install Noto Sans Thai (Debian/Ubuntu: sudo apt install fonts-noto-core), then" in line
    fonts._told.clear()
    assert fonts.displayable("שלום ქართ") == "שלום ქართ"  # (DejaVu Sans has Hebrew, Arabic, Georgian, Armenian)
    fonts.displayable("नमस्ते ኢት 日")
    (line,) = capsys.readouterr().err.splitlines()
    assert ("install a CJK font (Debian/Ubuntu: sudo apt install fonts-noto-cjk; Fedora: sudo dnf install google-noto-"
            "sans-cjk-fonts) and Noto Sans Devanagari, Noto Sans Ethiopic (Debian/Ubuntu: sudo apt install"
            " fonts-noto-core), then") in line
