"""What a run looks like to people: sample grids, the evolution GIF, training plots, the comparison page.

The public functions are importable from here; each module is loaded on first use, so importing
`gankit.report` does not pull in matplotlib or torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_run": "runs",
    "Run": "runs",
    "BestEval": "runs",
    "write_plots": "plots",
    "write_evolution_gif": "gif",
    "save_grid": "grids",
    "label_grid": "grids",
    "write_compare_report": "compare",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
