"""Where results live: ``<out>/<model folder>/<suite>[-<selection>][-first<N>]/``, finished when it holds summary.json.

The one naming rule of result folders, used by ``robustkd evaluate`` and the runner (scripts call
``robustkd evaluate --skip-finished`` instead of re-deriving it).
"""

from __future__ import annotations

from pathlib import Path


def model_folder_name(architecture: str, weights_sha256: str) -> str:
    """``<architecture>-<first 12 hex digits of the weights' sha256>`` (``:`` of zoo names and ``/`` of imported
    RobustBench names made ``_``)."""
    return f"{architecture.replace(':', '_').replace('/', '_')}-{weights_sha256[:12]}"


def result_folder(out_root: Path, model_folder: str, suite: str, n_examples: int | None, selection: str = "") -> Path:
    """The result folder of ``suite`` on ``model_folder``: ``<suite>[-<selection>][-first<N>]`` (``selection``: the
    label of a named selection of test images, ``n_examples``: a prefix of it)."""
    parts = [suite, selection, f"first{n_examples}" if n_examples is not None else ""]
    return Path(out_root) / model_folder / "-".join(part for part in parts if part)


def is_finished(folder: Path) -> bool:
    return (folder / "summary.json").is_file()
