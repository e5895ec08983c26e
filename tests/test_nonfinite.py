"""A model that outputs NaN or inf is an error in every suite, never a number; nothing is recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from robustkd.checkpoint import load_checkpoint, save_checkpoint
from robustkd.cli import main
from robustkd.errors import RobustKDError
from robustkd.evaluate.runner import evaluate_model
from robustkd.evaluate.smoothing import Smooth
from robustkd.evaluate.suite_file import load_suite


def _broken_checkpoint(checkpoint: Path, folder: Path, value: float) -> Path:
    """A copy of the fixture's checkpoint with ``value`` in every fc weight, saved with a valid sha256."""
    loaded = load_checkpoint(checkpoint)
    state = load_file(str(checkpoint / "model.safetensors"))
    state["net.fc.weight"] = torch.full_like(state["net.fc.weight"], value)
    loaded.model.load_state_dict(state)
    folder.mkdir()
    save_checkpoint(folder / "model", loaded.model, loaded.meta)
    return folder


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_the_cli_refuses_a_checkpoint_with_nan_or_inf_weights(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: float) -> None:
    broken = _broken_checkpoint(checkpoint, tmp_path / "broken", value)
    out = tmp_path / "results"
    code = main(["evaluate", "--checkpoint", str(broken), "--suite", "clean", "--suite", "calibration",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("robustkd: error: evaluate: ") and err.count("\n") == 1, err
    assert "non-finite logits (NaN or inf) of 2000 on 200 clean test images" in err  # 200 images x 10 classes
    assert "(clean, calibration)" in err and "nothing was recorded" in err
    assert not out.exists() or not any(path.name == "summary.json" for path in out.rglob("*"))
    assert not (out / "robustkd.db").exists()


class NaNAfter(nn.Module):
    """Outputs the wrapped model's logits for its first ``good_calls`` calls, then NaN in one class of every
    row (a model that breaks only on some inputs: the clean pass sees nothing wrong)."""

    def __init__(self, model: nn.Module, good_calls: int) -> None:
        super().__init__()
        self.model = model
        self.good_calls = good_calls
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        logits = self.model(x)
        if self.calls <= self.good_calls:
            return logits
        return torch.cat([logits[:, :1] * float("nan"), logits[:, 1:]], dim=1)


@pytest.mark.parametrize("suite_name", ["corruption", "certified", "adversarial"])
def test_every_suite_refuses_nan_outputs_that_appear_after_the_clean_pass(
        checkpoint: Path, tmp_path: Path, suite_name: str) -> None:
    model = NaNAfter(load_checkpoint(checkpoint).model, good_calls=1)  # the clean pass: one batch of 20
    suite = load_suite(suite_name)
    overrides = {"corruption": {"corruptions": ("gaussian_noise",), "severities": (1,)},
                 "certified": {"n0": 10, "n": 20, "max": 2, "fold_batchnorm": False},
                 "adversarial": {"attacks": ("fgsm",), "eps_curve_255": (), "masking_examples": 0}}[suite_name]
    suite = dataclasses.replace(suite, params=dataclasses.replace(suite.params, **overrides))
    with pytest.raises(RobustKDError, match="non-finite logits .* nothing was recorded"):
        evaluate_model(model, name="nan-after", dataset="synthetic", suites=[suite], out_root=tmp_path / "results",
                       data_dir=tmp_path / "no-data", device=torch.device("cpu"), n_examples=20)
    assert not list((tmp_path / "results").rglob("summary.json"))
    assert not list((tmp_path / "results").rglob(".*.partial"))  # nothing left to resume from


def test_smoothing_refuses_nan_votes() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    with torch.no_grad():
        model[1].bias[2] = float("nan")
    smooth = Smooth(model, num_classes=5, sigma=0.25)
    with pytest.raises(RobustKDError, match="non-finite logits"):
        smooth.certify(torch.rand(3, 4, 4), n0=4, n=8, alpha=0.001, batch_size=4)
    with pytest.raises(RobustKDError, match="non-finite logits"):
        smooth.predict(torch.rand(3, 4, 4), n=8, alpha=0.001, batch_size=4)
