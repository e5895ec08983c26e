"""The adversarial suite: results, budgets, worst case, per-batch resume, gradient-masking checks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustkd.cli import main
from robustkd.evaluate import attacks as lib
from robustkd.evaluate.attacks import base as attack_base
from robustkd.evaluate.masking import forward_checks

FAST = ('suite = "adversarial"\nbatch_size = 20\npgd_steps = 5\ncw_steps = 10\ndeepfool_steps = 10\n'
        'masking_examples = 20\nsquare_queries = 50\neps_curve_255 = [2.0, 8.0]\n'
        'attacks = ["fgsm", "pgd_linf", "pgd_l2", "cw_l2", "foolbox_pgd_linf", "deepfool_l2"]\n')


def _summary(out: Path, suite: str) -> tuple[Path, dict]:
    (folder,) = list(out.glob(f"*/{suite}"))
    return folder, json.loads((folder / "summary.json").read_text())


def test_adversarial_results(checkpoint: Path, tmp_path: Path) -> None:
    suite = tmp_path / "adv.toml"
    suite.write_text(FAST)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--n-examples", "40",
                 "--out", str(tmp_path)]) == 0
    folder, summary = _summary(tmp_path, "adversarial-first40")
    metrics = summary["metrics"]
    attacks = ["fgsm", "pgd_linf", "pgd_l2", "cw_l2", "foolbox_pgd_linf", "pgd_linf_eps2"]
    for name in attacks:
        assert 0 <= metrics[f"robust_acc_{name}"] <= metrics["clean_acc"]
    assert metrics["clean_acc"] == pytest.approx(summary["clean_acc"])
    assert metrics["worst_case_linf"] <= min(metrics[f"robust_acc_{n}"] for n in
                                             ("fgsm", "pgd_linf", "foolbox_pgd_linf"))
    assert metrics["worst_case_l2"] <= min(metrics["robust_acc_pgd_l2"], metrics["robust_acc_cw_l2"])
    assert metrics["deepfool_l2_median"] > 0 and metrics["gradient_zero_fraction"] == 0
    examples = pd.read_csv(folder / "examples.csv")
    assert len(examples) == 40 * (len(attacks) + 1) + 20  # + deepfool rows + the Square check on 20 inputs
    linf = examples[examples["attack"].isin(["fgsm", "pgd_linf", "foolbox_pgd_linf"])]
    assert linf["norm"].max() <= 8 / 255 + 1e-5
    assert examples[examples["attack"] == "pgd_l2"]["norm"].max() <= 0.5 + 1e-5
    protocol = summary["protocol"]
    assert protocol["attacks"]["foolbox_pgd_linf"]["library"] == "foolbox"
    assert protocol["attacks"]["pgd_linf"]["eps"] == pytest.approx(8 / 255) and protocol["pgd_steps"] == 5
    assert summary["package_versions"]["torchattacks"] == "3.5.1" and "foolbox" in summary["package_versions"]
    assert summary["units"]["deepfool_l2_median"].startswith("L2")
    assert (folder / "robust_accuracy_vs_eps.png").read_bytes()[:4] == b"\x89PNG"
    curve = pd.read_csv(folder / "eps_curve.csv")
    assert list(curve["eps_255"]) == [0.0, 2.0, 8.0] and curve["robust_acc"].iloc[0] == metrics["clean_acc"]


def test_adversarial_resumes_per_batch(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = tmp_path / "adv.toml"
    suite.write_text('suite = "adversarial"\nbatch_size = 10\nattacks = ["fgsm", "pgd_linf"]\npgd_steps = 2\n'
                     'eps_curve_255 = []\nmasking_examples = 0\n')
    calls: list[str] = []
    original = attack_base.perturbation_norm

    def counting(x_adv, x, norm):  # called twice per batch: the budget check and the recorded norms
        calls.append(norm)
        if len(calls) == 11:  # during the 6th batch
            raise KeyboardInterrupt
        return original(x_adv, x, norm)

    monkeypatch.setattr(attack_base, "perturbation_norm", counting)
    args = ["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--n-examples", "40", "--out", str(tmp_path)]
    assert main(args) == 130
    (partial,) = list(tmp_path.glob("*/.adversarial-first40.partial"))
    assert len(pd.read_csv(partial / "examples.csv")) == 50  # 4 FGSM batches + 1 PGD batch
    calls.clear()
    assert main(args) == 0
    assert len(calls) == 6  # only the 3 missing PGD batches ran
    _, summary = _summary(tmp_path, "adversarial-first40")
    assert set(summary["metrics"]) >= {"robust_acc_fgsm", "robust_acc_pgd_linf", "worst_case_linf"}


class _Softmax(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).softmax(1)


class _Noisy(_Softmax):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.01 * torch.randn_like(x))


class _Quantised(_Softmax):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


def test_masking_checks_flag_probabilities_randomness_and_zero_gradients() -> None:
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 5, (6,))
    plain = forward_checks(inner, x, y)
    assert plain == {"outputs_probabilities": False, "randomised_forward": False, "gradient_zero_fraction": 0.0}
    assert forward_checks(_Softmax(inner), x, y)["outputs_probabilities"] is True
    assert forward_checks(_Noisy(inner), x, y)["randomised_forward"] is True
    assert forward_checks(_Quantised(inner), x, y)["gradient_zero_fraction"] == 1.0


def test_minimum_norm_attacks_count_at_eps() -> None:
    """CW-L2 has no budget: an input fooled only with a perturbation above eps still counts as robust."""
    attack = lib.cw_l2(0.5, 1.0, 0.0, 5, 0.01)
    assert isinstance(attack, lib.MinimumNormAttack) and attack.threat.eps == 0.5
    x = torch.zeros(2, 3, 4, 4)
    far = x.clone()
    far[0, 0, 0, 0] = 1.0  # L2 norm 1.0 > 0.5
    assert lib.perturbation_norm(far, x, "l2").tolist() == [1.0, 0.0]
    assert lib.perturbation_norm(far, x, "linf").tolist() == [1.0, 0.0]


def test_autoattack_uses_the_reference_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyautoattack with version standard: APGD-T and FAB-T over 9 target classes, Square with 5000 queries."""
    import pyautoattack

    seen = {}

    def capture(self, x, y, *, batch_size, state_path=None):
        seen.update(attacks=list(self.attacks_to_run), apgd_t=self.apgd_targeted.n_target_classes,
                    fab_t=self.fab.n_target_classes, queries=self.square.n_queries, eps=self.epsilon,
                    iterations=self.apgd.n_iter)
        return x, y

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", capture)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    lib.autoattack(8 / 255, "standard", "linf", seed=0).run(model, torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))
    assert seen == {"attacks": ["apgd-ce", "apgd-t", "fab-t", "square"], "apgd_t": 9, "fab_t": 9, "queries": 5000,
                    "eps": pytest.approx(8 / 255), "iterations": 100}


@pytest.mark.slow
def test_autoattack_end_to_end(checkpoint: Path, tmp_path: Path) -> None:
    suite = tmp_path / "aa.toml"
    suite.write_text('suite = "adversarial"\nattacks = ["pgd_linf", "autoattack"]\neps_curve_255 = []\n'
                     'masking_examples = 10\nsquare_queries = 100\n')
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--n-examples", "20",
                 "--out", str(tmp_path)]) == 0
    _, summary = _summary(tmp_path, "adversarial-first20")
    metrics = summary["metrics"]
    assert metrics["robust_acc_autoattack_standard"] <= metrics["clean_acc"]
    assert metrics["worst_case_linf"] <= metrics["robust_acc_autoattack_standard"]
