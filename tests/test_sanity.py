"""Seed 002's single-image unit test: DCGAN, WGAN-GP and ACGAN must each reproduce their target(s).

Threshold: mean absolute pixel error < 0.1 (0..1 scale, about 25 grey levels) from ~0.3 for the untrained
generator; the budget is a fixed number of iterations of a small model at 16 px with a high learning
rate (the task is trivial, so the fast settings are fine). A loop, loss or model that cannot fit one
picture fails here.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from conftest import ctrl_c_at
from gankit.cli import app
from gankit.config import build_config
from gankit.sanity import SanityResult, builtin_images, run_sanity

FAST = {"ngf": 16, "ndf": 16, "nz": 16}
CASES = {
    "dcgan": ({}, {"loss": "bce", "lr_g": 2e-3, "lr_d": 2e-3}),
    "wgan_gp": ({"d_norm": "none"}, {"loss": "wgan_gp", "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.5, "beta2": 0.9}),
    "acgan": ({"arch": "acgan"}, {"loss": "bce", "lr_g": 2e-3, "lr_d": 2e-3}),
}


def _layers(model, train, iterations):
    return [{
        "data": {"resolution": 16},
        "model": {**FAST, **model},
        "train": {"batch_size": 16, "precision": "fp32", "device": "cpu", "epochs": 100, "max_steps": iterations,
                  **train},
        "log": {"progress": False, "plots": False, "tensorboard": False, "every": 50, "checkpoint_every": 100},
    }]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_gan_reproduces_a_single_image(name, tmp_path):
    model, train = CASES[name]
    r = run_sanity(_layers(model, train, 450), tmp_path / name, copies=64)
    assert len(r.mae_after) == (2 if name == "acgan" else 1)  # ACGAN: two images, two labels
    assert min(r.mae_before) > 0.2  # the untrained generator is far from the target(s)
    assert r.passed, f"{name}: MAE {r.mae_before} -> {r.mae_after}"
    assert (r.run_dir / "samples").is_dir()
    _check_picture(r, builtin_images(16)[:len(r.mae_after)])


def _check_picture(r, targets):
    """sanity.png: a row per target, the target first (as it is), then 7 of G's images of it, which the test passed
    on: each within the threshold's reach of the target."""
    import numpy as np
    from PIL import Image

    pic = np.asarray(Image.open(r.picture).convert("RGB")).astype(float) / 255
    size, pad = targets[0].shape[-1], 2
    pic = pic[_caption_band(pic, len(targets), size):]  # under the captions "target" and "generated"
    assert pic.shape[:2] == (len(targets) * (size + pad) + pad, 8 * (size + pad) + pad)
    for row, target in enumerate(targets):
        cells = [pic[pad + row * (size + pad):][:size, pad + col * (size + pad):][:, :size] for col in range(8)]
        want = target.permute(1, 2, 0).numpy() / 255
        assert np.abs(cells[0] - want).max() < 1 / 255 + 1e-6  # the target itself
        assert max(np.abs(cell - want).mean() for cell in cells[1:]) < 2 * r.threshold


def _caption_band(pic, rows, size, pad=2):
    """Height of sanity.png's band of captions: the picture's rows beyond the grid's."""
    return pic.shape[0] - (rows * (size + pad) + pad)


def test_the_picture_says_which_image_is_the_target_and_which_are_generated(tmp_path):
    """The target is the first of each row: a caption "target" above that column, "generated" above the others (only
    README and the result line said so)."""
    import numpy as np
    from PIL import Image

    from gankit.sanity import SHOWN, _write_picture

    size, pad = 32, 2
    targets = [t.float().div(255) for t in builtin_images(size)]
    attempts = [(torch.full((16, 3, size, size), 0.5), target) for target in targets]
    pic = np.asarray(Image.open(_write_picture(attempts, tmp_path / "sanity.png")).convert("RGB"))
    band = _caption_band(pic, len(targets), size)
    assert band >= 10  # a band of text above the grid
    assert pic.shape[1] == (SHOWN + 1) * (size + pad) + pad
    written = (pic[:band] > 200).all(axis=2)  # the captions' white text on black
    first = size + pad  # the target's column, then G's
    assert written[:, :first].any() and written[:, first + size:].any()
    assert (np.abs(pic[band + pad:band + pad + size, pad:pad + size] - targets[0].permute(1, 2, 0).numpy() * 255)
            <= 1).all()  # the target under its caption, as it is


