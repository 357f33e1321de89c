"""The command line as a user sees it: help, a tiny training run, one-line errors."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys

import pytest

from gankit.errors import Interrupted, RunError

GANKIT = [sys.executable, "-m", "gankit"]


def run(*args, **kw):
    return subprocess.run([*GANKIT, *map(str, args)], capture_output=True, text=True, **kw)


def wide_help(*command):
    """`gankit COMMAND --help` on a terminal wide enough that no help line wraps."""
    import os

    r = run(*command, "--help", env={**os.environ, "COLUMNS": "600"})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_train_help_lists_the_everyday_flags():
    out = wide_help("train")
    for flag in ("--data", "--resolution", "--epochs", "--batch-size", "--run", "--config", "--set"):
        assert flag in out
    # the defaults a plain `gankit train` (the built-in MNIST) really uses, not only a folder's; not eaten as rich markup
    from gankit.config import TrainConfig
    from gankit.train import BUILTIN_DEFAULTS

    mnist, folder = BUILTIN_DEFAULTS["train"]["epochs"], TrainConfig.epochs
    assert f"(default: the recipe's, else {mnist} for the built-in MNIST, {folder} for a folder;" in out
    assert f"(default: the recipe's, else {TrainConfig.batch_size})" in out


def test_sample_help_names_every_grid_format_and_the_default_file():
    from gankit.cli import GRID_EXTENSIONS

    grid_help = next(line for line in wide_help("sample").splitlines() if "--grid" in line)
    assert all(ext in grid_help for ext in GRID_EXTENSIONS), grid_help
    assert "samples.png" in grid_help


def test_help_names_every_image_format_and_archive_that_data_takes():
    from gankit.data.archive import ARCHIVE_SUFFIXES
    from gankit.data.folder import IMAGE_EXTENSIONS

    data_help = next(line for line in wide_help("train").splitlines() if "--data" in line)
    assert all(ext.lstrip(".") in data_help for ext in IMAGE_EXTENSIONS), data_help
    assert all(suffix in data_help for suffix in ARCHIVE_SUFFIXES), data_help
    assert wide_help("fid").count("image folder or archive") == 2  # dir_a and dir_b


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_checkpoint_help_says_what_the_option_does(command):
    """evaluate's said only "e.g. runs/x/checkpoints/best.pt or epoch_0010.pt."."""
    line = next(line for line in wide_help(command).splitlines() if "--checkpoint" in line)
    assert "instead of the run's generator.safetensors" in line, line


def test_compare_help_says_the_page_name_must_end_in_html():
    """compare refuses an -o that does not end in .html or .htm; its help did not say so."""
    from gankit.cli import PAGE_EXTENSIONS

    line = next(line for line in wide_help("compare").splitlines() if "--out" in line)
    assert f"ending in {' or '.join(PAGE_EXTENSIONS)}" in line, line


@pytest.mark.parametrize("command, flags", [("train", ["--deterministic", "--no-progress"]),
                                            ("sanity", ["--all-epochs", "--no-progress"]),
                                            ("sample", ["--same-noise-labels", "--interpolate"])])
def test_help_shows_flags_as_taking_no_value(command, flags):
    """Typer's help showed `--deterministic <bool>`, and `--deterministic true` is refused."""
    import re

    lines = wide_help(command).splitlines()
    for flag in flags:
        after = next(m[1] for m in (re.match(rf"[^\w-]*{flag}\s+(\S+)", line) for line in lines) if m)
        assert not after.startswith("<"), f"{flag} {after}"


@pytest.mark.parametrize("command", [(), ("train",), ("sample",), ("compare",)])
def test_help_shows_its_own_option_as_a_flag(command):
    """Typer showed `--help -h <bool>`, on every command."""
    line = next(line for line in wide_help(*command).splitlines() if "--help" in line)
    assert "<" not in line and "Show this message" in line, line


def test_a_flag_is_given_alone_not_with_a_value(monkeypatch, tmp_path, capsys):
    import gankit.train
    from gankit.cli import main

    given = []
    monkeypatch.setattr(gankit.train, "run_training", lambda layers, run, outcome=None: given.append(layers[-1]) or tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["train", "--deterministic", "--no-progress"])
    assert done.value.code == 0 and given == [{"train": {"deterministic": True}, "log": {"progress": False}}]
    with pytest.raises(SystemExit) as done:
        main(["train", "--deterministic", "true"])
    assert done.value.code == 2 and "unexpected extra argument(s) (true)" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--set", "model.ngf", "16"], ["-s", "model.ngf", "=", "16"]])
