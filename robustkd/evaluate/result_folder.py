"""Where results live: ``<out>/<model folder>/<suite>[-first<N>]/``, finished when it holds summary.json.

The one naming rule of result folders, used by ``robustkd evaluate`` and the runner (scripts call
``robustkd evaluate --skip-finished`` instead of re-deriving it).
"""

from __future__ import annotations

from pathlib import Path


def model_folder_name(architecture: str, weights_sha256: str) -> str:
    """``<architecture>-<first 12 hex digits of the weights' sha256>`` (``:`` of zoo names and ``/`` of imported
    RobustBench names made ``_``)."""
    return f"{architecture.replace(':', '_').replace('/', '_')}-{weights_sha256[:12]}"


def result_folder(out_root: Path, model_folder: str, suite: str, n_examples: int | None) -> Path:
    """The result folder of ``suite`` on ``model_folder``; ``n_examples`` marks a test-set prefix."""
    return Path(out_root) / model_folder / (suite + (f"-first{n_examples}" if n_examples is not None else ""))


def is_finished(folder: Path) -> bool:
    return (folder / "summary.json").is_file()
