"""robustbench 1.1.1 imports through the autoattack shim, and the shim keeps the old call forms."""

from __future__ import annotations

import torch
from torch import nn

from robustkd.compat.robustbench_import import import_robustbench, install_autoattack_shim


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()


def test_robustbench_imports_and_computes_clean_accuracy() -> None:
    robustbench = import_robustbench()
    from robustbench.utils import clean_accuracy

    model = _tiny_model()
    x = torch.rand(10, 3, 8, 8)
    y = model(x).argmax(1)
    assert clean_accuracy(model, x, y, batch_size=4, device=torch.device("cpu")) == 1.0
    assert hasattr(robustbench, "benchmark")


def test_shim_accepts_the_original_autoattack_signature() -> None:
    install_autoattack_shim()
    from autoattack import AutoAttack
    from autoattack.state import EvaluationState  # noqa: F401  (robustbench imports it)

    model = _tiny_model()
    x = torch.rand(4, 3, 8, 8)
    y = model(x).argmax(1)
    adversary = AutoAttack(model, norm="Linf", eps=8 / 255, version="custom", attacks_to_run=["apgd-ce"],
                           device="cpu", log_path=None, verbose=False)
    adversary.apgd.n_restarts, adversary.apgd.n_iter = 1, 10  # a short run: this checks plumbing, not strength
    x_adv = adversary.run_standard_evaluation(x, y, bs=2)
    assert isinstance(x_adv, torch.Tensor) and x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