def test_a_set_whose_value_is_a_word_of_its_own_says_to_write_key_equals_value(capsys, args):
    from gankit.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", *args])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith("error: Got unexpected extra argument(s) (")
    assert err.endswith("): --set takes KEY=VALUE as one word: write --set model.ngf=VALUE\n")
    with pytest.raises(SystemExit):
        main(["train", "--set", "--max-steps", "1"])  # a --set without its value: no KEY to name
    assert capsys.readouterr().err == "error: Got unexpected extra argument(s) (1) (see: gankit train --help)\n"


def test_a_set_to_pythons_none_says_yamls_word_is_null(capsys):
    from gankit.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--set", "train.max_steps=None"])  # was: must be int or null, got 'None' (and nothing more)
    assert done.value.code != 0 and capsys.readouterr().err == (
        "error: train.max_steps must be int or null, got 'None': YAML writes none as null: --set train.max_steps=null, "
        "or max_steps: null in a file\n")


def test_a_tilde_in_a_path_option_is_the_home_folder(monkeypatch, tmp_path, capsys):
    """The shell leaves `~` as it is after `--run=` (and quoted): it made a folder named `~` in the current one."""
    import gankit.report
    import gankit.train
    from gankit.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    given = []
    monkeypatch.setattr(gankit.train, "run_training", lambda layers, run, outcome=None: given.append(run) or run)
    monkeypatch.setattr(gankit.report, "write_compare_report", lambda runs, page, progress: given.append((runs, page)) or page)
    with pytest.raises(SystemExit) as done:
        main(["train", "--run=~/runs/a"])
    assert done.value.code == 0 and given[-1] == tmp_path / "runs" / "a"
    with pytest.raises(SystemExit) as done:
        main(["compare", "~/runs/a", "-o", "~/report.html"])
    assert done.value.code == 0 and given[-1] == ([tmp_path / "runs" / "a"], tmp_path / "report.html")


def test_version_is_printed_from_the_installed_package_or_the_source_tree(monkeypatch, capsys):
    import re
    from importlib import metadata

    import gankit
    from gankit.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and re.fullmatch(r"gankit \d+\.\d+\S*\n", capsys.readouterr().out)

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"gankit {gankit.__version__}\n"


def test_a_line_on_stdout_that_its_code_page_cannot_write_is_escaped_not_an_internal_error(monkeypatch):
    """Windows writes a file or a pipe (`gankit train ... > log.txt`) in its ANSI code page, strictly: the 'done:'
    line naming a run 'runs/\u30dd\u30b1\u30e2\u30f3_64px_dcgan' failed the finished command as an internal error."""
    import io
    from importlib import metadata

    from gankit.cli import main

    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="cp1252", errors="strict", write_through=True))
    monkeypatch.setattr(metadata, "version", lambda name: "1.0+\u30dd\u30b1\u30e2\u30f3")  # any line: --version's
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and out.getvalue().decode("cp1252") == "gankit 1.0+\\u30dd\\u30b1\\u30e2\\u30f3\n"


@pytest.mark.slow
def test_train_via_cli_then_compare(image_folder, tmp_path):
    common = ["--data", image_folder, "--resolution", "16", "--epochs", "1", "--batch-size", "8", "--no-progress",
              "--precision", "fp32", "--device", "cpu", "--set", "model.ngf=8", "--set", "model.ndf=8"]
    a = run("train", *common, "--run", tmp_path / "a")
    assert a.returncode == 0, a.stderr
    assert (tmp_path / "a" / "plots" / "losses.png").is_file()
    assert (tmp_path / "a" / "evolution.gif").is_file()
    b = run("train", *common, "--run", tmp_path / "b", "--set", "train.lr_g=1e-3")
    assert b.returncode == 0, b.stderr
    r = run("compare", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "report.html")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "report.html").read_text().replace("<wbr>", "")  # (a key's break points after its dots)
    assert "train.lr_g" in html and "model.ngf" not in html.split('id="config-diff"')[1].split("</section>")[0]


@pytest.mark.parametrize("args, needle", [
    (["train", "--data", "/nonexistent/folder"], "does not exist"),
    (["train", "--set", "train.lr_g=-1"], "train.lr_g must be > 0"),
    (["train", "--set", "model.widht=3"], "unknown config key"),
    (["train", "--resolution", "5000"], "from 16 to 1024"),
    (["train", "--data", ""], "--data (data.path) is empty: give --data a value, or leave it out to train on the built-in MNIST"),
])
def test_errors_are_one_line(args, needle, tmp_path):
    r = run(*args, "--run", tmp_path / "r", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("error:") and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [["train", "--run", ""], ["train", "--config", ""], ["sample", ""],
                                  ["evaluate", "--run", ""], ["fid", "", "b"], ["compare", "a", ""]])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(args, tmp_path):
    """`--run "$RUN"` with the variable unset wrote a whole run into the current folder."""
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2 and "is empty: give a folder or file name" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_off_a_terminal_progress_is_plain_lines(image_folder, tmp_path):
    """Into a log file or a pipe (a cluster job's output), no bar redraws: a line at the first epoch's end, then at
    most one per 30 s, and the run's last, here cut by --max-steps half-way through epoch 3."""
    r = run("train", "--data", image_folder, "--resolution", "16", "--epochs", "3", "--batch-size", "8",
            "--max-steps", "10", "--precision", "fp32", "--device", "cpu", "--set", "model.ngf=8", "--set", "model.ndf=8",
            "--run", tmp_path / "r")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "batch/s" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("r epoch")]
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("r epoch 1/3: d_loss ") and "img/s; 0:" in lines[0] and "% done, about " in lines[0]
    assert lines[1].startswith("r epoch 3/3, stopped 50% into it: d_loss ") and lines[1].endswith("100% done")


def test_long_work_off_a_terminal_reports_in_lines(monkeypatch, capsys):
    """Decoding a folder or running Inception over a large set, into a log file: a plain line now and then (every
    LINE_EVERY seconds, here 0) with the count, the share done and the time left; never a bar's redraws. On a
    terminal the same call gives a tqdm bar, and a disabled one says nothing."""
    from tqdm import tqdm

    from gankit import console

    monkeypatch.setattr(console, "LINE_EVERY", 0.0)
    with console.progress(300, "Inception", "images") as bar:
        for _ in range(3):
            bar.update(100)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Inception: 100/300 images (33%), 0:00 in, about 0:00 left"), err
    assert lines[1].startswith("Inception: 200/300 images (67%)")
    with console.progress(300, "Inception", "images", enabled=False) as bar:
        bar.update(300)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(console.sys.stderr, "isatty", lambda: True)
    bar = console.progress(3, "decoding", "images")
    assert isinstance(bar, tqdm)
    bar.close()


