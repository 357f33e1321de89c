"""The comparison page in a real browser: every section shows and every image decodes."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from report_fakes import make_run

from gankit.report.compare import SECTIONS, write_compare_report
from gankit.report.gif import write_evolution_gif

CHROMIUM = os.environ.get("GANKIT_CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set GANKIT_CHROMIUM)", allow_module_level=True)


@contextlib.contextmanager
def _page(report: Path, width: int, height: int):
    """The compare page `report` loaded in headless Chromium with a `width` x `height` viewport."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(report.as_uri(), wait_until="load")
            yield page
        finally:
            browser.close()


def test_compare_report_renders_in_chromium(tmp_path):
    a = make_run(tmp_path, "dcgan_bce", run_index=0, epochs=6, steps_per_epoch=60,
                 fids=[300.0, 210.0, 160.0, 130.0, 118.0, 121.0])
    b = make_run(tmp_path, "wgan_gp", run_index=1, epochs=6, steps_per_epoch=60, lr_g=1e-4, loss="wgan-gp",
                 fids=[260.0, 170.0, 120.0, 96.0, 91.0, 93.0])
    c = make_run(tmp_path, "acgan_no_eval", run_index=2, epochs=4, steps_per_epoch=60, loss="hinge", fids=None)
    write_evolution_gif(a)
    report = write_compare_report([a, b, c], tmp_path / "report.html")

    with _page(report, 1400, 900) as page:
        for sid, title in SECTIONS:
            section = page.locator(f"#{sid}")
            assert section.is_visible(), sid
            assert title in section.inner_text()
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({alt: e.alt, ok: e.complete && e.naturalWidth > 0}))"
        )
        assert len(images) == 16  # 3 grids, 3 GIFs, FID and KID vs epoch and vs time, (D, G) x 2 loss groups,
        # D's accuracy on real images and fakes
        assert all(img["ok"] for img in images), [img["alt"] for img in images if not img["ok"]]
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000


LONG = "wgan_clip_a_very_long_run_name_to_see_how_titles_and_legends_cope_with_it_xx"


@pytest.fixture(scope="module")
def long_name_report(tmp_path_factory):
    """Four runs, one with a long name without spaces and no FID (it is named in the 'No FID logged' note)."""
    root = tmp_path_factory.mktemp("long")
    runs = [
        make_run(root, "dcgan fid", run_index=0, epochs=3, steps_per_epoch=30, fids=[300.0, 210.0, 160.0]),
        make_run(root, LONG, run_index=1, epochs=3, steps_per_epoch=30, loss="wgan", fids=None),
        make_run(root, "wgangp", run_index=2, epochs=3, steps_per_epoch=6, loss="wgan_gp", fids=None),
        make_run(root, "acgan18", run_index=3, epochs=3, steps_per_epoch=30, fids=[280.0, 220.0, 190.0]),
    ]
    return write_compare_report(runs, root / "report.html")


def test_compare_report_fits_a_laptop_screen(long_name_report):
    """At 1366 px the best-metrics table's last column (total time) is on screen: a long run name wraps in its
    cell instead of taking half the width."""
    with _page(long_name_report, 1366, 900) as page:
        right = page.eval_on_selector("#best-metrics thead th:last-child", "e => e.getBoundingClientRect().right")
        assert right <= 1366, right
        assert page.evaluate("document.documentElement.scrollWidth") <= 1366
        # and the name stays inside its cell (wrapped), not spilling over the next ones
        spill = page.eval_on_selector_all("#best-metrics tbody th",
                                          "els => els.map(e => [e.scrollWidth, e.clientWidth])")
        assert spill and all(scroll <= client for scroll, client in spill), spill


def test_compare_report_fits_a_phone_screen(long_name_report, tmp_path):
    """At 400 px the page does not scroll sideways (a long name wraps in the legend and the notes; wide tables
    scroll in their own box), and the loss panels are separate images, stacked, each at least 300 px wide."""
    with _page(long_name_report, 400, 800) as page:
        assert page.evaluate("document.documentElement.scrollWidth") <= 400
        boxes = page.eval_on_selector_all(
            "#loss-curves img", "els => els.map(e => {const r = e.getBoundingClientRect();"
            " return {x: r.left, y: r.top, w: r.width, right: r.right}})"
        )
        assert len(boxes) >= 4
        assert all(b["w"] >= 300 and b["right"] <= 400 for b in boxes), boxes
        assert len({round(b["y"]) for b in boxes}) == len(boxes), boxes  # one above the other
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)


