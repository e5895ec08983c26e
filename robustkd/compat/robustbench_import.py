"""Make ``import robustbench`` (1.1.1) work over the packaged reference AutoAttack (``pyautoattack``).

robustbench 1.1.1 installs ``pyautoattack`` but imports ``autoattack`` (the module name of the unpackaged
original), so every ``import robustbench`` fails. This registers an ``autoattack`` module, and
``autoattack.state``, backed by pyautoattack, with an ``AutoAttack`` that accepts the old call forms
robustbench uses (``log_path=``, ``verbose=``, ``attacks_to_run=``; ``run_standard_evaluation(x, y, bs=...)``
returning only the adversarial examples). The attacks themselves are pyautoattack's, unchanged.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def _legacy_autoattack_class() -> type:
    from pyautoattack import AutoAttack as PackagedAutoAttack

    class LegacyAutoAttack(PackagedAutoAttack):
        """pyautoattack's AutoAttack with the original package's constructor and return conventions."""

        def __init__(self, model, norm: str = "Linf", eps: float = 0.3, seed: int | None = None, verbose: bool = True,
                     attacks_to_run: list[str] | None = None, version: str = "standard", device: Any = "cuda",
                     log_path: str | None = None) -> None:
            super().__init__(model, attacks=list(attacks_to_run) if attacks_to_run else None, device=device, eps=eps,
                             norm=norm, seed=seed, version=version if not attacks_to_run else "custom")
            self.verbose = verbose
            self.log_path = log_path  # the packaged version logs through the 'auto-attack' logger instead

        def run_standard_evaluation(self, x_orig, y_orig, bs: int = 250, return_labels: bool = False,
                                    state_path=None, **kwargs):
            batch_size = kwargs.pop("batch_size", bs)
            x_adv, y_adv = super().run_standard_evaluation(x_orig, y_orig, batch_size=batch_size, state_path=state_path)
            return (x_adv, y_adv) if return_labels else x_adv

    return LegacyAutoAttack


def install_autoattack_shim() -> None:
    """Register ``autoattack`` and ``autoattack.state`` backed by pyautoattack (idempotent)."""
    existing = sys.modules.get("autoattack")
    if existing is not None and getattr(existing, "__robustkd_shim__", False):
        return
    try:
        importlib.import_module("autoattack.state")
        return  # a real 'autoattack' package is installed: leave it alone
    except ImportError:
        pass
    state = importlib.import_module("pyautoattack.state")
    module = types.ModuleType("autoattack", "robustkd shim: the original autoattack API over pyautoattack")
    module.AutoAttack = _legacy_autoattack_class()
    module.state = state
    module.__robustkd_shim__ = True
    module.__path__ = []  # a package, so 'autoattack.state' resolves
    sys.modules["autoattack"] = module
    sys.modules["autoattack.state"] = state


def import_robustbench() -> types.ModuleType:
    """``import robustbench`` with the shim in place."""
    install_autoattack_shim()
    return importlib.import_module("robustbench")