def test_a_progress_bar_shows_a_folder_names_escape_sequences_not_sends_them(monkeypatch):
    """`decoding <folder>` on a terminal: a folder name holding an escape sequence went into the bar as it is."""
    from gankit import console

    monkeypatch.setattr(console.sys.stderr, "isatty", lambda: True)
    with console.progress(3, "decoding a\x1b[2J", "images") as bar:
        assert bar.desc == "decoding a\\x1b[2J"


def test_work_that_is_often_quick_shows_its_progress_only_after_a_delay(monkeypatch, capsys):
    """`delay`: nothing before it (a comparison of a few runs), then the lines as usual; a bar waits as long."""
    from gankit import console

    now = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(console, "LINE_EVERY", 30.0)
    with console.progress(8, "comparing runs", "runs", delay=2.0) as bar:
        for now[0] in (1.0, 3.0, 10.0, 33.5, 34.0):
            bar.update(1)
    assert capsys.readouterr().err.splitlines() == ["comparing runs: 2/8 runs (25%), 0:03 in, about 0:09 left",
                                                    "comparing runs: 4/8 runs (50%), 0:34 in, about 0:34 left"]
    monkeypatch.setattr(console.sys.stderr, "isatty", lambda: True)
    with console.progress(8, "comparing runs", "runs", delay=2.0) as bar:
        assert bar.delay == 2.0


def test_a_message_said_under_a_progress_bar_is_a_line_of_its_own(monkeypatch):
    """On a terminal (tmux, screen) a line said mid-training ("training on 1 CPU thread instead of 2 ...", an epoch's
    FID) was written at the bar's end, glued to it; now the bar is cleared first and drawn again below the line."""
    import io

    from tqdm import tqdm

    from gankit import console

    stderr = io.StringIO()
    monkeypatch.setattr(console.sys, "stderr", stderr)
    with tqdm(total=4, desc="r epoch 10", file=stderr, leave=False) as bar:
        bar.update(1)
        bar.refresh()
        console.info("training on 1 CPU thread instead of 2")
        before, after = stderr.getvalue().split("training on 1 CPU thread instead of 2\n")
    assert before.rsplit("\r", 1)[-1] == "" and "r epoch 10:  25%" in after


def test_a_terminal_without_a_width_gets_the_lines_not_a_bar_it_would_not_show(monkeypatch):
    """A pseudo-terminal nothing gave a size (0 columns: `script` or `docker run -t` from a job) showed no progress at
    all, decoding, Inception or training: tqdm draws its bar there as nothing, and the plain lines were off."""
    import fcntl
    import pty
    import struct
    import termios

    from tqdm import tqdm

    from gankit import console, train

    master, slave = pty.openpty()  # 0 x 0, as made
    with os.fdopen(master, "rb", buffering=0), os.fdopen(slave, "w") as terminal:
        monkeypatch.setattr(console.sys, "stderr", terminal)
        assert isinstance(console.progress(3, "decoding", "images"), console._Lines)
        assert train._progress(True, 4, "r", 9, lambda: (0.5, 0.0, 100, 0.0)).lines
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 80, 0, 0))  # a width alone (`stty cols 80`)
        assert isinstance(console.progress(3, "decoding", "images"), console._Lines)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        bar = console.progress(3, "decoding", "images")
        assert isinstance(bar, tqdm)
        bar.close()
        assert not train._progress(True, 4, "r", 9, lambda: (0.5, 0.0, 100, 0.0)).lines


def test_a_terminal_bar_says_the_epochs_of_the_run_and_its_time_left(monkeypatch):
    """On a terminal the bar said 'r epoch 12' with the epoch's own time: of a run of thousands of short epochs (a small
    dataset), neither how many epochs nor how long the run had left, which the plain lines of a log file say. A new
    epoch's bar shows the latest losses at once: a 1-batch epoch was gone before its own."""
    import fcntl
    import pty
    import struct
    import termios

    from gankit import console, train

    master, slave = pty.openpty()
    with os.fdopen(master, "rb", buffering=0), os.fdopen(slave, "w") as terminal:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 150, 0, 0))
        monkeypatch.setattr(console.sys, "stderr", terminal)
        progress = train._progress(True, 1, "r", 300, lambda: (0.25, 30.0, 100, 0.0))
        progress.reset_epoch(11, 0)
        assert progress.bar.desc == "r epoch 12/300"
        progress.postfix({"d_loss": 0.5, "g_loss": 1.25})
        assert progress.bar.postfix == "d_loss=0.5, g_loss=1.25, run=25% (1:30 left)"
        progress.reset_epoch(12, 0)
        assert progress.bar.desc == "r epoch 13/300" and progress.bar.postfix.endswith("run=25% (1:30 left)")
        progress.close()


