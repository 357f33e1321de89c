"""Fake run folders, shaped like the ones `gankit train` writes, for the report tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from PIL import Image

GRID_SIZE = (66, 66)  # a 2x2 grid of 30 px images with 2 px padding


def epoch_color(run_index: int, epoch: int) -> tuple[int, int, int]:
    """A distinct solid color per (run, epoch), far apart so GIF quantization cannot mix them up."""
    return ((40 * epoch) % 256, (90 + 70 * run_index) % 256, (255 - 25 * epoch) % 256)


def make_run(
    root: Path,
    name: str,
    *,
    run_index: int = 0,
    epochs: int = 5,
    steps_per_epoch: int = 40,
    lr_g: float = 2e-4,
    loss: str = "bce",
    fids: list[float] | None = None,
    samples: bool = True,
    torn: bool = True,
    extra: dict | None = None,
) -> Path:
    """Write config.yaml, metrics.jsonl (step/epoch/eval lines, a torn last line) and sample grids."""
    run = root / name
    (run / "samples").mkdir(parents=True)
    config = {
        "name": name,
        "seed": 0,
        "data": {"path": "./pokemon", "resolution": 64, "flip": True},
        "model": {"arch": "dcgan", "nz": 100, "ngf": 64, "ndf": 64},
        "train": {"loss": loss, "strategy": "classic", "lr_g": lr_g, "lr_d": 2e-4, "epochs": epochs,
                  "batch_size": 64},
        "log": {"every": 10},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    lines = []
    step = 0
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            step += 1
            t = step * 0.5
            lines.append({
                "kind": "step", "step": step, "epoch": epoch, "time": t,
                "d_loss": 1.2 * math.exp(-step / 150) + 0.3 + 0.15 * run_index + 0.1 * math.sin(step),
                "g_loss": 2.0 + 0.5 * math.cos(step / 7 + run_index),
                "d_acc_real": 0.5 + 0.3 * math.sin(step / 20) ** 2,
                "d_acc_fake": 0.6, "img_per_s": 1000.0 + step, "lr_now": 2e-4,
                **(extra or {}),
            })
        lines.append({"kind": "epoch", "step": step, "epoch": epoch, "time": step * 0.5,
                      "d_loss": 0.5, "g_loss": 2.0, "d_acc_real": 0.7, "d_acc_fake": 0.6})
        if fids is not None and epoch <= len(fids):
            lines.append({"kind": "eval", "step": step, "epoch": epoch, "time": step * 0.5 + 0.2,
                          "fid": fids[epoch - 1], "kid_mean": fids[epoch - 1] / 1000, "kid_std": 0.001,
                          "n_fake": 1000})
    with open(run / "metrics.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
        if torn:
            f.write('{"kind": "step", "step": 99999, "epoch": 9, "d_lo')

    if samples:
        for epoch in range(1, epochs + 1):
            Image.new("RGB", GRID_SIZE, epoch_color(run_index, epoch)).save(run / "samples" / f"epoch_{epoch:04d}.png")
    return run