def test_compare_report_shows_every_runs_samples_at_one_size(tmp_path):
    """Five runs of one grid shape at 1400 px: four fill the first row and the fifth, alone on the second, showed its
    grid and GIF 1.7 times as large (its figure grew to the whole row's width), so its images looked bigger than the
    others'."""
    runs = [make_run(tmp_path, f"run{i}", run_index=i, epochs=2, steps_per_epoch=5) for i in range(5)]
    report = write_compare_report(runs, tmp_path / "report.html")
    with _page(report, 1400, 900) as page:
        for sid in ("final-grids", "evolution"):
            boxes = page.eval_on_selector_all(
                f"#{sid} img.sample", "els => els.map(e => {const r = e.getBoundingClientRect();"
                " return {y: Math.round(r.top), w: Math.round(r.width)}})"
            )
            assert len(boxes) == 5 and len({b["y"] for b in boxes}) == 2, boxes  # two rows: the layout tested
            assert len({b["w"] for b in boxes}) == 1, (sid, boxes)


def test_best_metrics_headers_break_between_words_only(tmp_path):
    """Two runs without FID at 1400 px: 'no FID logged' spans the FID columns, which the table squeezed until their
    headers broke inside words ('ste' above 'p')."""
    runs = [make_run(tmp_path, f"run{i}", run_index=i, epochs=2, steps_per_epoch=5) for i in range(2)]
    report = write_compare_report(runs, tmp_path / "report.html")
    with _page(report, 1400, 900) as page:
        heads = page.eval_on_selector_all("#best-metrics thead th", """els => els.map(th => {
            const cs = getComputedStyle(th);
            const room = th.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
            const probe = document.createElement('span');
            probe.style.whiteSpace = 'nowrap';
            th.appendChild(probe);
            let widest = 0;
            for (const word of th.textContent.split(/\\s+/).filter(Boolean)) {
                probe.textContent = word;
                widest = Math.max(widest, probe.getBoundingClientRect().width);
            }
            probe.remove();
            return [th.textContent, widest, room];
        })""")
        assert len(heads) == 10
        assert all(widest <= room + 0.5 for _, widest, room in heads), heads


def test_config_keys_break_at_their_dots_only_on_a_phone_screen(tmp_path):
    """At 400 px the config table's key column broke names inside words ('data.resolu' above 'tion')."""
    import yaml

    runs = [make_run(tmp_path, f"run{i}", run_index=i, epochs=2, steps_per_epoch=5) for i in range(4)]
    for i, run in enumerate(runs):
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["data"]["resolution"] = 32 * (i + 1)
        config["train"]["instance_noise_epochs"] = i
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    report = write_compare_report(runs, tmp_path / "report.html")
    with _page(report, 400, 800) as page:
        # each key's lines, from where its characters are drawn
        lines = page.eval_on_selector_all("#config-diff tbody th code", _DRAWN_LINES)
        keys = {"".join(parts): parts for parts in lines}
        assert {"data.resolution", "train.instance_noise_epochs"} <= set(keys), keys
        assert any(len(parts) > 1 for parts in keys.values()), keys  # narrow enough to wrap: the case tested
        assert all(part.endswith(".") for parts in keys.values() for part in parts[:-1]), keys
        spill = page.eval_on_selector_all("#config-diff tbody th", "els => els.map(e => [e.scrollWidth, e.clientWidth])")
        assert all(scroll <= client for scroll, client in spill), spill  # in their cells, which the table widens
        assert page.evaluate("document.documentElement.scrollWidth") <= 400  # (the table scrolls in its box)


