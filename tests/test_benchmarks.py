"""The benchmark scripts run end to end on tiny settings and report what their docstrings promise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_image_folder

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "GANKIT_CACHE_DIR": str(cwd / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_quality_per_budget_in_parallel_measures_both_at_every_mark(tmp_path):
    make_image_folder(tmp_path / "images", n=80)
    out = _run("quality_per_budget.py", "--data", str(tmp_path / "images"), "--resolution", "16",
               "--minutes", "0.1", "--fid-at", "0.05", "--n-fake", "24", "--fid-n", "12,24,40", "--parallel", "--json", "q.json",
               "--grids", "grids", "--set", "model.ngf=8", "--set", "model.ndf=8", "--set", "train.batch_size=16",
               cwd=tmp_path)
    q = json.loads((tmp_path / "q.json").read_text())
    assert q["parallel"] and q["threads"] == 1
    assert [c["name"] for c in q["contestants"]] == ["gankit", "reference"]
    for c in q["contestants"]:
        assert [m["minute"] for m in c["marks"]] == [0.05, 0.1]
        first, last = c["marks"]
        assert 0 < first["steps"] < last["steps"] and last["seconds"] >= 6.0
        assert all(m["n_fake"] == 24 and m["n_real"] == 80 and 0 < m["fid"] < 1e4 for m in c["marks"])
        assert (tmp_path / "grids" / f"{c['name']}.png").is_file()
        # the last mark drew the largest --fid-n count: FID at each count (the headline's is the first 24) and FID_inf
        assert "fid_inf" not in first and list(last["fid_by_n"]) == ["12", "24", "40"]
        assert last["fid_by_n"]["24"] == pytest.approx(last["fid"]) and last["fid_inf"] < 1e4
    g, r = (c["marks"][-1] for c in q["contestants"])
    assert q["fid_ratio"] == pytest.approx(g["fid"] / r["fid"])
    assert "gankit FID / reference FID" in out
    assert q["fid_inf_ratio"] == pytest.approx(g["fid_inf"] / r["fid_inf"]) and "FID_inf" in out


@pytest.mark.slow
def test_throughput_reports_ratios_and_the_ceiling_of_the_same_flops(tmp_path):
    _run("throughput.py", "--resolutions", "32", "--families", "dcgan,wgan_gp", "--iters", "1", "--rounds", "1",
         "--warmup", "1", "--threads", "1", "--json", "perf.json", cwd=tmp_path)
    perf = json.loads((tmp_path / "perf.json").read_text())
    rows = {r["name"]: r for r in perf["rows"]}
    assert {"reference fp32", "gankit dcgan", "gankit wgan_gp"} <= set(rows)
    for name in ("gankit dcgan", "gankit wgan_gp"):
        row = rows[name]
        assert row["img_s"] > 0 and row["flops_per_iter"] > 1e9
        assert 0 < row["fraction_of_peak"] < 1.2
        # the ceiling is the ratio at 100% of peak: the measured ratio is that ceiling x the fraction of peak
        assert row["ratio_best"] == pytest.approx(row["ratio_best_at_peak"] * row["fraction_of_peak"], rel=1e-6)
    # the peak is the faster of two GEMM kernels of the same FLOPs, both recorded
    for peak in perf["peaks"]:
        for dtype in ("fp32", "bf16"):
            kernels = peak[f"{dtype}_by_kernel"]
            assert set(kernels) == {"matmul", "conv1x1"} and min(kernels.values()) > 0
            assert peak[f"{dtype}_flop_s"] == max(kernels.values())


@pytest.mark.slow
def test_throughput_times_a_preset_file_under_the_families(tmp_path):
    """--config: the preset's own step (half width: about a quarter of the default DCGAN's FLOPs)."""
    common = ("--resolutions", "32", "--families", "dcgan", "--iters", "1", "--rounds", "1", "--warmup", "1",
              "--threads", "1", "--no-reference")
    _run("throughput.py", *common, "--json", "default.json", cwd=tmp_path)
    preset = Path(__file__).resolve().parents[1] / "configs" / "fast_small_data.yaml"
    _run("throughput.py", *common, "--config", str(preset), "--json", "preset.json", cwd=tmp_path)
    default, fast = (json.loads((tmp_path / f).read_text()) for f in ("default.json", "preset.json"))
    assert fast["config"] == str(preset) and default["config"] is None
    (d_row,), (f_row,) = default["rows"], fast["rows"]
    assert f_row["resolution"] == 32 and f_row["img_s"] > 0
    assert 0.15 < f_row["flops_per_iter"] / d_row["flops_per_iter"] < 0.4