def test_off_a_terminal_a_long_epoch_reports_inside_it_too(image_folder, tmp_path, monkeypatch, capsys):
    """An epoch can take longer than the line interval (a large folder at 256 px on a CPU): a line then comes inside
    it (after twice the interval without a line), with the batch count and the latest logged losses (interval 0
    here: at every batch but an epoch's last)."""
    from conftest import tiny_layers
    from gankit import console, train

    monkeypatch.setattr(console, "LINE_EVERY", 0.0)
    layers = tiny_layers(image_folder)
    layers[0]["log"].update(progress=True, every=1)
    train.run_training(layers, tmp_path / "r")
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("r epoch")]
    assert [line.split(":")[0] for line in lines] == [
        "r epoch 1/2, 1/4 batches", "r epoch 1/2, 2/4 batches", "r epoch 1/2, 3/4 batches", "r epoch 1/2",
        "r epoch 2/2, 1/4 batches", "r epoch 2/2, 2/4 batches", "r epoch 2/2, 3/4 batches", "r epoch 2/2"], err
    assert all(" d_loss " in line and " img/s; " in line for line in lines), err


def test_off_a_terminal_short_epochs_report_at_their_ends(monkeypatch, capsys):
    """Lines inside an epoch wait for twice the interval, so that epochs shorter than it report at their ends."""
    from gankit import train

    now = [0.0]
    monkeypatch.setattr(train.time, "monotonic", lambda: now[0])
    progress = train._progress(True, 4, "r", 9, lambda: (0.5, now[0], 100, 0.0))
    progress.lines = True  # as into a log file
    said = []

    def at(t, call, *args):
        now[0] = t
        call(*args)
        said.append(capsys.readouterr().err.split(":")[0])

    at(35, progress.advance, 1)  # 35 s without a line: not yet, inside an epoch
    at(40, progress.epoch_line, 1, {})  # the first epoch's end: always
    at(65, progress.epoch_line, 2, {})  # 25 s later: not due
    at(71, progress.epoch_line, 3, {})  # 31 s: due
    at(100, progress.advance, 1)  # 29 s
    at(132, progress.advance, 1)  # 61 s: due inside an epoch
    assert said == ["", "r epoch 1/9", "", "r epoch 3/9", "", "r epoch 1/9, 3/4 batches"]


def test_a_terminal_that_hangs_up_stops_the_run_and_saves_it(image_folder, tmp_path):
    """`gankit train` in a terminal (its progress bar drawn there) that goes away, as when an ssh connection drops:
    the terminal is closed, then SIGHUP comes. The run stops after that iteration and saves it (exit 129, the shell's
    128 + SIGHUP), its last output sent to /dev/null, rather than dying on the signal or on writing to the dead
    terminal; resuming continues from there."""
    import json
    import os
    import pty
    import select
    import signal
    import time

    from gankit.checkpoint import load_checkpoint

    leader, terminal = pty.openpty()
    proc = subprocess.Popen([*GANKIT, "train", "--data", str(image_folder), "--resolution", "16", "--epochs", "5000",
                             "--batch-size", "8", "--precision", "fp32", "--device", "cpu", "--set", "model.ngf=8",
                             "--set", "model.ndf=8", "--set", "log.every=1", "--set", "log.plots=false",
                             "--run", str(tmp_path / "r")],
                            stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
                            # a terminal's process takes SIGHUP, also when the tests run under nohup (which ignores it,
                            # and a child inherits that: the run would go on, as `nohup gankit train` must)
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    os.close(terminal)
    metrics, deadline = tmp_path / "r" / "metrics.jsonl", time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None and not (
                metrics.is_file() and metrics.read_text().count('"kind": "epoch"') >= 2):
            if select.select([leader], [], [], 0.05)[0]:
                os.read(leader, 65536)  # what the terminal shows (a full pty would block the run)
        assert proc.poll() is None, "the run ended before the hang-up"
    finally:
        os.close(leader)  # the terminal is gone: writing to it now fails (EIO), before the SIGHUP comes
    time.sleep(0.5)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=120) == 129
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    logged = max(r["step"] for r in rows if r["kind"] == "step")
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["iteration"] == logged  # nothing lost


def test_under_nohup_a_hang_up_is_left_ignored():
    """`nohup gankit train ...` ignores SIGHUP so that the run goes on without its terminal: the trainer's signal
    handlers leave it ignored (and take SIGTERM and SIGINT as always)."""
    import signal

    from gankit.train import _InterruptFlag

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        flag = _InterruptFlag()
        try:
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == flag._handler
        finally:
            flag.restore()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        flag = _InterruptFlag()
        assert signal.getsignal(signal.SIGHUP) == flag._handler
        flag.restore()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, old)


@pytest.mark.parametrize("raised, said", [(KeyboardInterrupt(), "interrupted: stopped before it finished\n"),
                                          (Interrupted(), "")])
def test_ctrl_c_ends_in_one_line_unless_the_command_said_what_it_kept(monkeypatch, capsys, tmp_path, raised, said):
    """Ctrl-C in `gankit fid` (minutes of Inception on a CPU) used to end silently with status 130; the trainer's
    own line (what it saved, how to resume) is not followed by a second one."""
    import gankit.metrics
    from gankit.cli import main

    def ctrl_c(*args, **kwargs):
        raise raised

    monkeypatch.setattr(gankit.metrics, "fid_folders", ctrl_c)
    with pytest.raises(SystemExit) as done:
        main(["fid", str(tmp_path), str(tmp_path), "--device", "cpu"])
    assert done.value.code == 130 and capsys.readouterr().err == said