def test_sanity_stops_at_the_first_epoch_end_that_passes_unless_asked_for_all_epochs(tmp_path):
    layers = _layers({}, {"epochs": 3, "max_steps": None}, 0)  # 64 copies, batch 16: 4 iterations per epoch
    r = run_sanity(layers, tmp_path / "early", copies=64, threshold=1.0)  # any generator is within 1.0
    assert r.passed and (r.iterations, r.epochs) == (4, 1)
    r = run_sanity(layers, tmp_path / "all", copies=64, threshold=1.0, all_epochs=True)
    assert r.passed and (r.iterations, r.epochs) == (12, 3)


def test_a_deterministic_sanity_test_leaves_torchs_switches_as_it_found_them(tmp_path):
    """As `run_training` does (`device.deterministic_kept`): from Python, the test's --set train.deterministic=true
    left the process on deterministic algorithms after it."""
    assert not torch.are_deterministic_algorithms_enabled()
    layers = _layers({}, {"epochs": 1, "max_steps": None, "deterministic": True}, 0)
    try:
        run_sanity(layers, tmp_path / "det", copies=16, threshold=1.0)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        from gankit.device import set_deterministic

        set_deterministic(False)


def test_fewer_copies_than_a_batch_train_in_batches_of_the_copies(tmp_path, capsys):
    """`gankit sanity` has no --batch-size: with --copies below the batch, the batch is the copies (one per epoch)."""
    layers = _layers({}, {"epochs": 2, "max_steps": None}, 0)  # batch 16
    r = run_sanity(layers, tmp_path / "few", copies=6, threshold=1.0, all_epochs=True)
    err = capsys.readouterr().err
    assert "batch size 6: there are 6 copies" in err
    assert (r.iterations, r.epochs) == (2, 2)
    # it says what it trains, as `gankit train` does (its --help said "the start and end lines stay": there was none)
    start = next(line for line in err.splitlines() if line.startswith("sanity test "))
    assert start.startswith(f"sanity test {tmp_path / 'few'} on cpu: 6 copies of the built-in target at ")
    assert ", 2 epochs (--all-epochs; G's mean absolute error is " in start
    assert any(line.startswith("recipe: dcgan") for line in err.splitlines())
    # its flips are off whatever was asked (one exact picture): its recipe lines do not say "flip false" as a choice
    assert not any(line.startswith("recipe") and "flip" in line for line in err.splitlines()), err
    # nor the batch it lowered to the copies, which the line above said
    assert not any(line.startswith("recipe") and "batch_size" in line for line in err.splitlines()), err


def test_sanity_command_reports_and_fails_when_not_reproduced(tmp_path):
    from PIL import Image

    img = tmp_path / "target.png"
    Image.fromarray(builtin_images(16)[1].permute(1, 2, 0).numpy()).save(img)
    res = CliRunner().invoke(app, ["sanity", "--image", str(img), "--resolution", "16", "--epochs", "1",
                                   "--copies", "16", "--run", str(tmp_path / "run"), "--no-progress",
                                   "--set", "model.ngf=8", "--set", "model.ndf=8", "--set", "train.batch_size=8",
                                   "--set", "train.precision=fp32"])
    assert res.exit_code == 1, res.output  # 2 iterations cannot reproduce anything
    assert "FAIL: mean absolute error" in res.output and "threshold 0.1" in res.output
    assert f"each target beside G's images of it in {tmp_path / 'run' / 'sanity.png'}" in res.output
    assert (tmp_path / "run" / "sanity.png").is_file()  # also when it fails: where a user looks to see why
    res = CliRunner().invoke(app, ["sanity", "--image", str(img), "--set", "model.arch=acgan",
                                   "--run", str(tmp_path / "run2")])
    assert res.exit_code != 0 and "takes 2 --image files (one per label), got 1: give two" in str(res.exception or res.output)
    # two for the default DCGAN: said how to test ACGAN on them, not "takes 1 --image file (one per label)"
    res = CliRunner().invoke(app, ["sanity", "--image", str(img), "--image", str(img), "--run", str(tmp_path / "run3")])
    assert res.exit_code != 0 and str(res.exception) == ("the sanity test takes 1 --image file, got 2: give one, or test "
                                                         "ACGAN on two labelled ones with --set model.arch=acgan")


