"""Kill -9 at random moments, resume each time: the run folder stays usable and the run ends exactly
where it was asked to (the long version is scripts/kill_soak.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kill_soak.py"


def load_soak():
    spec = importlib.util.spec_from_file_location("kill_soak", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_soak"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    soak = load_soak()
    result = soak.soak(tmp_path, kills=4, seed=1, max_steps=12, epochs=12, log=lambda _: None)
    assert result.failures == []
    assert result.attempted == 4 and result.survived == 4
    assert result.runs_finished >= 1  # the last run was resumed to max_steps and its folder checked


def test_the_checks_catch_a_broken_folder(tmp_path):
    """The soak's final check is not vacuous: duplicated and torn metric lines, a short run and a write's temporary
    file left behind are caught."""
    soak = load_soak()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    from gankit.checkpoint import save_checkpoint

    save_checkpoint({"iteration": 3}, run / "checkpoints" / "last.pt")
    lines = ['{"kind": "step", "step": 1, "epoch": 1}', '{"kind": "step", "step": 2, "epoch": 1}',
             '{"kind": "step", "step": 2, "epoch": 1}', '{"kind": "ep']
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run / "checkpoints" / ".last.prev.pt.99.link").write_bytes(b"")
    problems = " | ".join(soak.final_problems(run, max_steps=4))
    assert "iteration 3, expected 4" in problems and "line 4 is torn" in problems and "duplicated: [2]" in problems
    assert "temporary files left: ['checkpoints/.last.prev.pt.99.link']" in problems
