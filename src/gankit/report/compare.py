"""One self-contained HTML page comparing runs side by side.

Every image is embedded as a base64 data URI and the style sheet is inline, so the page can be mailed,
archived or opened offline. Any text that comes from a run (config values, folder names) is escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from pathlib import Path

import numpy as np

from gankit import console, runlock
from gankit.config import CHANGES_KID, CONDITIONAL_ONLY, MEASURING
from gankit.errors import RunError
from gankit.launch import resume_command  # not gankit.distributed's: it imports torch
from gankit.layout import GIF_NAME
from gankit.report._io import write_bytes_atomic
from gankit.report.gif import evolution_gif_bytes, gif_behind
from gankit.report.plots import (
    ACC_KEYS, AUX_ACC_KEYS, TIME_LABEL, epoch_ticks, eval_xs, figure_png, literal, new_figure, own_style,
    raw_and_smoothed, robust_ylim, smoothing_window, with_class_loss,
)
from gankit.report.runs import BestEval, Run, finite_number, load_run

SECTIONS = (
    ("config-diff", "Configuration differences"),
    ("best-metrics", "Best metrics"),
    ("final-grids", "Final samples"),
    ("evolution", "Evolution"),
    ("fid-curves", "FID / KID curves"),
    ("loss-curves", "Loss curves"),
    ("accuracy-curves", "Discriminator accuracy curves"),
)
#: An evolution.gif larger than this is not embedded as is: a smaller one is made from the samples.
MAX_EMBEDDED_GIF_BYTES = 4 * 2**20
COMPARE_GIF_FRAMES = 40
COMPARE_GIF_SIDE = 400
#: An evolution.gif counts as stale (and is remade from the grids) only when it is older than the last grid by more
#: than this many seconds: `cp -r` without -p gives a finished run's files new times in any order a few ms apart,
#: while a really stale GIF is older by at least the time an epoch takes to train and write.
GIF_STALE_AFTER_S = 2.0
MISSING = "\u2014"  # em dash: key absent from this run's config
#: A comparison shows its progress only once it has taken this many seconds (a few runs with their GIFs are quicker).
PROGRESS_AFTER_S = 2.0


def write_compare_report(run_dirs: list, out_path, progress: bool = False) -> Path:
    """Write an HTML page comparing the runs in `run_dirs` to `out_path` (atomically) and return its path.

    Sections (each with its id): `config-diff` (config keys whose values differ; every key when there is
    one run), `best-metrics` (best FID/KID and when it was reached, run totals), `final-grids` (last sample
    grid of each run), `evolution` (evolution GIFs; made in memory from the samples when a run has none),
    `fid-curves` (FID, then KID with its +- kid_std band, vs epoch and vs minutes, runs overlaid), `loss-curves`
    (D and G losses vs epoch, runs overlaid, the Wasserstein-family runs and those whose losses include a class loss
    (ACGAN) apart) and `accuracy-curves` (D's accuracies on real images and fakes, and an ACGAN's class accuracies,
    vs epoch, runs overlaid). A piece missing from a run shows a short note. Raises RunError when a folder is not a
    run. `progress`: count the runs done (`console.progress`) where the comparison takes more than PROGRESS_AFTER_S.
    """
    if not run_dirs:
        raise RunError("no runs to compare: pass at least one run folder")
    seen: dict[Path, object] = {}
    for d in run_dirs:
        where = Path(d).expanduser().resolve()
        if where in seen:
            first = seen[where]
            said = f"'{d}' is given twice" if str(d) == str(first) else f"'{first}' and '{d}' are the same run"
            raise RunError(f"{said}: pass each run once")
        seen[where] = d
    runs = [load_run(d, unreadable_config_ok=True) for d in run_dirs]
    labels = run_labels(runs)
    for r in runs:  # the rest of the run (its metrics, grids, curves) is still worth comparing
        if r.config_problem:
            console.warn(f"{r.config_problem}: {r.path} is compared without it (left out of the config table)")
    colors = [_color(i) for i in range(len(runs))]
    widths = _sample_widths(runs)  # grids and GIFs: every run's images at one size
    flat = [flatten_config(r.config) for r in runs]
    defaults = config_defaults()  # what a key counts as in a run whose config lacks it
    differ = _measuring_differences(runs, flat, defaults)
    states = [_state(r) for r in runs]
    with console.progress(len(runs), "comparing runs", "runs", progress, delay=PROGRESS_AFTER_S) as bar:
        # before the evolutions, the slow part the progress counts run by run (a GIF made from the grids)
        with own_style():
            curves = [
                _section("fid-curves", _fid_curves(runs, labels, colors, differ)),
                _section("loss-curves", _loss_curves(runs, labels, colors)),
                _section("accuracy-curves", _accuracy_curves(runs, labels, colors)),
            ]
        body = [
            _header(runs, labels, colors, states),
            _section("config-diff", _config_diff(flat, defaults, labels, colors, len(runs),
                                                 [label for r, label in zip(runs, labels) if r.config_problem])),
            _section("best-metrics", _measured_apart(differ) + _measured_by_whom(runs, labels, flat, defaults, differ)
                     + _best_metrics(runs, labels, colors, states, _alike(runs, flat, defaults, differ))),
            _section("final-grids", _final_grids(runs, labels, colors, widths)),
            _section("evolution", _evolutions(runs, labels, colors, widths, bar)),
            *curves,
        ]
    title = "gankit comparison: " + " vs ".join(labels)
    page = PAGE.format(title=html.escape(title), style=STYLE, body="\n".join(body))
    return write_bytes_atomic(out_path, console.printable(page).encode("utf-8"))  # a folder name not in UTF-8


# ------------------------------------------------------------------------------------------- labels


def run_labels(runs: list[Run]) -> list[str]:
    """Folder names; when two runs share one, the parent folder is added, then a counter."""
    labels = [r.name for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{r.path.resolve().parent.name}/{r.name}" for r in runs]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _color(i: int) -> str:
    """tab10's colours, then their lighter shades (tab20's odd entries): 20 runs have 20 swatches."""
    from matplotlib import colormaps, colors

    return colors.to_hex(colormaps["tab10"](i % 10) if i % 20 < 10 else colormaps["tab20"](2 * (i % 10) + 1))


def _dash(i: int) -> str:
    """The line style that, with the colour, tells plotted runs apart: a run with a lighter shade of an earlier
    run's colour is dashed."""
    return ("-", "--", ":", "-.")[(i // 10) % 4]


# ------------------------------------------------------------------------------------------ sections


def _header(runs, labels, colors, states) -> str:
    items = "".join(
        f'<li><b>{_named(label, c)}</b> <span class="path">{html.escape(str(r.path))}</span>'
        + (f' <span class="live">{html.escape(said)}</span>' if said else "") + "</li>"
        for r, label, c, (_, said) in zip(runs, labels, colors, states)
    )
    nav = " ".join(f'<a href="#{sid}">{title}</a>' for sid, title in SECTIONS)
    when = _local_time()
    return (
        f"<header><h1>gankit: comparing {len(runs)} run{'s' if len(runs) != 1 else ''}</h1>"
        f'<ul class="legend">{items}</ul><nav>{nav}</nav>'
        f'<p class="note">Generated {when}. Colors match across tables and plots.</p></header>'
    )


def _state(run: Run) -> tuple[str, str]:
    """(mark, what to say) of a run training now or stopped before its end, ('', '') of the others: the legend at the
    top says it, and the run's best-metrics row, where its figures are read, marks it (the legend's words its title)."""
    if runlock.in_use(run.path):
        return "training now", "training now: this page shows it as it was"
    spent = _spent_early(run)
    if not spent:
        return "", ""
    return (f"stopped before its end ({spent})",
            f"stopped before its end ({spent}): it crashed or was stopped; {resume_command(run.path)} resumes it")


def _spent_early(run: Run) -> str:
    """How much of its budget (train.epochs, or train.max_steps) a run that stopped before spending it had trained: a
    crash, a kill or a Ctrl-C; '' for the others (its table row looked like a finished run's). A run with a budget in
    minutes is not judged: its last logged time need not reach it."""
    train = run.config.get("train") if isinstance(run.config, dict) else None
    if not isinstance(train, dict) or train.get("minutes") is not None or not isinstance(train.get("epochs"), int):
        return ""
    epochs, steps, max_steps = run.total_epochs or 0, run.total_steps or 0, train.get("max_steps")
    if epochs >= train["epochs"] or (isinstance(max_steps, int) and steps >= max_steps):
        return ""
    return f"{epochs:,} of {train['epochs']:,} epochs" + (f", {steps:,} of {max_steps:,} iterations" if max_steps else "")


def _output_only(key: str) -> bool:
    """A config key that changes what a run writes (its name, logs, samples, when it evaluates), not its training
    nor how its FID is measured."""
    return key == "name" or key.startswith("log.") or (key.startswith("eval.") and key not in MEASURING)


def _conditional(flat: dict, defaults: dict) -> bool:
    """Whether the run of the flattened config `flat` is conditional (draws classes)."""
    from gankit.config import CONDITIONAL_ARCHS

    return _value(flat, "model.arch", defaults) in CONDITIONAL_ARCHS


def _changing_nothing(flat, defaults) -> tuple[str, ...]:
    """The CONDITIONAL_ONLY keys when none of the runs (`flat`: each one's flattened config) is conditional: they
    change nothing of these runs (an old dcgan run, without eval.fake_classes, showed it as a difference)."""
    return () if any(_conditional(f, defaults) for f in flat) else CONDITIONAL_ONLY


def _config_diff(flat, defaults, labels, colors, n_runs, unreadable=()) -> str:
    """`unreadable`: the labels of the runs whose config.yaml could not be read (their `flat` is empty)."""
    keys = list(dict.fromkeys(k for f in flat for k in f))
    missing = [label for label, f in zip(labels, flat) if not f and label not in unreadable]
    said = [f"{what} in {', '.join(html.escape(w) for w in who)}" for what, who in
            (("No config.yaml", missing), ("An unreadable config.yaml", unreadable)) if who]
    if not keys:
        return _note(f"{'; '.join(said)}." if unreadable else "No config.yaml in these runs.")
    if missing or unreadable:  # a run that lost its config.yaml would make every key differ and bury the real ones
        kept = [i for i, f in enumerate(flat) if f]
        flat, labels, colors = [flat[i] for i in kept], [labels[i] for i in kept], [colors[i] for i in kept]
    aside = _note(f"{'; '.join(said)}: left out of this table.") if said else ""
    idle = _changing_nothing(flat, defaults)

    def greyed(key: str) -> bool:
        return _output_only(key) or key in idle

    if len(flat) == 1:
        shown, intro = keys, "The run's full configuration." if n_runs == 1 else \
            f"The full configuration of {html.escape(labels[0])}, the only run with a readable config.yaml."
    else:
        shown = [k for k in keys if len({_cell(_value(f, k, defaults)) for f in flat}) > 1]
        same = len(keys) - len(shown)
        if not shown:
            return _note(f"All {len(keys)} config keys are identical across these runs.") + aside
        shown.sort(key=greyed)  # what changes the training first (a stable sort keeps the config's order)
        idle_shown = [k for k in idle if k in shown]
        twins = _same_training(flat, [k for k in keys if not greyed(k)], defaults, labels)
        intro = (
            f"{len(shown)} of {len(keys)} config keys differ; the {same} identical ones are not shown."
            f" {MISSING} marks a key a run does not have (made by a gankit without it); it counts as the default"
            " shown next to it, where this gankit has one."
            + " Highlighted: a value other than the row's most common one (of values as common, the first run's)."
            + (" Grey rows (the name, log.*, when it evaluates) change what a run writes, not how it trains."
               if any(map(_output_only, shown)) else "")
            + (f" Grey too: {', '.join(idle_shown)}, which matters to conditional runs only (none of these is)."
               if idle_shown else "")
            + "".join(f" Repeats, the same training config (only grey rows differ): {_and(group)}; their curves can"
                      " lie on one another and hide all but one." for group in twins)
        )
    head = "".join(f"<th>{_named(label, c)}</th>" for label, c in zip(labels, colors))
    rows = []
    for k in shown:
        grey = ' class="aside"' if len(flat) > 1 and greyed(k) else ""
        odd = _unlike_most([_cell(_value(f, k, defaults)) for f in flat]) if len(flat) > 1 and not grey else []
        cells = "".join(
            f'<td class="{" ".join(filter(None, ("missing" if k not in f else "", "odd" if i in odd else "")))}">'
            f'{_breakable(_shown(f, k, defaults))}</td>' for i, f in enumerate(flat)
        )
        key = html.escape(k).replace(".", ".<wbr>")  # breaks at its dots only (STYLE): 'data.' over 'resolution'
        rows.append(f"<tr{grey}><th scope=\"row\"><code>{key}</code></th>{cells}</tr>")
    return f'<p class="note">{intro}</p>{aside}<div class="scroll"><table><thead><tr><th>key</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _same_training(flat, keys, defaults, labels) -> list[list[str]]:
    """The groups of two or more runs (their labels) whose flattened configs `flat` hold the same value for every key
    of `keys`, those that change the training: repeats, which a comparison of 15 runs did not point out."""
    groups: dict[tuple, list[str]] = {}
    for f, label in zip(flat, labels):
        groups.setdefault(tuple(_cell(_value(f, k, defaults)) for k in keys), []).append(label)
    return [group for group in groups.values() if len(group) > 1]


def _unlike_most(values: list[str]) -> list[int]:
    """The indices of a config row's `values` (one a run) other than its most common one (of values as common, the
    first run's): among 15 runs' columns, the value a run changed stands out."""
    from collections import Counter

    common = Counter(values).most_common(1)[0][0]  # of equal counts, the first met
    return [i for i, v in enumerate(values) if v != common]


def _and(labels: list[str]) -> str:
    """'a, b and c', escaped, each breaking after its separators (`_breakable`), not inside a word, on a phone."""
    named = [_breakable(label) for label in labels]
    return " and ".join(filter(None, (", ".join(named[:-1]), named[-1])))


def _local_time() -> str:
    """Now, in local time with its UTC offset and its zone's name where it has one: '2026-12-07 23:41 UTC+01:00
    (CET)' ('Generated 23:41' did not say where)."""
    now = _dt.datetime.now().astimezone()
    offset, name = now.strftime("%z"), now.tzname() or ""
    named = name and not name.startswith(("+", "-", "UTC"))  # a zone without a name has its offset as its name
    return f"{now:%Y-%m-%d %H:%M} UTC{offset[:3]}:{offset[3:5]}" + (f" ({name})" if named else "")


def _best_metrics(runs, labels, colors, states, alike) -> str:
    """The table of each run's best FID and its totals; `states`: each run's (mark, what to say) (`_state`); `alike`:
    (FID, KID) each run's group of runs measured alike (`_alike`), among which the lowest figures are marked."""
    head = (
        "<tr><th>run</th><th>best FID</th><th>KID at best</th><th>reached at epoch</th><th>reached at step</th>"
        "<th>time (evaluations included)</th><th>last FID</th><th>epochs trained</th><th>steps trained</th>"
        "<th>total time (evaluations included)</th></tr>"
    )
    rows = []
    evaluated, timed = False, True
    bests = [r.best for r in runs]
    lowest = [_lowest([b and b.fid for b in bests], [a[0] for a in alike]),
              _lowest([b and b.kid_mean for b in bests], [a[1] for a in alike]),
              _lowest([_last_fid(r) for r in runs], [a[0] for a in alike])]
    for i, (r, label, c, (mark, said)) in enumerate(zip(runs, labels, colors, states)):
        best = r.best
        n_evals, evaluating = len(r.lines("eval")), r.evaluating_time
        evaluated = evaluated or n_evals > 0
        if best is None:
            best_cells = '<td colspan="6" class="missing">no FID logged</td>'
        else:
            kid = MISSING
            if best.kid_mean is not None:
                kid = f"{best.kid_mean:.4f}" + (f" \u00b1 {best.kid_std:.4f}" if best.kid_std is not None else "")
            fid, kid, last = (_figure(text, i in low) for text, low in zip(
                (f"{best.fid:.2f}", kid, f"{_last_fid(r):.2f}"), lowest))
            best_cells = (
                f'{fid}{kid}<td class="num">{_reached(best)}</td>'
                f'<td class="num">{best.step:,}</td><td class="num">{format_duration(best.time)}</td>{last}'
            )
        totals = (
            f'<td class="num">{_epochs(r)}</td><td class="num">{_or_dash(r.total_steps)}</td>'
            f'<td class="num">{format_duration(r.total_time) if r.total_time is not None else MISSING}'
            + (f'<br><span class="aside">{_evaluations(n_evals, evaluating, len(r.evaluations_inside()))}</span>'
               if n_evals else "")
            + "</td>"
        )
        timed = timed and (not n_evals or evaluating is not None)
        state = f'<br><span class="aside" title="{html.escape(said)}">{html.escape(mark)}</span>' if mark else ""
        rows.append(f"<tr><th scope=\"row\">{_named(label, c)}{state}</th>{best_cells}{totals}</tr>")
    if timed:  # every evaluation logged its duration (eval_seconds)
        note = ("Times are wall-clock time since training started, the FID/KID evaluations included; under each total,"
                " the time its evaluations took (the evaluation at a run's end comes after its total).")
    else:
        note = ("Times are wall-clock time since training started, the FID/KID evaluations included: a run written"
                " before gankit logged each evaluation's duration (eval_seconds in metrics.jsonl) does not say how"
                " long they took, so a run that evaluated often looks slower than its training was.")
    if any(lowest):
        note += (" Bold, marked best: the lowest best FID, KID at best and last FID of the runs measured alike (lower is"
                 " better).")
    unknown = [label for r, label, (group, _) in zip(runs, labels, alike) if group is None and r.best is not None]
    if unknown:
        note += (f" Not ranked (config.yaml unreadable or missing, so how FID was measured is unknown):"
                 f" {_and(unknown)}.")
    note = _note(note) if evaluated else ""
    return f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>{note}'


def _alike(runs, flat, defaults, differ) -> list[tuple[tuple | None, tuple | None]]:
    """(FID, KID) each run's values of the MEASURING keys that differ between the runs (`differ`) and of those of them
    that change KID: runs of the same values measured alike, and their figures compare. (None, None) for a run whose
    config.yaml is missing or unreadable: how it measured is unknown, so it is in no group (its 60.00 was marked best
    among runs it may not compare with)."""
    values = {k: _measured_with(runs, flat, defaults, k) for k in differ}
    return [(tuple(values[k].get(i) for k in differ), tuple(values[k].get(i) for k in differ if k in CHANGES_KID))
            if flat[i] else (None, None) for i in range(len(runs))]


def _lowest(values: list, groups: list) -> set[int]:
    """The indices of the lowest of `values` (None: not measured) in each group of two or more runs measured alike
    (`groups`: each run's; None: in no group): of 15 runs' best FIDs, all bold, none stood out."""
    members: dict = {}
    for i, (v, g) in enumerate(zip(values, groups)):
        if v is not None and g is not None:
            members.setdefault(g, []).append(i)
    return {i for group in members.values() if len(group) > 1 for i in group
            if values[i] == min(values[j] for j in group)}


def _figure(text: str, lowest: bool) -> str:
    """A metric's cell: bold and marked when it is the lowest of the runs measured alike (`_lowest`)."""
    return f'<td class="num best">{text} <span class="aside">best</span></td>' if lowest else f'<td class="num">{text}</td>'


def _last_fid(run: Run) -> float | None:
    """The FID of the run's last evaluation that logged one."""
    return next((line["fid"] for line in reversed(run.lines("eval")) if finite_number(line.get("fid")) is not None),
                None)


def _epochs(run: Run) -> str:
    """The "epochs" cell: the epochs finished, then how far the run got into the next when it stopped inside it (or is
    training it now): '7 (+40% of 8)', '0 (+part of 1)' where there is no finished epoch to measure the share by."""
    done, under_way = run.total_epochs, run.unfinished_epoch
    if done is None or under_way is None:
        return _or_dash(done)
    return _into(*under_way)


def _reached(best: BestEval) -> str:
    """The "reached at epoch" cell: the epoch the best FID ended, or, reached by the evaluation that ended a run inside
    an epoch, how far into it, as the "epochs" cell says it: '20 (+30% of 21)', not the 21 its line says."""
    return _into(best.epoch, best.share) if best.unfinished else f"{best.epoch:,}"


def _into(epoch: int, share: float | None) -> str:
    """'7 (+40% of 8)': the epochs finished before the unfinished `epoch`, and the `share` of it trained ('+part of'
    where it was not measured)."""
    return f"{epoch - 1:,} (+{'part' if share is None else f'{min(99, max(1, round(100 * share)))}%'} of {epoch:,})"


def _evaluations(n: int, seconds: float | None, inside: int) -> str:
    """'6 evaluations', and how long the `inside` ones inside the total took when they logged it; 'after this time'
    when none is inside it (the one evaluation of a run at its end: '0s of this time' said it took no time)."""
    said = console.count(n, "evaluation")
    if seconds is None:
        return said
    if not inside:
        return f"{said}, after this time"
    took = format_duration(seconds).replace(" ", "\u00a0")  # wrapped in its cell, '1m' not above '31s'
    return f"{said}, {took} of this time"


def _measuring_differences(runs, flat, defaults) -> list[str]:
    """The MEASURING keys whose values differ between the runs that logged FID (`flat`: each run's flattened
    config); a CONDITIONAL_ONLY key, between the conditional ones."""
    return [k for k in MEASURING if len(set(_measured_with(runs, flat, defaults, k).values())) > 1]


def _measured_with(runs, flat, defaults, key: str) -> dict[int, str]:
    """{index of a run: its value of the MEASURING `key`} for the runs that logged FID (`flat`: each run's flattened
    config); for a CONDITIONAL_ONLY key, the conditional ones."""
    return {i: _cell(_value(f, key, defaults)) for i, (r, f) in enumerate(zip(runs, flat)) if r.best is not None and f
            and (key not in CONDITIONAL_ONLY or _conditional(f, defaults))}


def _measured_by_whom(runs, labels, flat, defaults, differ) -> str:
    """Which runs measured FID with a value other than most runs' of each `differ` key: one run at 32 px among 14 at
    16 px made the warning say that none of the 15 runs' FIDs compare."""
    said = []
    for key in differ:
        values = _measured_with(runs, flat, defaults, key)
        odd = [list(values)[i] for i in _unlike_most(list(values.values()))]
        common = next(v for i, v in values.items() if i not in odd)
        said += [f"{key} {html.escape(value)} in {_and([labels[i] for i in odd if values[i] == value])}"
                 for value in dict.fromkeys(values[i] for i in odd)]
        said[-1] += f", {html.escape(common)} in the others"
    return _note(f"Measured otherwise: {'; '.join(said)} (runs measured alike compare with each other).") if said else ""


def _measured_apart(differ: list[str]) -> str:
    """A warning when runs that logged FID measured it with different eval.n_fake / n_real / Inception weights /
    fake classes."""
    if not differ:
        return ""
    kid_too = [k for k in differ if k in CHANGES_KID]
    if kid_too:
        why = "; ".join(CHANGES_KID[k] for k in kid_too)
        return _note(f"These runs measured FID and KID with different {' / '.join(differ)}: {why}, so neither their"
                     " FIDs nor their KIDs compare.")
    return _note(f"These runs measured FID with different {' / '.join(differ)}: FID depends on how many images it "
                 "sees, so their FIDs do not compare; their KIDs do, within KID's \u00b1: compare them on the KID"
                 " curves (under FID / KID curves), not the FID curves.")


def _sample_widths(runs) -> list[str]:
    """A CSS width per run for its sample grid and evolution GIF, so that every run's images show at one size
    (a conditional run's grid of one row per class is narrower and much taller than an 8 x 8 one): each final
    grid's width in images (its pixels, before training reduced a large grid, over the run's resolution + the grids'
    padding) as a share of the widest (at least a quarter)."""
    from PIL import Image

    from gankit.report.grids import PADDING, REDUCED_KEY

    units: list[float | None] = []
    for r in runs:
        try:
            with Image.open(r.final_grid or "") as im:  # images of `resolution` px, each after PADDING px, + PADDING
                width = im.width * int(im.info.get(REDUCED_KEY, 1))
                units.append((width - PADDING) / (int(r.config["data"]["resolution"]) + PADDING))
        except (OSError, TypeError, KeyError, ValueError):  # no grid, unreadable, no resolution in its config
            units.append(None)
    widest = max((u for u in units if u), default=None)
    return [f"width: {max(25.0, 100 * u / widest):.1f}%" if u and widest else "" for u in units]


def _final_grids(runs, labels, colors, widths) -> str:
    cells = []
    for r, label, c, width in zip(runs, labels, colors, widths):
        if r.final_grid is None:
            content = _note("Not available: no sample grids in samples/.")
        else:
            # the newest grid that decodes: a damaged or truncated one would show as a broken image
            shown = next(((path, data) for path in reversed(r.samples) if (data := _image_bytes(path))), None)
            if shown is None:
                content = _note(f"Not available: no grid in samples/ can be read ({html.escape(r.final_grid.name)}"
                                f"{' and the others' if len(r.samples) > 1 else ''} damaged or unreadable).")
            else:
                path, data = shown
                epoch = r.sample_epochs[r.samples.index(path)]
                unfinished = r.unfinished_epoch is not None and epoch == r.unfinished_epoch[0]
                newer = r.samples[r.samples.index(path) + 1:]
                more = f" and {len(newer) - 1} more" if len(newer) > 1 else ""
                broken = f"; {html.escape(newer[-1].name)}{more} cannot be read (damaged or truncated)" if newer else ""
                content = (_img(data, "image/png", f"{label}: final samples", style=width)
                           + f'<p class="note">epoch {epoch}{" (unfinished)" if unfinished else ""}{broken}</p>')
        cells.append(_cell_fig(label, c, content))
    return f'<div class="runs">{"".join(cells)}</div>'


def _image_bytes(path: Path) -> bytes | None:
    """The file's bytes when Pillow decodes it whole (every frame of an animation), else None: a damaged or truncated
    image embedded in the page shows as a broken one."""
    from PIL import Image

    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            for frame in range(getattr(im, "n_frames", 1)):
                im.seek(frame)
                im.load()
    except Exception:  # noqa: BLE001 - OSError, SyntaxError, EOFError, DecompressionBombError...: not shown either way
        return None
    return data


def _evolutions(runs, labels, colors, widths, bar) -> str:
    cells = []
    for r, label, c, width in zip(runs, labels, colors, widths):
        data, note = _evolution_gif(r)
        content = _img(data, "image/gif", f"{label}: evolution of samples", style=width) if data else ""
        cells.append(_cell_fig(label, c, content + (_note(note) if note else "")))
        bar.update(1)
    return f'<div class="runs">{"".join(cells)}</div>'


def _evolution_gif(run: Run) -> tuple[bytes | None, str]:
    """(GIF bytes, note): the run's evolution.gif when reasonably small, else one made from its samples."""
    gif = run.path / GIF_NAME
    why, broken = "made from samples/ for this page", f"{GIF_NAME} is damaged or truncated"
    try:
        if gif.is_file() and 0 < gif.stat().st_size <= MAX_EMBEDDED_GIF_BYTES:
            if gif_behind(run.path, run.samples, GIF_STALE_AFTER_S):
                why += f" ({GIF_NAME} is older than the last grid: the run is training, or stopped before writing it)"
            elif (data := _image_bytes(gif)) is not None:
                return data, ""
            else:  # shown, it would be a broken image
                why += f" ({broken})"
    except OSError:
        pass
    if not run.samples:
        return None, f"Not available: {broken if broken in why else f'no {GIF_NAME}'} and no sample grids."
    try:
        unfinished = run.unfinished_epoch
        return evolution_gif_bytes(run.samples, COMPARE_GIF_FRAMES, max_side=COMPARE_GIF_SIDE,
                                   unfinished=unfinished and unfinished[0]), why
    except (OSError, ValueError) as e:
        return None, f"Not available: the sample grids cannot be read ({type(e).__name__})."


def _fid_curves(runs, labels, colors, differ=()) -> str:
    """FID vs epoch and vs time, then KID (kid_mean, with a band of \u00b1 kid_std) the same way, runs overlaid.
    `differ`: the MEASURING keys whose values differ between the runs; the figures say which of them compare."""
    with_fid = [(r, lab, c, i) for i, (r, lab, c) in enumerate(zip(runs, labels, colors)) if _fid_points(r)]
    with_kid = [(r, lab, c, i) for i, (r, lab, c) in enumerate(zip(runs, labels, colors)) if _kid_points(r)]
    if not with_fid and not with_kid:
        return _note("Not available: no run logged FID or KID.")
    kid_differ = [k for k in differ if k in CHANGES_KID]
    counts_differ = bool(differ) and not kid_differ
    parts, kid_parts = [], []
    for x, scale, xlabel in (("epoch", 1.0, "epoch"), ("time", 60.0, TIME_LABEL)):  # the times include evaluations
        if with_fid:
            fig, ax = new_figure(1, width=7.0, height=4.5)
            fig.set_layout_engine("constrained")  # no time pressure here: let labels of any length fit
            lines, drawn = [], []
            for r, label, c, i in with_fid:
                pts = _fid_points(r)
                xs = eval_xs(r, pts, x) / scale
                lines += ax.plot(xs, [p["fid"] for p in pts], marker="o", ms=3, ls=_dash(i), color=c,
                                 label=literal(label))
                drawn.append(xs)
                b = r.best
                ax.plot([(b.at if x == "epoch" else b.time) / scale], [b.fid], "*", ms=13, color=c, mec="black",
                        mew=0.6)
            caveat = ("\nnot comparable across these runs (different " + " / ".join(differ) + ")") if differ else ""
            ax.set(title=f"FID vs {x} (\u2605 = best){caveat}", xlabel=xlabel, ylabel="FID (lower is better)")
            if x == "epoch":  # whole epochs (fractions of one for runs shorter than it), as the run's own plots/fid.png
                epoch_ticks(ax, np.concatenate(drawn))
            _legend_below(fig, lines)
            parts.append(_plot(figure_png(fig), f"FID vs {xlabel}"))
        if with_kid:
            fig, ax = new_figure(1, width=7.0, height=4.5)
            fig.set_layout_engine("constrained")
            lines, drawn = [], []
            for r, label, c, i in with_kid:
                pts = _kid_points(r)
                xs = eval_xs(r, pts, x) / scale
                drawn.append(xs)
                kid = np.array([p["kid_mean"] for p in pts], dtype=float)
                std = np.array([finite_number(p.get("kid_std")) for p in pts], dtype=float)  # None -> nan: no band
                lines += ax.plot(xs, kid, marker="s", ms=3, ls=_dash(i), color=c, label=literal(label))
                ax.fill_between(xs, kid - std, kid + std, color=c, alpha=0.15, lw=0)
            caveat = ("\ncomparable across these runs (FID is not)" if counts_differ else
                      f"\nnot comparable across these runs (different {' / '.join(kid_differ)})" if kid_differ else "")
            ax.set(title=f"KID vs {x} (band = \u00b1 kid_std){caveat}", xlabel=xlabel,
                   ylabel="KID (lower is better)")
            if x == "epoch":
                epoch_ticks(ax, np.concatenate(drawn))
            _legend_below(fig, lines)
            kid_parts.append(_plot(figure_png(fig), f"KID vs {xlabel}"))
    intro = ""
    if counts_differ and with_kid:
        intro = _note(f"These runs measured with different {' / '.join(differ)}: compare them on the KID curves"
                      " (KID does not depend on how many images it sees); their FID curves do not compare.")
    elif kid_differ:
        intro = _note(f"These runs measured with different {' / '.join(kid_differ)}: neither their FID nor their KID"
                      " curves compare.")
    missing = [lab for r, lab in zip(runs, labels) if not _fid_points(r)]
    note = _note("No FID logged: " + ", ".join(html.escape(m) for m in missing) + ".") if missing else ""
    no_kid = [lab for r, lab in zip(runs, labels) if not _kid_points(r) and _fid_points(r)]
    note += _note("No KID logged: " + ", ".join(html.escape(m) for m in no_kid) + ".") if no_kid and with_kid else ""
    return intro + "".join(f'<div class="plots pair">{"".join(p)}</div>' for p in (parts, kid_parts) if p) + note


#: train.loss values whose D is a critic scoring in Wasserstein units: their losses are on scales of their own (with
#: a gradient penalty, mostly the penalty: about lambda = 10 early on) and share no panel with the others'.
LOSS_FAMILIES = (("wgan", "WGAN"), ("wgan_gp", "WGAN-GP"), ("wgan-gp", "WGAN-GP"))


def _loss_family(run: Run) -> str:
    """"WGAN" or "WGAN-GP" for a run whose train.loss is of the Wasserstein family (without a config: one that logged
    a gradient penalty / a Wasserstein estimate), "" for the others."""
    train = run.config.get("train") if isinstance(run.config, dict) else None
    loss = train.get("loss") if isinstance(train, dict) else None
    if isinstance(loss, str):
        return dict(LOSS_FAMILIES).get(loss.lower(), "")
    logged = run.numeric_keys("step")
    return "WGAN-GP" if "gp" in logged else "WGAN" if "wasserstein" in logged else ""


def _epoch_series(runs, labels, colors, keys) -> list[tuple]:
    """(run, label, colour, index, {key: (epochs, values)}) for each run: the `keys` it logged, against epochs."""
    entries = []
    for i, (r, lab, c) in enumerate(zip(runs, labels, colors)):
        curves = {}
        for key in keys:
            xs, ys = r.series(key)
            if xs:
                curves[key] = (r.epoch_positions(xs), ys)
        entries.append((r, lab, c, i, curves))
    return entries


def _epoch_panel(drawn, ylabel: str):
    """(figure, axes, legend lines, smoothed): the runs' curves of `drawn` ((run, label, colour, index, epochs,
    values) each) overlaid against epochs, smoothed over their raw values when long enough."""
    fig, ax = new_figure(1, width=6.4, height=4.4)
    fig.set_layout_engine("constrained")
    lines = []
    smoothed = False
    for r, label, c, i, xs, ys in drawn:
        line = raw_and_smoothed(ax, xs, ys, color=c, label=literal(label), alpha=0.15)
        line.set_linestyle(_dash(i))
        lines.append(line)
        smoothed = smoothed or smoothing_window(len(ys)) > 1
    ax.set(xlabel="epoch", ylabel=ylabel)
    epoch_ticks(ax, np.concatenate([np.asarray(d[4], dtype=float) for d in drawn]))  # points between whole epochs
    return fig, ax, lines, smoothed


def _loss_curves(runs, labels, colors) -> str:
    """One image per (loss, group of runs): D and G losses against epochs (fractional), the Wasserstein-family runs'
    in panels of their own, and so the runs' whose losses include a class loss (ACGAN). Separate images stack on a
    narrow screen."""
    keys = (("d_loss", "discriminator"), ("g_loss", "generator"))
    entries = _epoch_series(runs, labels, colors, [key for key, _ in keys])
    if not any(e[4] for e in entries):
        return _note("Not available: no run logged d_loss or g_loss.")
    groups = [((g, cls), [e for e in entries if e[4] and (_loss_family(e[0]), with_class_loss(e[0])) == (g, cls)])
              for g in ("", "WGAN", "WGAN-GP") for cls in (False, True)]
    groups = [(g, members) for g, members in groups if members]
    apart = len(groups) > 1
    parts = []
    for (family, cls), members in groups:
        group = " ".join(name for name in (family, "ACGAN" if cls else "") if name)
        for key, who in keys:
            drawn = [(r, lab, c, i, *curves[key]) for r, lab, c, i, curves in members if key in curves]
            if not drawn:
                continue
            fig, ax, lines, smoothed = _epoch_panel(drawn, key)
            ax.set_ylim(*robust_ylim([d[5] for d in drawn], ax.get_ylim()))
            who_now = "critic" if family and who == "discriminator" else who
            title = (f"{who_now} loss ({key}{', incl. class loss' if cls else ''})"
                     + (f": {group} runs" if group else (": other runs" if apart else "")))
            if smoothed:
                title += "\nsmoothed (lines) over the raw values (faint)"
            ax.set_title(title)
            _legend_below(fig, lines)
            alt = f"{key} vs epoch" + (f", {group} runs" if group else "")
            parts.append(_plot(figure_png(fig), alt))
    aside = _note("Runs with train.loss wgan and wgan_gp have panels of their own: a critic scores in units of its"
                  " own (with a gradient penalty, mostly the penalty), which would squash the other runs' curves.") \
        if any(family for (family, _), _ in groups) and apart else ""
    if any(cls for (_, cls), _ in groups):
        aside += _note("The d_loss and g_loss of an ACGAN run include its auxiliary classifier's class loss"
                       " (train.aux_weight \u00d7 cross-entropy), which an unconditional run's do not"
                       + (": they have panels of their own, and do not compare with the others'; compare D's"
                          " accuracies instead (below)." if apart else "."))
    missing = [lab for r, lab, c, i, curves in entries if not curves]
    note = _note("No losses logged: " + ", ".join(html.escape(m) for m in missing) + ".") if missing else ""
    return (f'<p class="note">Losses against epochs, a measure of progress common to all runs (a step of the critic'
            f' strategy is one G update fed by n_critic batches, of the others one batch).</p>'
            f'<div class="plots pair">{"".join(parts)}</div>{aside}{note}')


#: The accuracy panels: (key, title); the class accuracies are logged by conditional runs (ACGAN) only.
ACCURACY_PANELS = (
    (ACC_KEYS[0], "D accuracy on real images"),
    (ACC_KEYS[1], "D accuracy on fakes"),
    (AUX_ACC_KEYS[0], "class accuracy on real images (ACGAN)"),
    (AUX_ACC_KEYS[1], "class accuracy on fakes (ACGAN)"),
)


def _accuracy_curves(runs, labels, colors) -> str:
    """One image per accuracy that some run logged, against epochs, runs overlaid: the share of real images D
    scores as real and of fakes it scores as fake (chance, 0.5, dashed), and for ACGAN runs the share of real images
    and of fakes whose class its auxiliary classifier names. Unlike the losses, these share one scale."""
    entries = _epoch_series(runs, labels, colors, [key for key, _ in ACCURACY_PANELS])
    if not any(e[4] for e in entries):
        return _note("Not available: no run logged D's accuracies.")
    parts = []
    for key, what in ACCURACY_PANELS:
        drawn = [(r, lab, c, i, *curves[key]) for r, lab, c, i, curves in entries if key in curves]
        if not drawn:
            continue
        fig, ax, lines, smoothed = _epoch_panel(drawn, key)
        if key in ACC_KEYS:
            ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{what} ({key})" + ("\nsmoothed (lines) over the raw values (faint)" if smoothed else ""))
        _legend_below(fig, lines)
        parts.append(_plot(figure_png(fig), f"{key} vs epoch"))
    missing = [lab for r, lab, c, i, curves in entries if not curves]
    note = _note("No accuracies logged: " + ", ".join(html.escape(m) for m in missing) + ".") if missing else ""
    return (f'<p class="note">D\'s accuracies against epochs: the share of real images it scores as real and of fakes'
            f' it scores as fake (0.5, dashed: chance); for ACGAN runs also the share of real images and of fakes'
            f' whose class its auxiliary classifier names.</p><div class="plots pair">{"".join(parts)}</div>{note}')


# ------------------------------------------------------------------------------------------- helpers


def _legend_below(fig, lines) -> None:
    """The runs' legend under the plot, where it hides no curve however many runs there are (inside the axes, eight
    of them covered some). Handles are passed as they are: matplotlib leaves out of an automatic legend every
    label that starts with "_", so a run named `_baseline` had a curve and no entry."""
    if lines:
        import textwrap

        width = int(fig.get_figwidth() * 12) - 6  # ~12 characters an inch, less the marker
        labels = [textwrap.fill(line.get_label(), width, break_long_words=True) if len(line.get_label()) > width
                  else line.get_label() for line in lines]  # a long name wraps instead of running off the image
        longest = max(len(part) for label in labels for part in label.split("\n"))
        ncols = max(1, min(len(lines), 4, int(fig.get_figwidth() * 12 // (longest + 5))))
        rows = [labels[i:i + ncols] for i in range(0, len(labels), ncols)]
        text_lines = sum(max(label.count("\n") + 1 for label in row) for row in rows)
        if text_lines > 2:  # the legend gets room of its own: the axes keep their height
            fig.set_figheight(fig.get_figheight() + 0.2 * (text_lines - 2))
        # matplotlib fills a legend's columns first: read by rows, 5 runs in 4 columns came as a, c, d, e / b
        order = _by_rows(len(lines), ncols)
        fig.legend(handles=[lines[i] for i in order], labels=[labels[i] for i in order], loc="outside lower center",
                   ncols=ncols, frameon=False)


def _by_rows(n: int, ncols: int) -> list[int]:
    """The order to hand `n` legend entries to matplotlib in, which fills `ncols` columns one after the other (the
    first n % ncols one entry longer), so that they read left to right, then top to bottom, in their own order."""
    rows = -(-n // ncols)
    return [row * ncols + col for col in range(ncols) for row in range(rows) if row * ncols + col < n]


def flatten_config(config: dict, prefix: str = "") -> dict:
    """{"train": {"lr_g": 2e-4}} -> {"train.lr_g": 2e-4}; lists and other values are leaves."""
    flat = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(flatten_config(v, key + "."))
        else:
            flat[key] = v
    return flat


def config_defaults() -> dict:
    """This gankit's default config, flattened like a run's: the value a key counts as in a run made by an older
    gankit, whose config.yaml was written before the key existed (config.OLDER_DEFAULTS where that is not the
    default)."""
    from gankit.config import OLDER_DEFAULTS, Config, to_dict

    return {**flatten_config(to_dict(Config())), **OLDER_DEFAULTS}


class _Missing:
    """Marks a key a run's config does not have (distinct from a null value)."""


def _value(flat: dict, key: str, defaults: dict):
    """The run's value for `key`; when its config lacks the key, the default (or _Missing when there is none)."""
    return flat[key] if key in flat else defaults.get(key, _Missing)


def _shown(flat: dict, key: str, defaults: dict) -> str:
    """A config table cell: the run's value, or "—" for a key it lacks, with the default that it counts as."""
    if key in flat:
        return _cell(flat[key])
    return MISSING + (f" (default: {_cell(defaults[key])})" if key in defaults else "")


def _cell(v) -> str:
    if v is _Missing:
        return MISSING
    if isinstance(v, str):
        return v
    try:
        return json.dumps(v, ensure_ascii=False, default=str)
    except ValueError:  # NaN etc. are allowed by json.dumps, circular structures are not
        return str(v)


def _fid_points(run: Run) -> list[dict]:
    return [line for line in run.lines("eval") if finite_number(line.get("fid")) is not None]


def _kid_points(run: Run) -> list[dict]:
    return [line for line in run.lines("eval") if finite_number(line.get("kid_mean")) is not None]


def format_duration(seconds: float) -> str:
    """1234.5 -> "20m 34s"; 7384 -> "2h 03m 04s"."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def _or_dash(v) -> str:
    """A cell's value, a count with its thousands separated ('1,000,000', as gankit writes counts), or "—"."""
    return MISSING if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes, mime: str, alt: str, cls: str = "sample", style: str = "") -> str:
    css = f' style="{style}"' if style else ""
    return f'<img class="{cls}"{css} src="{_data_uri(data, mime)}" alt="{html.escape(alt)}">'


def _plot(png: bytes, alt: str) -> str:
    """A plot that a tap or click shows at its full size, over the page, and the next one puts back (a checkbox in its
    label, no script): on a phone the plots are shrunk to the screen's width, their text a few pixels high."""
    box = f'<input type="checkbox" aria-label="show {html.escape(alt)} full size">'
    return (f'<label class="zoom" title="full size">{box}<span class="full">{_img(png, "image/png", alt, cls="plot")}</span></label>')


def _note(text: str) -> str:
    """A short note; `text` must already be escaped."""
    return f'<p class="note">{text}</p>'


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{color}"></span>'


def _named(label: str, color: str) -> str:
    """A run's name after its swatch (in a table cell, the legend at the top, over its grid and GIF): a name wider than
    its column breaks after its separators ('pokemon_64px_' over 'dcgan'), not inside a word, and keeps its swatch on
    its first line (the swatch stood alone above the name, each row a line taller)."""
    # Chromium breaks after the swatch, an inline-block, in spite of a word joiner, where a table's column is narrower
    # than the swatch and the name's first part (15 runs' columns, or a phone's): in a table (STYLE), the swatch and
    # that part (or its first character, where it is long) do not break, so the column makes room for them
    cut = next((i + 1 for i, ch in enumerate(label[:LEAD_CHARS]) if ch in SEPARATORS),
               len(label) if len(label) <= LEAD_CHARS else 1)
    lead = html.escape(label[:cut]) + ("<wbr>" if label[cut - 1:cut] in tuple(SEPARATORS) else "")
    return f'<span class="lead">{_swatch(color)}\u2060{lead}</span>{_breakable(label[cut:])}'


#: Where a run name (or a config value) may break: after these.
SEPARATORS = "_-/."
#: The longest first part of a run name that stays on one line with its swatch in a table (`_named`).
LEAD_CHARS = 16


def _breakable(text: str) -> str:
    """`text` escaped, with a line break allowed after each of its SEPARATORS `_ - / .` (a cell's
    `overflow-wrap: break-word` breaks inside a word only where a part between them is wider than the cell)."""
    text = html.escape(text)
    for sep in SEPARATORS:
        text = text.replace(sep, sep + "<wbr>")
    return text


def _cell_fig(label: str, color: str, content: str) -> str:
    return f'<figure class="run"><figcaption>{_named(label, color)}</figcaption>{content}</figure>'


def _section(sid: str, content: str) -> str:
    title = dict(SECTIONS)[sid]
    hint = TAP_HINT if 'class="zoom"' in content else ""  # a section with plots (_plot)
    return f'<section id="{sid}"><h2>{title}</h2>{hint}{content}</section>'


#: Under the heading of a section with plots, on a narrow screen only (STYLE).
TAP_HINT = '<p class="note tap-hint">Tap a plot to see it full size; tap it again to put it back.</p>'


STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 1600px; color: #1d1d1f; background: #fff;
       line-height: 1.4; }
h1 { font-size: 1.6rem; margin: .5rem 0; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; padding-bottom: .2rem; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1rem; color: #0b57d0; text-decoration: none; }
nav a:hover { text-decoration: underline; }
.legend { list-style: none; padding: 0; margin: .4rem 0 .6rem; }
.legend li { margin: .15rem 0; overflow-wrap: anywhere; }
.path { color: #666; font-size: .85rem; margin-left: .4rem; word-break: break-all; }
.live { color: #8a4b00; font-size: .85rem; margin-left: .4rem; font-weight: 600; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .4em;
          vertical-align: baseline; border: 1px solid rgba(0,0,0,.25); }
.note { color: #555; font-size: .9rem; margin: .3rem 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }
thead th { background: #f4f4f6; position: sticky; top: 0; max-width: 16rem; overflow-wrap: anywhere; }
#best-metrics thead th { overflow-wrap: normal; }  /* column names, not run names: squeezed, 'step' broke into 'ste' 'p' */
tbody th { font-weight: normal; background: #fafafa; min-width: 6rem; max-width: 14rem; overflow-wrap: anywhere; }
/* room for a run name of ~24 characters (and its swatch) on one line: squeezed to its longest part, 'dcgan_long' broke
   into 'dcgan_' over 'long' at 1280 px; a phone keeps its narrow sticky column. The numbers, which do not wrap, give
   that room back: at td's 6rem, five runs' table went past a 1280 px screen */
#best-metrics tbody th { min-width: clamp(6rem, 25vw, calc(24ch + 1.4em)); }
#best-metrics td.num { min-width: 4rem; }
#config-diff tbody th { overflow-wrap: normal; }  /* keys break at their dots (<wbr>): 'data.resolu' over 'tion' */
#config-diff td { overflow-wrap: break-word; }  /* values break after _ - / . (<wbr>): 'poke64_32p' over 'x_dcgan' */
/* a table wider than a phone scrolls in its box: its row names (the key, the run) stay at the left, on their own
   backgrounds, so the values scrolled into view still say what they are */
tbody th, thead th:first-child { position: sticky; left: 0; z-index: 1; box-shadow: inset -1px 0 #ddd; }
td { min-width: 6rem; max-width: 28rem; overflow-wrap: anywhere; }
th .lead { white-space: nowrap; }  /* _named */
tr.aside th, tr.aside td, span.aside { color: #8a8a8e; }
#config-diff td.odd { background: #fff3c4; font-weight: 600; }  /* _unlike_most */
span.aside { font-size: .8rem; }
td.num span.aside { white-space: normal; }  /* '3 evaluations, 1m 31s of this time' under a total: wraps, or the
   column took twice its width and pushed the table past a 1280 px screen */
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { font-weight: 600; }
td.missing { color: #888; font-style: italic; }
/* columns of one width: a run alone on the last row is not wider, its images not larger, than the others */
.runs { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 300px), 1fr)); gap: 1rem;
        align-items: start; }
figure.run { max-width: 560px; margin: 0; }
figcaption { font-weight: 600; margin-bottom: .3rem; overflow-wrap: anywhere; }
img.sample { box-sizing: border-box; width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #ccc; display: block; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eee; }
.pair { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 420px), 1fr)); }
.pair img.plot { width: 100%; max-width: 760px; box-sizing: border-box; }
.pair + .pair { margin-top: 1.2rem; }  /* the FID pair and the KID pair below it, on a phone */
/* a plot tapped or clicked (_plot) shows at its full size over the page, scrolling where it is wider than the screen */
label.zoom { display: block; position: relative; cursor: zoom-in; }
label.zoom input { position: absolute; opacity: 0; width: 1px; height: 1px; margin: 0; }
label.zoom .full, label.zoom img.plot { display: block; }
label.zoom input:focus-visible + .full img.plot { outline: 2px solid #0b57d0; }
label.zoom input:checked + .full { position: fixed; inset: 0; z-index: 10; overflow: auto; padding: .5rem;
                                   box-sizing: border-box; background: rgba(255,255,255,.97); cursor: zoom-out; }
label.zoom input:checked + .full img.plot { width: auto; max-width: none; margin: 0 auto; }
.tap-hint { display: none; }
@media (max-width: 600px) { body { padding: .5rem .6rem 2rem; } h1 { font-size: 1.3rem; } .tap-hint { display: block; } }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""
