"""FID/KID of a generator against its dataset, during training and for any checkpoint afterwards.

Real-image Inception features are computed once per dataset and resolution (cached on disk under
the dataset's key); each evaluation then costs only the generated images' features. On a 2-core CPU
Inception runs at a few images/s (see README), so evaluation is off by default there and every 10
epochs on a GPU; `eval.n_fake` sets the sample count (KID is the honest figure for small counts).
"""

from __future__ import annotations

import os

import torch

from gankit.console import info, warn
from gankit.errors import ConfigError, DataError


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the system does not say, e.g. Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def beyond_memory(need: int, at: str = "") -> str | None:
    """"N GiB{at}, more than this machine's M GiB of memory" when `need` bytes exceed its memory, else None (it fits,
    or the system does not say): what the checks before a long allocation say."""
    total = physical_memory()
    if total and need > total:
        return f"{need / 2**30:,.0f} GiB{at}, more than this machine's {total / 2**30:,.0f} GiB of memory"
    return None


def check_feature_memory(n_fake: int, setting: str) -> None:
    """Refuse a count of generated images whose Inception features (2048 float64 numbers each, held twice while they
    are joined) cannot fit in this machine's memory: it would fail after hours of generating them."""
    from gankit.metrics import NUM_FEATURES

    beyond = beyond_memory(2 * n_fake * NUM_FEATURES * 8)
    if beyond:
        raise ConfigError(f"{setting} {n_fake}: the features of that many images take {beyond}: ask for fewer (50,000 "
                          "is the usual count for FID)")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 images, as they would be saved."""
    return images.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def real_subset(n_images: int, n_real: int) -> slice | torch.Tensor:
    """The indices of the real images FID/KID compares with: all of them, or a fixed, seeded subset of n_real when
    there are more (so the cache key of their features stays meaningful)."""
    if n_images <= n_real:
        return slice(None)
    return torch.randperm(n_images, generator=torch.Generator().manual_seed(0))[:n_real].sort().values


def fake_classes(n: int, num_classes: int, real_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The class of each of a conditional run's n generated images for FID/KID, the same every time. With
    `real_labels` (eval.fake_classes data: the classes of the real images compared), each class as often as among
    them, by largest remainder (n x its share rounded down, one more to the largest remainders, the lower class
    first), interleaved so that any run of consecutive images (a chunk) has nearly the same mix; without (uniform),
    every class in turn."""
    if real_labels is None:
        return torch.arange(n) % num_classes
    counts = torch.bincount(real_labels.reshape(-1), minlength=num_classes).tolist()
    total = sum(counts)
    shares = [n * c // total for c in counts]
    for i in sorted(range(num_classes), key=lambda i: (-(n * counts[i] % total), i))[:n - sum(shares)]:
        shares[i] += 1
    # class i's j-th image at (j + 1/2) / shares[i] of the way: each class spread evenly over the n places
    places = torch.cat([(torch.arange(k, dtype=torch.float64) + 0.5) / k for k in shares if k])
    classes = torch.cat([torch.full((k,), i, dtype=torch.long) for i, k in enumerate(shares) if k])
    return classes[torch.sort(places, stable=True).indices]


def run_fake_classes(mix: str, num_classes: int, n_fake: int, labels: torch.Tensor | None,
                     n_real: int) -> torch.Tensor | None:
    """The classes of a run's n_fake generated images for FID/KID under eval.fake_classes `mix` (`fake_classes`):
    with data, the mix of the real images' `labels` that it compares with (`real_subset`), every class in turn
    without them; None for an unconditional run (num_classes 0)."""
    if not num_classes:
        return None
    real = labels[real_subset(len(labels), n_real)] if mix == "data" and labels is not None else None
    return fake_classes(n_fake, num_classes, real)


def drawing(classes: torch.Tensor | None, draw):
    """`generate(k)` for `Evaluator`: `draw(k, start, labels)` returns the images from number `start` on, `labels`
    the next k of `classes` (a conditional run's, `fake_classes`; None for an unconditional one)."""
    drawn = 0

    def generate(k: int) -> torch.Tensor:
        nonlocal drawn
        images = draw(k, drawn, None if classes is None else classes[drawn:drawn + k])
        drawn += k
        return images

    return generate


class Evaluator:
    """Holds the Inception network and the real features of one dataset. `stop`, a callable asked before each
    batch of images, abandons the work (gankit.metrics.Abandoned) when it returns True."""

    def __init__(self, data, device: torch.device, n_real: int, weights: str | None = None, progress: bool = True,
                 cache_dir: str | None = None, stop=None):
        from gankit.metrics import RealStatistics, load_inception, real_features

        self.device, self.progress, self.stop = device, progress, stop
        self.extractor = load_inception(device, weights=weights)
        images = data.images[real_subset(len(data.images), n_real)]
        self.real = RealStatistics(real_features(data.key, images, self.extractor, progress=progress,
                                                 cache_dir=cache_dir, stop=stop, cache_name=data.cache_name))

    @torch.no_grad()
    def __call__(self, generate, n_fake: int, batch_size: int = 50) -> dict:
        """`generate(n)` returns n images in [-1, 1]; returns {"fid", "kid_mean", "kid_std", "n_fake", ...}.
        Each chunk of `batch_size` images is scored as soon as it is drawn: 50,000 images need the memory of one
        chunk and their features, and the progress counts both."""
        from gankit import console
        from gankit.metrics import extract_features, fid_kid

        features, done = [], 0
        with console.progress(n_fake, "Inception", "images", self.progress) as bar:
            while done < n_fake:
                k = min(batch_size, n_fake - done)
                features.append(extract_features(to_uint8(generate(k)).cpu(), self.extractor, batch_size=batch_size,
                                                 stop=self.stop))
                done += k
                bar.update(k)
        return fid_kid(self.real, torch.cat(features))


def evaluate_run(run, data_path: str | None, checkpoint=None, n_fake: int = 1000, n_real: int = 10000,
                 device: str = "auto", weights: str | None = None, seed: int = 0) -> dict:
    """FID/KID of a run's generator (or a given checkpoint) against a dataset (default: the run's own)."""
    from gankit.config import CONDITIONAL_ARCHS
    from gankit.data import BUILTIN_PREFIX, is_builtin, is_missing, is_relative, label_file_missing, load_dataset
    from gankit.sample import check_seed, load_run_generator

    check_seed(seed)  # before the real images' features, which take minutes on a CPU
    gen = load_run_generator(run, checkpoint, device)
    cfg = gen.cfg
    path = data_path if data_path is not None else cfg.data.path
    if gen.other_run and data_path is None:  # the run named is not the one measured: say which dataset is
        named = f"the built-in {(path or BUILTIN_PREFIX + 'mnist')[len(BUILTIN_PREFIX):].upper()}" if is_builtin(path) \
            else f"'{path}'"
        warn(f"FID and KID compare the checkpoint's images with its own run's dataset {named} at "
             f"{cfg.data.resolution}px, not with the dataset of run '{run}': pass --data DIR to compare with other images")
    if data_path is not None and is_missing(data_path):
        raise DataError(f"--data '{data_path}' does not exist: pass the folder (or archive) of real images to compare "
                        "with, or omit --data to use the run's own dataset")
    relative = data_path is None and is_relative(path)
    if data_path is None and is_missing(path):
        where = f" (from here: {os.path.abspath(path)})" if relative else ""
        raise DataError(f"the run's dataset '{path}'{where} does not exist any more: pass --data with its new place "
                        "(or any folder of real images to compare with)")
    if relative:  # an older gankit saved it as typed, relative to the folder the run was started from
        info(f"the run's config names its dataset relative to the folder it was started from (an older gankit wrote "
             f"it): reading '{path}' from here, {os.path.abspath(path)}; pass --data if that is not the run's")
    labels = cfg.data.labels if path == cfg.data.path and cfg.model.arch in CONDITIONAL_ARCHS else None  # as trained
    if label_file_missing(labels, path):  # FID compares images alone: the run's labels need not be there any more
        info(f"the run's label file '{labels}' is not there any more: FID and KID do not need labels, reading the "
             "images alone")
        labels = None
    # the label file's warnings were said as the run trained: here only how many images it leaves out of the comparison
    data = load_dataset(path, cfg.data.resolution, labels=labels, label_column=cfg.data.label_column if labels else None,
                        cache_dir=cfg.data.cache_dir, label_warnings=False)
    if data.unlabelled:
        info(f"FID and KID compare with the {len(data):,} labelled images the run trained on: {data.unlabelled:,} of the "
             f"{len(data) + data.unlabelled:,} in '{path}' have no label in '{labels}'")
    # the run's classes (a generator file without their names: as many), not those of a label file edited since
    trained = list(data.class_names) == gen.labels if gen.class_names else len(data.class_names) == cfg.model.num_classes
    real_labels = data.labels if data.labels is not None and trained else None
    if gen.conditional and cfg.eval.fake_classes == "data" and real_labels is None:
        info("the classes of the images compared are not known here: the generated images take every class in turn "
             "(eval.fake_classes data follows the class counts of the run's own labelled images)")
    ev = Evaluator(data, gen.device, n_real=n_real, weights=weights, cache_dir=cfg.data.cache_dir)
    classes = run_fake_classes(cfg.eval.fake_classes, cfg.model.num_classes if gen.conditional else 0, n_fake,
                               real_labels, n_real)
    # a fresh seed per chunk: --seed + the images drawn before it
    result = ev(drawing(classes, lambda k, start, labels: gen.sample(k, seed=seed + start, labels=labels)), n_fake)
    # what was measured: the file drawn from, where its training stood (None where the file does not say), the images
    # (None: the built-in MNIST, as data.path says it)
    return {**result, "checkpoint": str(gen.source), **gen.trained, "data": None if path is None else str(path)}