def test_sigterm_before_training_starts_ends_in_one_line_and_leaves_no_empty_run_folder(monkeypatch, capsys, tmp_path,
                                                                                        image_folder):
    """A scheduler's SIGTERM while the images were decoded killed the command without a word (exit 143 from the
    shell) and left the run folder it had made, empty; the handler is the caller's again afterwards."""
    import os
    import signal
    import time

    import gankit.data
    from gankit.cli import main

    def preempted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # (the handler raises long before)
        pytest.fail("SIGTERM did not stop the command")

    monkeypatch.setattr(gankit.data, "load_dataset", preempted)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as done:
        main(["train", "--data", str(image_folder), "--run", str(tmp_path / "run"), "--no-progress"])
    assert done.value.code == 143 and capsys.readouterr().err.splitlines()[-1] == "SIGTERM: stopped before it finished"
    assert not (tmp_path / "run").exists() and signal.getsignal(signal.SIGTERM) is before


def test_a_kid_spread_of_zero_by_construction_is_not_shown_as_certainty():
    """`evaluate -n 64` on 64 images printed "KID 0.58913 ± 0.00000": every subset was all the images."""
    from gankit.cli import _kid

    assert _kid({"kid_mean": 0.5891, "kid_std": 0.0, "n_fake": 64, "n_real": 64}) == \
        "KID 0.58910 (every subset holds all the images: no spread to show)"
    assert _kid({"kid_mean": 0.5891, "kid_std": 0.012, "n_fake": 64, "n_real": 1016}) == "KID 0.58910 ± 0.01200"
    # `gankit fid` of 40 against 40 printed "± 0.00000": the sums' order made the spread 1e-9, not 0
    assert _kid({"kid_mean": 0.7081, "kid_std": 3e-9, "n_fake": 40, "n_real": 40}) == \
        "KID 0.70810 (every subset holds all the images: no spread to show)"


def test_commands_in_hints_quote_a_run_folder_with_a_space(tmp_path, monkeypatch, capsys):
    """`done: ... sample more with: gankit sample runs/d x_16px_dcgan` pasted as two arguments."""
    from pathlib import Path

    import gankit.train
    from gankit import distributed
    from gankit.cli import main

    assert distributed.resume_command(Path("runs/my pets")) == "gankit train --run 'runs/my pets'"
    monkeypatch.setattr(gankit.train, "run_training", lambda layers, run, outcome=None: tmp_path / "my pets")
    with pytest.raises(SystemExit):
        main(["train"])
    assert f"gankit sample '{tmp_path / 'my pets'}'" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_sample_and_evaluate_take_the_run_as_train_does(command, monkeypatch, capsys, tmp_path):
    """`gankit sample --run DIR` and `gankit evaluate --run DIR` were refused ("No such option: --run"), while
    `gankit train` takes --run."""
    import gankit.evaluate
    import gankit.sample
    from gankit.cli import main
    from gankit.errors import GankitError

    seen = []

    def stop(run, *args, **kwargs):
        seen.append(run)
        raise GankitError("stopped here")

    monkeypatch.setattr(gankit.sample, "load_run_generator", stop)
    monkeypatch.setattr(gankit.evaluate, "evaluate_run", stop)
    run_dir = tmp_path / "r"
    for args in (["--run", run_dir], ["--run-dir", run_dir], [run_dir], [run_dir, "--run", f"{run_dir}/"]):
        with pytest.raises(SystemExit) as done:
            main([command, *map(str, args)])
        assert done.value.code == 2 and "stopped here" in capsys.readouterr().err
    assert seen == [run_dir] * 4
    for args, said in (([run_dir, "--run", tmp_path / "other"], f"two runs given, '{run_dir}' and --run '{tmp_path / 'other'}'"),
                       ([], f"give the run folder: gankit {command} DIR, or gankit {command} --run DIR")):
        with pytest.raises(SystemExit) as done:
            main([command, *map(str, args)])
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.startswith(f"error: {said}") and err.count("\n") == 1, err
    assert len(seen) == 4
    assert "--run-dir" in wide_help(command)