def test_a_critics_g_step_longer_than_the_epochs_is_said_and_counted(tmp_path):
    """16 copies, batch 16: one batch an epoch, and WGAN's G step takes 5 critic batches, so `--epochs 2` trained 5
    epochs with no word why ("epoch 5/2"). A step is not cut short (its numerics stay): the start says how epochs end,
    and the result says it trained more than asked."""
    res = CliRunner().invoke(app, ["sanity", "--resolution", "16", "--epochs", "2", "--copies", "16", "--no-progress",
                                   "--run", str(tmp_path / "run"), "--set", "model.ngf=8", "--set", "model.ndf=8",
                                   "--set", "train.loss=wgan", "--set", "train.strategy=critic",
                                   "--set", "train.n_critic=5", "--set", "train.optimizer=rmsprop",
                                   "--set", "train.precision=fp32", "--set", "train.device=cpu"])
    assert "one G step takes up to 5 critic batches and an epoch has 1 batch" in res.output, res.output
    assert "after 1 iteration, 5 epochs, more than the 2 asked for (threshold" in res.output, res.output


@pytest.mark.slow
@pytest.mark.longest
def test_sanity_command_passes_with_its_defaults(tmp_path):
    """`gankit sanity` exactly as the README gives it: the default DCGAN with its own learning rates, on seed 002's
    1000 copies of the built-in target for 50 epochs (the tests above use a small model and a high rate)."""
    res = CliRunner().invoke(app, ["sanity", "--run", str(tmp_path / "run"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert any(line.startswith("PASS: mean absolute error") for line in res.stdout.splitlines()), res.output


def test_sanity_without_run_writes_to_its_default_folder(tmp_path, monkeypatch):
    """`gankit sanity` as the README gives it, without --run: Typer passes the default `runs/sanity` (a Path) through
    the path parser, which took only strings and ended the command in an internal error."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["sanity", "--resolution", "16", "--epochs", "1", "--copies", "8",
                                   "--threshold", "0.99", "--no-progress", "--set", "model.ngf=8",
                                   "--set", "model.ndf=8", "--set", "train.batch_size=8"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "sanity" / "sanity.png").is_file()


def test_sanity_takes_the_recipes_resolution_and_sets_but_not_its_epochs(tmp_path):
    """The flags' defaults (32 px, 50 epochs) overrode a recipe's resolution and even `--set data.resolution=64`. A
    recipe's resolution and every --set now count; a recipe's epochs (a real run's, 300...) give way to the test's
    50 unless --set or --epochs names others."""
    import yaml

    from gankit.config import filled_in

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"resolution": 16}, "model": {"ngf": 8, "ndf": 8},
                                      "train": {"epochs": 300, "batch_size": 8, "precision": "fp32"}}))
    base = ["sanity", "--config", str(recipe), "--copies", "8", "--threshold", "0.99", "--no-progress"]  # passes
    for extra, resolution, epochs in (([], 16, 50), (["--set", "train.epochs=3", "--set", "data.resolution=24"], 24, 3),
                                      (["--set", "train.epochs=3", "--epochs", "2"], 16, 2)):
        run = tmp_path / f"run{len(extra)}"
        res = CliRunner().invoke(app, [*base, "--run", str(run), *extra])
        assert res.exit_code == 0, res.output
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert (saved["data"]["resolution"], saved["train"]["epochs"]) == (resolution, epochs), extra
        # the test's own 50 is left to a run made from its config.yaml (filled in); the user's epochs are kept
        assert ("train.epochs" in filled_in(run / "config.yaml")) == (not extra), extra


def test_an_acgan_sanity_grid_names_its_rows_after_the_image_files(tmp_path):
    from PIL import Image

    from gankit.checkpoint import load_checkpoint

    paths = []
    for name, target in zip(("charmander", "squirtle"), builtin_images(16)):
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(target.permute(1, 2, 0).numpy()).save(paths[-1])
    layers = _layers({"arch": "acgan"}, {"epochs": 1, "max_steps": None}, 0)
    r = run_sanity(layers, tmp_path / "run", images=paths, copies=16, threshold=1.0)
    assert load_checkpoint(r.run_dir / "checkpoints" / "last.pt")["class_names"] == ["charmander", "squirtle"]


def test_a_stopped_sanity_test_does_not_advise_a_resume_it_cannot_do(tmp_path, monkeypatch, capsys):
    """It said "Resume with: gankit train --run runs/sanity", which fails: its copies live in memory."""
    ctrl_c_at(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run_sanity(_layers({}, {"epochs": 2, "max_steps": None}, 0), tmp_path / "s", copies=32, threshold=0.0)
    err = capsys.readouterr().err
    assert "interrupted at iteration 2" in err and "The test starts over when run again" in err
    assert "gankit train" not in err


def test_a_sanity_test_does_not_run_in_a_folder_being_trained(tmp_path):
    from gankit import runlock
    from gankit.errors import RunError

    with runlock.hold(tmp_path / "s", "--run"):  # as another process training there would
        with pytest.raises(RunError, match="is being trained by another gankit process"):
            run_sanity(_layers({}, {"epochs": 1, "max_steps": None}, 0), tmp_path / "s", copies=16, threshold=1.0)


def test_a_test_run_again_in_its_folder_starts_over_and_a_training_runs_folder_is_refused(tmp_path, image_folder):
    """`gankit sanity` twice in runs/sanity left the first test's grids, last.prev.pt and events beside the second's
    (the GIF mixed both); a training run's folder given as --run would have lost its checkpoints."""
    from gankit.errors import DataError
    from gankit.train import run_training

    first = _layers({}, {"epochs": 3, "max_steps": None}, 0)
    run_sanity(first, tmp_path / "t", copies=64, threshold=0.0, all_epochs=True)  # 3 grids, last.prev.pt
    assert len(list((tmp_path / "t" / "samples").iterdir())) == 3
    second = _layers({}, {"epochs": 1, "max_steps": None}, 0)
    second[0]["data"]["resolution"] = 24
    r = run_sanity(second, tmp_path / "t", copies=64, threshold=0.0, all_epochs=True)
    assert sorted(p.name for p in (r.run_dir / "samples").iterdir()) == ["epoch_0001.png"]
    from gankit.checkpoint import load_checkpoint

    assert {load_checkpoint(p)["config"]["data"]["resolution"] for p in (r.run_dir / "checkpoints").iterdir()} == {24}

    run = run_training([{"data": {"path": str(image_folder), "resolution": 16}, "model": FAST,
                         "train": {"max_steps": 1, "batch_size": 8, "precision": "fp32", "device": "cpu"},
                         "log": {"progress": False, "plots": False}}], tmp_path / "real")
    before = (run / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(DataError, match="holds a training run, whose checkpoints the sanity test would overwrite: "
                                        "pass another --run"):
        run_sanity(second, run, copies=64)
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_a_sanity_test_passes_only_when_every_target_is_reproduced():
    assert SanityResult([0.4, 0.4], [0.05, 0.09], 0.1, 0, Path(".")).passed
    assert not SanityResult([0.4, 0.4], [0.05, 0.3], 0.1, 0, Path(".")).passed  # one of ACGAN's two targets missed


def test_each_target_is_measured_on_gs_images_of_its_own_label():
    from gankit.sanity import _attempts, _mae

    targets = builtin_images(16)
    images = [t.float().div(255).mul(2).sub(1) for t in targets]  # a G that paints label i's target exactly
    trainer = SimpleNamespace(cfg=build_config({"model": {"nz": 4}}), device="cpu", num_classes=2,
                              _generate=lambda z, labels: torch.stack([images[int(k)] for k in labels]))
    assert _mae(_attempts(trainer, targets)) == pytest.approx([0.0, 0.0], abs=1e-6)


def test_the_sanity_test_never_flips_its_target(tmp_path, capsys):
    """...and its config.yaml says it filled in data.flip: `gankit sanity --set data.flip=true`, then `gankit train
    --config S/config.yaml`, trained the new run without flips, the test's value, not the user's, without a word.
    The test itself ignored the asked flips, and a data folder, without a word too: it says so in a line each."""
    import yaml

    from gankit.config import filled_in, read_recipe

    layers = [{"data": {"resolution": 16, "flip": True, "path": "pokemon"}, "model": {"ngf": 8, "ndf": 8, "nz": 8},
               "train": {"batch_size": 8, "precision": "fp32", "device": "cpu", "epochs": 1},
               "log": {"progress": False, "plots": False, "tensorboard": False}}]
    r = run_sanity(layers, tmp_path / "s", copies=8, threshold=1.0)
    assert yaml.safe_load((r.run_dir / "config.yaml").read_text())["data"]["flip"] is False
    assert "data.flip" in filled_in(r.run_dir / "config.yaml")
    assert "flip" not in read_recipe(r.run_dir / "config.yaml")["data"]
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if "data.flip true" in line]
    assert warned == ["warning: data.flip true is ignored: the sanity test never flips its target, one exact picture"]
    # so is a data folder (a recipe's, or --set data.path=...), which it said nothing of either
    assert ("warning: data.path 'pokemon' is ignored: the sanity test trains on copies of one picture (--image FILE, "
            "else its built-in target)") in err
    # its batch is the user's (8, not lowered to fewer copies): a recipe made from its config.yaml keeps it
    assert "train.batch_size" not in filled_in(r.run_dir / "config.yaml")


def test_a_recipe_made_from_a_sanity_tests_config_leaves_the_tests_own_values_to_the_new_run(tmp_path, capsys):
    """`gankit train --config S/config.yaml --data DIR` carried the test's data.path (without --data: "data folder
    '.../sanity' does not exist"), its epochs and its batch lowered to the copies. They are named filled in, and a
    recipe leaves them to the new run; an older test's file, which names none, loses its data.path all the same."""
    from gankit.config import FILLED_NOTE, filled_in, read_recipe

    layers = [{"data": {"resolution": 16}, "model": {"ngf": 8, "ndf": 8, "nz": 8},
               "train": {"batch_size": 16, "precision": "fp32", "device": "cpu", "epochs": 1},
               "log": {"progress": False, "plots": False, "tensorboard": False}}]
    config = run_sanity(layers, tmp_path / "s", copies=8, threshold=1.0, test_epochs=True).run_dir / "config.yaml"
    assert {"data.path", "train.epochs", "train.batch_size"} <= set(filled_in(config))
    recipe = read_recipe(config)
    assert not {"path", "epochs", "batch_size"} & {*recipe["data"], *recipe["train"]}, recipe
    assert "is the config sanity test " in capsys.readouterr().err
    config.write_text(config.read_text().split("\n", 1)[1])  # an older test's file: no FILLED_NOTE line
    assert not config.read_text().startswith(FILLED_NOTE)
    assert "path" not in read_recipe(config)["data"]
    assert "is the config sanity test " in capsys.readouterr().err


def test_copies_that_cannot_fit_in_memory_are_refused_before_they_are_made(tmp_path, monkeypatch, capsys):
    """`gankit sanity --resolution 1024 --copies 100000` (within the bound on copies) tried to make 293 GiB of them
    and said to lower a --batch-size that sanity does not have. On a 1 GiB machine, 100,000 copies at 256 px
    (18 GiB) are refused in a line, before anything is made."""
    import gankit.evaluate
    import gankit.sanity
    from gankit.cli import main

    def made(*a, **k):
        raise AssertionError("made the copies")

    monkeypatch.setattr(gankit.evaluate, "physical_memory", lambda: 2**30)
    monkeypatch.setattr(gankit.sanity, "copies_dataset", made)
    with pytest.raises(SystemExit) as done:
        main(["sanity", "--resolution", "256", "--copies", "100000", "--run", str(tmp_path / "s")])
    line = capsys.readouterr().err.strip()
    assert done.value.code == 2 and line.splitlines() == [line] and line.endswith(
        "--copies 100,000 at 256px take 18 GiB, more than this machine's 1 GiB of memory: ask for fewer copies "
        "(seed 002: 1000) or a lower --resolution"), line
