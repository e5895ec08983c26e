"""``robustkd.api``: a plain nn.Module is evaluated and recorded like the checkpoint it would be; bad inputs are
refused with one line before any work."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from robustkd import api
from robustkd.checkpoint import save_checkpoint
from robustkd.cli import main
from robustkd.data import dataset_info
from robustkd.errors import RobustKDError
from robustkd.jobs.evaluate import module_sha256
from robustkd.models import build_model


def _model() -> torch.nn.Module:
    torch.manual_seed(3)
    info = dataset_info("synthetic")
    return build_model("resnet8", info.num_classes, info.mean, info.std).eval()


def _rows(db: Path) -> dict[tuple[str, str], float]:
    with sqlite3.connect(db) as connection:
        return {(suite, metric): value for suite, metric, value in
                connection.execute("SELECT suite, metric, value FROM results")}


def test_a_module_is_recorded_as_its_checkpoint_would_be(tmp_path: Path) -> None:
    """The same weights evaluated as a module (API) and as a checkpoint (CLI): the same identity, the same rows."""
    model = _model()
    stem = tmp_path / "ckpt" / "model"
    stem.parent.mkdir()
    meta_path = save_checkpoint(stem, model, {"architecture": "resnet8", "num_classes": 10, "dataset": "synthetic"})
    import json

    checkpoint_sha = json.loads(meta_path.read_text())["weights_sha256"]
    assert module_sha256(model) == checkpoint_sha  # a module's identity is its checkpoint's
    done = api.evaluate(model, suites=["clean", "calibration"], dataset="synthetic", out=tmp_path / "api",
                        model_info={"architecture": "resnet8"}, announce=lambda _: None)
    assert [result.suite for result in done] == ["clean", "calibration"] and all(r.recorded_rows for r in done)
    assert done[0].folder.parent.name == f"resnet8-{checkpoint_sha[:12]}"
    assert main(["evaluate", "--checkpoint", str(stem.parent), "--suite", "clean", "--suite", "calibration",
                 "--out", str(tmp_path / "cli")]) == 0
    api_rows, cli_rows = _rows(tmp_path / "api" / "robustkd.db"), _rows(tmp_path / "cli" / "robustkd.db")
    assert api_rows.keys() == cli_rows.keys() and len(api_rows) > 10
    assert all(api_rows[key] == pytest.approx(cli_rows[key], abs=1e-9) for key in api_rows)
    with sqlite3.connect(tmp_path / "api" / "robustkd.db") as connection:
        assert {row[0] for row in connection.execute("SELECT checkpoint_sha256 FROM results")} == {checkpoint_sha}
    # Run again with skip_finished: nothing is evaluated or recorded twice.
    again = api.evaluate(model, suites=["clean"], dataset="synthetic", out=tmp_path / "api", skip_finished=True,
                         model_info={"architecture": "resnet8"}, announce=lambda _: None)
    assert not again[0].written and again[0].recorded_rows is None


def test_tied_weights_have_an_identity() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[1].weight = model[0].weight
    assert len(module_sha256(model)) == 64


@pytest.mark.parametrize("call, message", [
    (lambda tmp: api.evaluate(_model(), suites=["clean"], out=tmp), "a module needs dataset="),
    (lambda tmp: api.evaluate(_model(), suites=["nosuch"], dataset="synthetic", out=tmp), "nosuch"),
    (lambda tmp: api.evaluate(_model(), suites=["clean"], dataset="synthetic", out=tmp, n_examples=0),
     "--n-examples must be a positive integer"),
    (lambda tmp: api.evaluate(tmp / "no-checkpoint", suites=["clean"], out=tmp), "no sidecar"),
    (lambda tmp: api.train(model="resnet8", epoch=5, run_dir=tmp / "r"), "unknown setting(s) epoch"),
    (lambda tmp: api.distill(teacher=tmp / "t", student="resnet8", run_dir=tmp / "r"), "unknown setting(s) student"),
])
def test_bad_api_input_is_refused_before_any_work(tmp_path: Path, call, message: str) -> None:
    with pytest.raises(RobustKDError, match=None) as raised:
        call(tmp_path)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "robustkd.db").exists() and not (tmp_path / "r").exists()