def test_counts_lists_and_clocks_read_as_written():
    """`console.count` said "extracting 20331 files" where progress lines count 20,331."""
    from gankit import console

    assert [console.count(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert console.count(20331, "file") == "20,331 files" and console.count(1000, "image") == "1,000 images"
    names = [f"f{i}" for i in range(6)]
    assert console.short_list(names[:5]) == "f0, f1, f2, f3, f4"
    assert console.short_list(names) == "f0, f1, f2, f3, f4 and 1 more"
    assert [console.clock(s) for s in (0, 59.6, 61, 3599, 3600, 3661, 36005)] == [
        "0:00", "1:00", "1:01", "59:59", "1:00:00", "1:01:01", "10:00:05"]


def test_a_progress_line_says_the_time_left_from_the_pace_so_far(monkeypatch, capsys):
    """100 of 400 images in 1 minute: 3 minutes left; the next update 10 s later says nothing (LINE_EVERY 30)."""
    from gankit import console

    now = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(console, "LINE_EVERY", 30.0)
    with console.progress(400, "Inception", "images") as bar:
        for now[0] in (60.0, 70.0):
            bar.update(100)
    assert capsys.readouterr().err == "Inception: 100/400 images (25%), 1:00 in, about 3:00 left\n"


def test_only_the_first_process_of_all_speaks_not_each_machines_first(monkeypatch, capsys):
    from gankit import console

    monkeypatch.setenv("RANK", "2")  # the second machine's first process
    monkeypatch.setenv("LOCAL_RANK", "0")
    console.warn("said by every process")
    assert capsys.readouterr().err == "" and not console.speaks() and console.speaks_on_its_machine()
    monkeypatch.setenv("RANK", "0")
    console.warn("once")
    assert capsys.readouterr().err == "warning: once\n"


def _fds_1_and_2_after(tmp_path, pair: str, then: str) -> str:
    """Where fds 1 and 2 of a child process point after `then` (code), both having been put on the second end of
    `pair` (code: a pty's leader and terminal, a pipe's reader and writer) and both ends closed: a dead terminal or a
    pipe that nothing reads."""
    script = (f"import os, pty, typer\nfrom gankit import console\nother, end = {pair}\n"
              "os.dup2(end, 1); os.dup2(end, 2); os.close(end); os.close(other)\n" + then +
              f"open({str(tmp_path / 'fds')!r}, 'w').write(os.readlink('/proc/self/fd/1') + ' ' + "
              "os.readlink('/proc/self/fd/2'))\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == 0
    return (tmp_path / "fds").read_text()


def test_a_terminal_gone_sends_stdout_and_stderr_to_dev_null(tmp_path):
    """After a hang-up both fds that went to the dead terminal point at /dev/null. They stayed on it: a hung-up
    terminal makes `os.isatty` say False (not raise), so nothing was redirected, and only writes through Python's
    own streams were kept from failing (torch's C-level warnings, child processes and os.write were not)."""
    assert _fds_1_and_2_after(tmp_path, "pty.openpty()", "console.terminal_gone()\n") == "/dev/null /dev/null"


def test_a_pipe_that_nothing_reads_any_more_does_not_stop_the_command(tmp_path):
    """`gankit train ... 2>&1 | head -3`: the next line after head's third (an epoch's) failed with EPIPE, which click
    made a silent exit 1 in the middle of the training; now both fds point at /dev/null and the command goes on (its
    lines through Python's streams, typer.echo's and the C level's too), while a file's other failures still raise."""
    then = "console.guard_terminal()\nconsole.info('an epoch line')\ntyper.echo('done')\nprint('x', flush=True)\n"
    assert _fds_1_and_2_after(tmp_path, "os.pipe()", then) == "/dev/null /dev/null"


def test_a_failed_terminal_write_is_dropped_where_there_is_no_termios(monkeypatch):
    """Windows has no termios: a console write that failed (an OSError) raised ImportError from `terminal_gone`, an
    internal error in the middle of a training step, instead of being dropped as on POSIX."""
    from gankit import console

    class Broken:
        def write(self, text):
            raise OSError(22, "Invalid argument")

        def flush(self):
            raise OSError(22, "Invalid argument")

    monkeypatch.setitem(sys.modules, "termios", None)  # import termios: ImportError, as on Windows
    terminal = console._Output(Broken(), terminal=True)
    assert terminal.write("line\n") == 5
    terminal.flush()


def test_the_done_line_says_how_long_the_command_took(image_folder, tmp_path, capsys):
    """A resume's line also says the run's training time in all, which its progress lines count ("8:34 in"): "done
    in 0:45" alone read as the whole run's time."""
    from gankit.cli import main

    def done_line(*more):
        with pytest.raises(SystemExit) as done:
            main(["train", "--data", str(image_folder), "--resolution", "16", "--batch-size", "8", "--precision", "fp32",
                  "--device", "cpu", "--no-progress", "--set", "model.ngf=8", "--set", "model.ndf=8",
                  "--run", str(tmp_path / "r"), *more])
        assert done.value.code == 0
        return capsys.readouterr().out.strip().splitlines()[-1]

    run = re.escape(str(tmp_path / "r"))
    line = done_line("--max-steps", "2")
    assert re.fullmatch(rf"done: {run} in 0:\d\d  \(samples in .*", line), line
    line = done_line("--max-steps", "4")
    assert re.fullmatch(rf"done: {run} in 0:\d\d \(0:\d\d of training in all\)  \(samples in .*", line), line


def test_every_config_key_a_flag_sets_is_named_by_that_flag_in_errors(monkeypatch, tmp_path):
    """`gankit train --epochs -1` said "train.epochs must be > 0": config errors name the flag typed (cli._flag_of),
    which must be an option of the command for every key its flags set."""
    import typer

    import gankit.train
    from gankit.cli import _flag_of, app, main
    from gankit.config import flatten

    given = []
    monkeypatch.setattr(gankit.train, "run_training", lambda layers, run, outcome=None: given.append(layers[-1]) or tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["train", "--data", "d", "-r", "32", "-e", "2", "-b", "8", "--labels", "folders", "--label-column", "c",
              "--device", "cpu", "--precision", "fp32", "--threads", "1", "--max-steps", "3", "--minutes", "1",
              "--seed", "1", "--deterministic", "--no-progress"])
    assert done.value.code == 0
    options = {o for p in typer.main.get_command(app).commands["train"].params for o in p.opts}
    keys = flatten(given[0])
    assert len(keys) == 14 and {_flag_of(k) for k in keys} <= options


@pytest.mark.parametrize("too_long", ["name", "path"])
def test_a_run_path_too_long_for_the_file_system_says_so(image_folder, tmp_path, capsys, too_long):
    """A --run with a name over 255 bytes, or a path over PATH_MAX, said "File name too long: check the path and its
    permissions": a shorter name is the fix. Failed writes say it in the same words. The path is shown with its middle
    cut out (MAX_PATH_SHOWN characters): a path over PATH_MAX made an error line of 5000 characters."""
    from gankit.checkpoint import NAME_TOO_LONG, atomic_write_text, write_hint
    from gankit.cli import main
    from gankit.console import MAX_PATH_SHOWN

    run = tmp_path / ("r" * 300 if too_long == "name" else "/".join(["r" * 200] * 25))
    with pytest.raises(SystemExit) as done:
        main(["train", "--data", str(image_folder), "--run", str(run), "-r", "16", "--max-steps", "1",
              "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith("error: ") and err.endswith(f"File name too long: {NAME_TOO_LONG}\n")
    assert write_hint(OSError(errno.ENAMETOOLONG, "File name too long")) == NAME_TOO_LONG
    shown = err[len("error: '"):err.index("': ")]
    assert len(shown) == MAX_PATH_SHOWN and shown.startswith(str(tmp_path)) and "r\u2026r" in shown
    with pytest.raises(RunError) as failed:
        atomic_write_text(run / "config.yaml", "name: r\n")
    shown = str(failed.value).split("'")[1]
    assert str(failed.value) == f"could not write '{shown}' (File name too long): {NAME_TOO_LONG}"
    assert len(shown) == MAX_PATH_SHOWN and shown.startswith(str(tmp_path)) and shown.endswith("r/config.yaml")


def test_a_file_in_the_way_is_said_in_the_wording_of_every_write(monkeypatch, tmp_path, capsys):
    """A file standing where a folder must go: the command line said "... where gankit needs a folder: ..., or choose
    another path", a failed write (checkpoint, metrics, cache) "... where a folder is needed: ..., or choose another
    folder". One helper says both."""
    import gankit.train
    from gankit.checkpoint import write_hint
    from gankit.cli import main

    blocker = tmp_path / "f.txt"
    blocker.write_text("x")
    with pytest.raises(OSError) as raised:
        (blocker / "run").mkdir(parents=True)

    def in_the_way(layers, run, outcome=None):
        raise raised.value

    monkeypatch.setattr(gankit.train, "run_training", in_the_way)
    with pytest.raises(SystemExit) as done:
        main(["train", "--run-dir", str(blocker / "run")])
    said = f"'{blocker}' is a file where a folder is needed: move or delete it, or choose another path"
    assert done.value.code == 2 and capsys.readouterr().err == f"error: {said}\n"
    assert write_hint(raised.value) == said


def _said(command: list[str], capsys) -> tuple[str, str]:
    """(stdout, stderr) of `gankit COMMAND`, which must succeed."""
    from gankit.cli import main

    with pytest.raises(SystemExit) as done:
        main(command)
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    return out, err


def test_evaluate_json_is_one_strict_json_object_on_stdout_with_the_numbers_of_its_human_line(tmp_path, monkeypatch,
                                                                                               capsys):
    """`gankit evaluate RUN` only printed its result for people: `--json` prints it as ONE JSON object on stdout
    (`| jq .fid`), the notes on stderr, a value that is not finite as null (as metrics.jsonl writes it), with the file
    evaluated and where its training stood."""
    import json

    import gankit.evaluate
    from conftest import make_image_folder, tiny_layers

    from gankit.cli import _version
    from gankit.train import run_training

    make_image_folder(tmp_path / "data", n=16)
    run = run_training(tiny_layers(tmp_path / "data", epochs=1), tmp_path / "run")
    scores = {"fid": 12.3456, "kid_mean": 0.012345, "kid_std": 0.00123, "n_fake": 10, "n_real": 16}
    monkeypatch.setattr(gankit.evaluate, "Evaluator", lambda *a, **k: lambda generate, n: dict(scores))
    command = ["evaluate", str(run), "-n", "10", "--device", "cpu"]
    human, _ = _said(command, capsys)
    out, err = _said(command + ["--json"], capsys)
    assert human == "FID 12.346  KID 0.01235 ± 0.00123  (10 generated vs 16 real)\n"
    assert out.count("\n") == 1
    r = json.loads(out)
    assert r == {"run": str(run), "checkpoint": str(run / "generator.safetensors"), "iteration": 2, "epoch": 1,
                 "data": str(tmp_path / "data"), **{k: scores[k] for k in ("fid", "kid_mean", "kid_std")},
                 "n_fake": 10, "n_real": 16, "seed": 0, "gankit_version": _version()}
    out, _ = _said(command + ["--json", "--checkpoint", str(run / "checkpoints" / "last.pt")], capsys)
    assert (json.loads(out)["checkpoint"], json.loads(out)["iteration"], json.loads(out)["epoch"]) == \
        (str(run / "checkpoints" / "last.pt"), 2, 1)
    scores.update(fid=float("nan"), kid_std=float("inf"))  # strict JSON: no NaN / Infinity
    out, _ = _said(command + ["--json"], capsys)
    assert "NaN" not in out and "Infinity" not in out
    assert (json.loads(out)["fid"], json.loads(out)["kid_std"]) == (None, None)


def test_evaluate_json_of_a_run_on_the_builtin_dataset_gives_its_data_as_null(tmp_path, monkeypatch, capsys):
    """A run on the built-in MNIST (no --data) printed `"data": "None"`, a folder's name to a script: it is null, as
    `data.path` in the run's config.yaml."""
    import json

    import gankit.evaluate
    from conftest import tiny_layers

    from gankit.train import run_training

    layers = tiny_layers(None, max_steps=1)
    layers[0]["data"]["path"] = None
    run = run_training(layers, tmp_path / "run")
    monkeypatch.setattr(gankit.evaluate, "Evaluator",
                        lambda *a, **k: lambda generate, n: {"fid": 1.0, "kid_mean": 0.1, "kid_std": 0.01,
                                                             "n_fake": 10, "n_real": 16})
    out, _ = _said(["evaluate", str(run), "-n", "10", "--device", "cpu", "--json"], capsys)
    assert json.loads(out)["data"] is None


def test_fid_json_is_one_strict_json_object_on_stdout_with_the_numbers_of_its_human_line(tmp_path, monkeypatch,
                                                                                          capsys):
    """`gankit fid A B --json`: the result as ONE JSON object on stdout, both sides' paths and counts; a KID spread
    of 0 by construction (as many images as a subset) is null, as the human line says there is none."""
    import json

    import gankit.console
    import gankit.metrics
    from gankit.cli import _version

    def scores(a, b, **kwargs):
        gankit.console.info("a note for people")
        return {"fid": -0.0001, "kid_mean": 0.5, "kid_std": 0.25, "n_real": 40, "n_fake": 60}

    monkeypatch.setattr(gankit.metrics, "fid_folders", scores)
    command = ["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--device", "cpu"]
    human, _ = _said(command, capsys)
    out, err = _said(command + ["--json"], capsys)
    assert human == "FID 0.000  KID 0.50000 ± 0.25000  (40 vs 60 images)\n" and err == "a note for people\n"
    r = json.loads(out)
    assert out.count("\n") == 1 and r == {"a": str(tmp_path / "a"), "b": str(tmp_path / "b"), "fid": 0.0,
                                          "kid_mean": 0.5, "kid_std": 0.25, "n_a": 40, "n_b": 60,
                                          "gankit_version": _version()}
    monkeypatch.setattr(gankit.metrics, "fid_folders", lambda a, b, **k: {"fid": 1.0, "kid_mean": 0.1, "kid_std": 1e-9,
                                                                          "n_real": 40, "n_fake": 40})
    out, _ = _said(command + ["--json"], capsys)
    assert json.loads(out)["kid_std"] is None


def _readme() -> str:
    from pathlib import Path

    return (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_names_every_flag_of_every_command():
    """Every long option of every command is in README at least once, as itself (compare's `--out` was only `-o`
    there, and `--out` only as the start of `--out-dir`); `--help` lists them, README says what they do."""
    import typer

    from gankit.cli import app

    readme = _readme()
    missing = sorted((name, o) for name, c in typer.main.get_command(app).commands.items() for p in c.params
                     for o in p.opts + p.secondary_opts if o.startswith("--") and o != "--help"
                     and not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", readme))
    assert missing == []


def test_readme_gives_each_command_only_its_own_flags():
    """A `gankit CMD ...` line or span in README uses only flags CMD has: one renamed or given to the wrong command
    (a --checkpoint on fid) would be refused when a reader copies it."""
    import typer

    from gankit.cli import app

    commands = typer.main.get_command(app).commands
    flags = {name: {o for p in c.params for o in p.opts + p.secondary_opts} | {"--help"} for name, c in commands.items()}
    uses = re.findall(r"gankit (%s)\b([^`\n#]*)" % "|".join(commands), _readme())
    assert len(uses) > 50
    wrong = sorted({(name, f) for name, line in uses for f in re.findall(r"(?<![\w-])--[a-z][\w-]*", line)
                    if f not in flags[name]})
    assert wrong == []


def test_a_recipes_data_path_written_from_its_own_folder_says_how_to_name_it(monkeypatch, tmp_path, capsys):
    """A --config file's relative data.path is read from the current folder, as --data is: one written from the
    file's folder, not there from here, is said to be, with the path to write; --data replacing it trains."""
    import gankit.train
    from gankit.cli import main

    (tmp_path / "imgs").mkdir()
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "r.yaml").write_text("data:\n  path: ../imgs\n")
    monkeypatch.chdir(tmp_path)
    trained = []
    monkeypatch.setattr(gankit.train, "run_training", lambda layers, run, outcome=None: trained.append(layers) or tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["train", "--config", "cfg/r.yaml"])
    assert done.value.code == 2 and not trained
    assert capsys.readouterr().err == ("error: data.path '../imgs' in config file 'cfg/r.yaml' is read from the current "
                                       "folder, where it is not: from the file's folder it names 'imgs', so write that "
                                       "(or an absolute path) in the file, or pass --data imgs\n")
    for args in (["--config", "cfg/r.yaml", "--data", "imgs"], ["--config", "r.yaml"]):
        monkeypatch.chdir(tmp_path / ("cfg" if args[1] == "r.yaml" else ""))
        with pytest.raises(SystemExit) as done:
            main(["train", *args])
        assert done.value.code == 0
    assert len(trained) == 2


def test_a_bare_gankit_shows_the_help_on_stderr_and_exits_2(capsys):
    """No command is a usage error, as click says it: the help goes to stderr (typer's rich help printed itself on
    stdout, and stderr got only a blank line), exit 2."""
    from gankit.cli import main

    with pytest.raises(SystemExit) as done:
        main([])
    out, err = capsys.readouterr()
    assert done.value.code == 2 and out == ""
    assert "Usage: gankit" in err and "train" in err
