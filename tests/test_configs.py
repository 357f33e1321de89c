"""Every recipe in configs/ loads and trains for a couple of steps at reduced size, so none can rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_image_folder
from gankit.checkpoint import load_checkpoint
from gankit.config import build_config, read_yaml
from gankit.train import run_training

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
SEED_RECIPES = {
    "pokemon64_dcgan_classic", "pokemon64_dcgan_monitoring", "pokemon64_dcgan_boosting", "pokemon64_wgan_clip",
    "pokemon256_dcgan", "pokemon256_wgan", "pokemon64_wgan_gp", "pokemon64_acgan_type", "pokemon64_convtranspose",
    "pokemon64_upsample", "pokemon64_colorpicker", "rps300_dcgan", "birds64_dcgan", "birds64_wgan_clip",
    "pokemon64_dcgan_dropout",
}


def test_every_seed_experiment_has_a_recipe():
    assert SEED_RECIPES <= {p.stem for p in CONFIGS}


def test_recipes_of_seeds_without_augmentation_do_not_flip():
    """Seeds 001, 002 and 004 use their images as they are (seed 002: "The only preprocessing made is a minmax
    scale"); gankit flips a folder's images by default, so their recipes say flip: false. Seed 000's dataset was
    augmented."""
    for path in CONFIGS:
        seed = path.read_text().split()[2] if path.read_text().startswith("# Seed") else None
        if seed in ("001", "002", "004"):
            assert read_yaml(path)["data"].get("flip") is False, path.name


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_trains_two_steps_at_reduced_size(path, tmp_path):
    recipe = read_yaml(path)
    build_config(recipe)  # valid as written
    conditional = recipe.get("model", {}).get("arch") == "acgan"
    data = tmp_path / "images"
    make_image_folder(data, n=16, size=20, classes=("fire", "water") if conditional else ())
    small = {
        "data": {"path": str(data), "resolution": 16, "labels": "folders" if conditional else None,
                 "label_column": None},
        "model": {"ngf": 8, "ndf": 8, "nz": 16, "max_channels": 32},
        "train": {"batch_size": 4, "max_steps": 2, "precision": "fp32", "device": "cpu",
                  "critic_boost": min(recipe.get("train", {}).get("critic_boost", 0), 2)},
        "log": {"progress": False, "every": 1, "plots": False, "tensorboard": False},
    }
    if recipe.get("model", {}).get("mbd_features"):
        small["model"]["mbd_features"] = 8
    run = run_training([recipe, small], tmp_path / "run")
    ckpt = load_checkpoint(run / "checkpoints/last.pt")
    assert ckpt["iteration"] == 2 and ckpt["g_updates"] >= 1
    assert ckpt["config"]["train"]["loss"] == recipe.get("train", {}).get("loss", "bce")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_sets_nothing_without_effect(path, capsys):
    """No recipe names a setting its own config ignores, nor warns at the start of a run."""
    from gankit.config import warn_settings

    recipe = read_yaml(path)
    assert warn_settings([recipe], build_config(recipe)) == [] and capsys.readouterr().err == ""


def _recipe(name: str):
    return build_config(read_yaml(next(p for p in CONFIGS if p.stem == name)))


@pytest.mark.parametrize("name", ["birds64_dcgan", "birds64_wgan_clip"])
def test_birds_recipes_build_the_dcgan_papers_5x5_layers(name):
    """Seed 004 trains "a traditional DCGAN architecture" (the DCGAN paper's figure: 5x5 stride-2 layers), its WGAN
    "the same architecture": every stride-2 layer of G and D is 5x5 (they were PyTorch's 4x4)."""
    from torch import nn

    from gankit.models import build_discriminator, build_generator

    cfg = _recipe(name)
    cfg.model.channels = 3
    layers = [*build_generator(cfg).modules(), *build_discriminator(cfg).modules()]
    strided = [m for m in layers if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.stride == (2, 2)]
    assert len(strided) == 8 and {m.kernel_size for m in strided} == {(5, 5)}


def test_birds_dcgan_saves_three_grids_an_epoch_and_the_models_every_five():
    """Seed 004: "Each epoch, 3 bathes of generated images are saved [...] and each 5 epochs the models are saved"."""
    log = _recipe("birds64_dcgan").log
    assert (log.grids_per_epoch, log.checkpoint_every) == (3, 5)


def test_seed_002_bce_recipes_share_its_regularisers():
    """Seed 002's D) names label smoothing and instance noise among the regularisers of its whole journey, and its
    ACGAN is "described on a DCGANs": the ACGAN recipe had neither, while the DCGAN one has both (same values)."""
    def regularisers(name):
        t = _recipe(name).train
        return t.label_smoothing, t.label_smoothing_two_sided, t.instance_noise, t.instance_noise_epochs

    assert regularisers("pokemon64_acgan_type") == regularisers("pokemon64_dcgan_dropout") == (0.1, False, 0.1, 100)


@pytest.mark.parametrize("name", sorted(SEED_RECIPES & {p.stem for p in CONFIGS if p.read_text().startswith("# Seed 000")}))
def test_seed_000_recipes_draw_from_its_small_latent_space(name):
    """Seed 000: "Even with a small latent space the networks always produce different outputs": its notebook's nz 16,
    not the DCGAN paper's 100, in each of its six recipes."""
    assert _recipe(name).model.nz == 16


def test_readme_names_every_key_a_recipe_sets():
    """README names each key the recipes set (as `section.key`, or as `key` alone, as its strategy row names
    `n_critic`): a write-up's hyper-parameter (Adam's learning rates and betas, the widths, seed 004's init
    std) has an option a reader can find without reading config.py."""
    import re

    from gankit.config import flatten

    readme = (CONFIGS[0].parents[1] / "README.md").read_text()
    missing = sorted({key for path in CONFIGS for key in flatten(read_yaml(path))
                      if not re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", readme)
                      and f"`{key.rsplit('.', 1)[1]}`" not in readme})
    assert missing == []


_SEED_000_DCGAN = {"train.loss": "bce", "train.optimizer": "adam", "train.lr_g": 1.5e-4, "train.lr_d": 1.5e-4,
                   "train.beta1": 0.5, "train.beta2": 0.999, "train.label_smoothing": 0.1,
                   "train.label_smoothing_two_sided": True, "model.mbd_features": 100}
_SEED_000_WGAN = {"train.loss": "wgan", "train.strategy": "critic", "train.n_critic": 3, "train.optimizer": "rmsprop",
                  "train.rmsprop_alpha": 0.99, "train.lr_g": 5e-5, "train.lr_d": 5e-5, "model.mbd_features": 100}
_SEED_002_G = {"model.nz": 100, "model.z_dist": "normal", "model.g_act": "leaky_relu", "model.g_norm": "batch",
               "data.flip": False}
# Seed 004's Keras 2 code (trainDCGAN.py, train_wgan.py): LeakyReLU(0.2), BatchNormalization(momentum=0.5) (PyTorch's
# 0.5) with Keras' epsilon 1e-3, and the 2017 Keras optimizers' epsilon 1e-8.
_SEED_004_KERAS = {"model.leaky_slope": 0.2, "model.bn_momentum": 0.5, "model.bn_eps": 1e-3, "train.eps": 1e-8}
# What each write-up in ../shared/seeds/ states, recipe by recipe (values the seeds leave open are in the recipes'
# comments, not here).
WRITE_UPS = {
    "pokemon64_dcgan_classic": {**_SEED_000_DCGAN, "train.strategy": "classic", "data.resolution": 64},
    "pokemon256_dcgan": {**_SEED_000_DCGAN, "train.strategy": "classic", "data.resolution": 256},
    "pokemon64_dcgan_monitoring": {**_SEED_000_DCGAN, "train.strategy": "monitored", "train.monitor_factor": 0.8},
    "pokemon64_dcgan_boosting": {**_SEED_000_DCGAN, "train.strategy": "boost", "train.boost_window": 100},
    "pokemon64_wgan_clip": {**_SEED_000_WGAN, "data.resolution": 64},
    "pokemon256_wgan": {**_SEED_000_WGAN, "data.resolution": 256},
    "pokemon64_dcgan_dropout": {**_SEED_002_G, "train.loss": "bce", "model.d_norm": "batch"},
    "pokemon64_wgan_gp": {**_SEED_002_G, "train.loss": "wgan_gp", "model.d_norm": "none"},
    "pokemon64_convtranspose": {**_SEED_002_G, "train.loss": "wgan_gp", "model.upsample": "convtranspose"},
    "pokemon64_upsample": {**_SEED_002_G, "train.loss": "wgan_gp", "model.upsample": "upsample"},
    "pokemon64_colorpicker": {**_SEED_002_G, "train.loss": "wgan_gp", "model.upsample": "colorpicker"},
    "pokemon64_acgan_type": {**_SEED_002_G, "model.arch": "acgan"},
    "rps300_dcgan": {"data.resolution": 300, "data.flip": False, "model.g_act": "leaky_relu", "model.g_norm": "batch",
                     "model.upsample": "convtranspose", "model.d_downsample": "maxpool", "model.d_norm": "none",
                     "train.loss": "bce", "train.optimizer": "adam", "train.strategy": "alternating",
                     "model.init": "xavier_uniform",  # tf.keras' default glorot_uniform (the tutorial's layers keep it)
                     # tf.keras' LeakyReLU() 0.3, BatchNormalization() momentum 0.99 (PyTorch's 0.01) and epsilon 1e-3,
                     # Adam's epsilon 1e-7
                     "model.leaky_slope": 0.3, "model.bn_momentum": 0.01, "model.bn_eps": 1e-3, "train.eps": 1e-7},
    "birds64_dcgan": {"model.nz": 100, "model.g_act": "relu", "model.d_norm": "batch", "train.optimizer": "adam",
                      "model.init": "xavier_uniform",  # Keras' glorot_uniform: "initialized in a different manner" for the WGAN
                      **_SEED_004_KERAS,
                      "train.g_batch_factor": 2, "train.d_split": True, "log.grids_per_epoch": 3,
                      "log.checkpoint_every": 5},
    "birds64_wgan_clip": {"train.loss": "wgan", "train.clip": 0.01, "train.strategy": "critic", "train.n_critic": 5,
                          "train.critic_boost": 100, "train.critic_boost_first": 25, "train.critic_boost_every": 500,
                          "train.optimizer": "rmsprop", "train.rmsprop_alpha": 0.9, "train.max_steps": 20000,
                          **_SEED_004_KERAS},
}


@pytest.mark.parametrize("name", sorted(WRITE_UPS))
def test_seed_recipe_loads_to_its_write_ups_values(name):
    """Each recipe of a write-up loads to the values that write-up gives (Adam 0.00015 (0.5, 0.999), the 0.8 rule,
    100-iteration boosts, RMSProp 5e-5, n_critic 3, the 100-critic-step schedule, ...)."""
    from gankit.config import flatten, to_dict

    loaded = flatten(to_dict(_recipe(name)))
    assert {key: loaded[key] for key in WRITE_UPS[name]} == WRITE_UPS[name]


def test_every_seed_recipe_has_its_write_ups_values_pinned():
    assert set(WRITE_UPS) == SEED_RECIPES