def test_best_metrics_fit_a_1280_px_screen_with_the_evaluations_times(tmp_path):
    """At 1280 px the best-metrics table of runs that logged how long their evaluations took fits the screen: the
    '3 evaluations, 1m 15s of this time' under a total kept to one line and widened its column until the table
    scrolled, the totals out of sight; it wraps, each duration whole."""
    import json

    a = make_run(tmp_path, "dcgan", epochs=3, fids=[200.0, 150.0, 120.0], torn=False)
    lines = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        if line["kind"] == "eval":
            line["eval_seconds"] = 25.0
    (a / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    runs = [a] + [make_run(tmp_path, f"run{i}", run_index=i, epochs=2, steps_per_epoch=5) for i in (1, 2)]
    report = write_compare_report(runs, tmp_path / "report.html")
    with _page(report, 1280, 900) as page:
        right = page.eval_on_selector("#best-metrics thead th:last-child", "e => e.getBoundingClientRect().right")
        assert right <= 1280, right
        scroll, client = page.eval_on_selector("#best-metrics .scroll", "e => [e.scrollWidth, e.clientWidth]")
        assert scroll <= client, (scroll, client)


def test_wide_tables_keep_their_row_names_in_view_when_scrolled_on_a_phone(long_name_report):
    """At 400 px the config and best-metrics tables scroll sideways in their boxes: scrolled to their last columns,
    the keys and the run names had gone off the left edge, leaving values that did not say what they were."""
    with _page(long_name_report, 400, 800) as page:
        for sid in ("config-diff", "best-metrics"):
            box = page.eval_on_selector(f"#{sid} .scroll", """e => {
                e.scrollLeft = e.scrollWidth;
                return [e.scrollLeft, e.getBoundingClientRect().left]; }""")
            assert box[0] > 50, (sid, box)  # it scrolled: the case tested
            lefts = page.eval_on_selector_all(f"#{sid} tbody th, #{sid} thead th:first-child",
                                              "els => els.map(e => e.getBoundingClientRect().left)")
            assert lefts and all(abs(left - box[1]) <= 1 for left in lefts), (sid, box, lefts)


@pytest.mark.parametrize("width", [1280, 390])
def test_run_names_in_the_tables_break_after_their_separators_beside_their_swatch(tmp_path, width):
    """At 1280 px, five runs of gankit's own names ('poke64_32px_dcgan-2'): a name wider than its column had its
    swatch alone on a line above it and broke inside a word ('dcgan_fid_ever' over 'y_epoch'); so did the names over
    the grids and GIFs. On a phone, a column narrower than the swatch and the name's first part ('pokemon16_') still had
    the swatch alone above the name, which Chromium breaks after in spite of the word joiner."""
    names = ["poke64_32px_acgan", "poke64_32px_dcgan", "poke64_32px_dcgan-2", "poke64_32px_dcgan-3",
             "pokemon16_dcgan_fid_every_epoch"]
    runs = [make_run(tmp_path, name, run_index=i, epochs=2, steps_per_epoch=5) for i, name in enumerate(names)]
    report = write_compare_report(runs, tmp_path / "report.html")
    with _page(report, width, 900) as page:
        cells = page.eval_on_selector_all("#best-metrics tbody th, #config-diff thead th:not(:first-child), "
                                          ".legend li b, figcaption",
                                          """els => els.map(th => {
            const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT), range = document.createRange();
            const lines = [];
            let top = null, first = null;
            for (let node; (node = walker.nextNode());) {
                for (let i = 0; i < node.length; i++) {
                    if (/\\s|\\u2060/.test(node.data[i])) continue;
                    range.setStart(node, i);
                    range.setEnd(node, i + 1);
                    const r = range.getBoundingClientRect();
                    if (first === null) first = r;
                    if (Math.round(r.top) !== top) { lines.push(''); top = Math.round(r.top); }
                    lines[lines.length - 1] += node.data[i];
                }
            }
            const swatch = th.querySelector('.swatch').getBoundingClientRect();
            return {lines, swatch_mid: (swatch.top + swatch.bottom) / 2, first_top: first.top, first_bottom: first.bottom};
        })""")
        assert len(cells) == 25  # 2 tables, the legend, the grids and the GIFs
        assert any(len(c["lines"]) > 1 for c in cells), cells  # narrow enough to wrap: the case tested
        for c in cells:
            assert "".join(c["lines"]) in names, c
            assert all(line[-1] in "_-" for line in c["lines"][:-1]), c["lines"]
            assert c["first_top"] <= c["swatch_mid"] <= c["first_bottom"], c  # on the name's first line


#: The lines a cell's text is drawn on (from where each character is), spaces and word joiners left out.
_DRAWN_LINES = """els => els.map(cell => {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT), range = document.createRange();
    const lines = [];
    let top = null;
    for (let node; (node = walker.nextNode());) {
        for (let i = 0; i < node.length; i++) {
            if (/\\s|\\u2060/.test(node.data[i])) continue;
            range.setStart(node, i);
            range.setEnd(node, i + 1);
            const y = Math.round(range.getBoundingClientRect().top);
            if (y !== top) { lines.push(''); top = y; }
            lines[lines.length - 1] += node.data[i];
        }
    }
    return lines;
})"""


def test_config_values_break_after_their_separators_on_a_phone_screen(tmp_path):
    """At 390 px the config table's values broke inside words ('poke64_32p' over 'x_dcgan-3' in the name row); they
    break after `_ - / .` as the run names do."""
    names = ["poke64_32px_dcgan", "poke64_32px_dcgan-3", "poke64_32px_dcgan_fid_every_epoch"]
    runs = [make_run(tmp_path, name, run_index=i, epochs=2, steps_per_epoch=5) for i, name in enumerate(names)]
    report = write_compare_report(runs, tmp_path / "report.html")
    with _page(report, 390, 800) as page:
        values = page.eval_on_selector_all("#config-diff tbody td", _DRAWN_LINES)
        wrapped = [lines for lines in values if "".join(lines) in names]
        assert len(wrapped) == 3 and any(len(lines) > 1 for lines in wrapped), values  # wraps: the case tested
        assert all(line[-1] in "_-/." for lines in values for line in lines[:-1]), values


def test_short_run_names_keep_to_one_line_in_the_best_metrics_at_1280_px(tmp_path):
    """At 1280 px the best-metrics table squeezed its run column to the names' longest parts: 'dcgan_long' broke into
    'dcgan_' over 'long'. Names up to 24 characters keep to one line, and the table of five runs still fits."""
    names = ["dcgan_long", "wgan_gp_small", "poke64_32px_dcgan-2", "poke64_32px_wgan_gp_fid",
             "poke64_64px_acgan_type_1"]
    runs = [make_run(tmp_path, name, run_index=i, epochs=3, steps_per_epoch=5,
                     fids=[300.0, 200.0, 150.0] if i % 2 else None) for i, name in enumerate(names)]
    report = write_compare_report(runs, tmp_path / "report.html")
    with _page(report, 1280, 900) as page:
        cells = page.eval_on_selector_all("#best-metrics tbody th", _DRAWN_LINES)
        assert ["".join(lines) for lines in cells] == names, cells
        assert all(len(lines) == 1 for lines in cells), cells
        right = page.eval_on_selector("#best-metrics thead th:last-child", "e => e.getBoundingClientRect().right")
        assert right <= 1280, right
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_a_plot_tapped_on_a_phone_shows_at_full_size_and_a_second_tap_puts_it_back(long_name_report):
    """At 390 px the plots shrink to the screen, their text about 6 px high: a tap shows one at its own size over the
    page (no script), a second tap puts it back where it was; a note under each plot section's heading says so, on a
    narrow screen only."""
    def box(img):
        return img.evaluate("e => {const r = e.getBoundingClientRect();"
                            " return {top: r.top, w: Math.round(r.width), natural: e.naturalWidth}}")

    with _page(long_name_report, 390, 800) as page:
        img = page.locator("#loss-curves img").first
        img.scroll_into_view_if_needed()
        shrunk, scrolled = box(img), page.evaluate("scrollY")
        assert shrunk["w"] < shrunk["natural"], shrunk  # shrunk to the screen: the case tested
        img.click()
        full = box(img)
        assert full["w"] >= full["natural"] and 0 <= full["top"] < 20, full  # its own size, at the screen's top
        assert page.evaluate("document.elementFromPoint(200, 300).closest('#loss-curves label') !== null")  # on top
        img.click(position={"x": 10, "y": 10})
        assert box(img) == shrunk and page.evaluate("scrollY") == scrolled
        hints = page.eval_on_selector_all("section", "els => els.map(s => [s.id, s.querySelectorAll('.tap-hint')"
                                          ".length, s.querySelector('.tap-hint')?.offsetHeight > 0])")
        assert {sid for sid, n, shown in hints if n == 1 and shown} == {"fid-curves", "loss-curves",
                                                                        "accuracy-curves"}, hints
        assert all(n <= 1 for _, n, _ in hints), hints
    with _page(long_name_report, 1280, 800) as page:
        assert page.eval_on_selector_all(".tap-hint", "els => els.every(e => e.offsetHeight === 0)")


def test_the_fid_and_the_kid_plots_stand_apart_on_a_phone(long_name_report):
    """At 390 px the FID pair of plots and the KID pair below it touched: nothing told where one ended."""
    with _page(long_name_report, 390, 800) as page:
        boxes = page.eval_on_selector_all("#fid-curves .pair", "els => els.map(e => e.getBoundingClientRect())"
                                          ".map(r => [r.top, r.bottom])")
    assert len(boxes) == 2, boxes
    assert boxes[1][0] - boxes[0][1] >= 12, boxes
