"""Contract tests, one per registry: every registered suite and attack keeps the contract of
robustkd/evaluate/suite.py and robustkd/evaluate/attacks/base.py (as test_models checks every model)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from pathlib import Path

import pytest
import torch
from torch import nn

from robustkd.cli import main
from robustkd.errors import RobustKDError
from robustkd.evaluate import attacks as attack_lib
from robustkd.evaluate.attacks import BoundedAttack, MinimumNormAttack, ThreatModel, load_attacks
from robustkd.evaluate.runner import evaluate_model
from robustkd.evaluate.suite import SUITES, Metric, load_suites, suite_class, suites_in_order
from robustkd.evaluate.suite_file import load_suite, packaged_suite_names
from robustkd.evaluate.suites.adversarial import AdversarialParams
from robustkd.evaluate.summary import ResultSummary
from robustkd.models import build_model
from robustkd.results.leaderboard import leaderboard_columns

# Small parameters that make every suite run in seconds on synthetic data (16 test images, 10 classes).
SMOKE = {
    "clean": 'batch_size = 8\n',
    "calibration": 'batch_size = 8\nholdout = 16\n',
    "corruption": 'batch_size = 8\ncorruptions = ["fog", "jpeg_compression"]\nseverities = [1, 3]\n',
    "shift_calibration": 'batch_size = 8\nholdout = 16\ncorruptions = ["fog", "jpeg_compression"]\nseverities = [1, 3]\n',
    "certified": 'n0 = 10\nn = 64\nbatch_size = 32\nmax = 2\npredict_n = 32\nnoise_chunk = 16\n',
    "relations": 'batch_size = 8\n',
    "adversarial": 'batch_size = 8\nattacks = ["fgsm", "pgd_linf", "cw_l2", "foolbox_pgd_linf", "deepfool_l2", "apgd_dlr"]\n'
                   'pgd_steps = 2\ncw_steps = 2\ndeepfool_steps = 3\neps_curve_255 = [4.0, 8.0]\n'
                   'masking_examples = 4\nsquare_queries = 5\n',
}


def _suite_modules(package: str) -> list[str]:
    module = importlib.import_module(package)
    return [info.name for info in pkgutil.iter_modules(module.__path__)]


def test_every_suite_module_registers_one_suite() -> None:
    """Adding a suite is adding one module: each module of the package registers exactly one suite."""
    registry = load_suites()
    modules = _suite_modules("robustkd.evaluate.suites")
    owners = {suite_class(name).__module__.rsplit(".", 1)[-1] for name in registry.names()}
    assert sorted(owners) == sorted(modules)
    assert len(registry.names()) == len(modules)
    assert set(SMOKE) == set(registry.names()), "a new suite needs its smoke parameters here"


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_suite_declarations(name: str) -> None:
    cls = suite_class(name)
    assert dataclasses.is_dataclass(cls.params) and cls.params.__dataclass_params__.frozen
    for field in dataclasses.fields(cls.params):
        assert field.default is not dataclasses.MISSING, f"{name}.{field.name} has no default"
    assert cls.metrics and all(metric.unit for metric in cls.metrics)
    assert cls.extends <= {field.name for field in dataclasses.fields(cls.params)}
    assert cls.resumable or not cls.extends
    assert (cls.__doc__ or "").strip(), "the docstring is the suite's one-line description (robustkd suites)"


@pytest.mark.parametrize("name", packaged_suite_names())
def test_packaged_suite_files_hold_valid_overrides_only(name: str) -> None:
    """Every shipped TOML key is a field of its suite's params, in range, and differs from the default
    (defaults live only in the dataclass)."""
    suite = load_suite(name)
    import tomllib

    values = tomllib.loads(suite.path.read_text())
    defaults = {field.name: field.default for field in dataclasses.fields(suite.params)}
    for key, value in values.items():
        if key == "suite":
            continue
        assert key in defaults
        default = defaults[key]
        assert (tuple(value) if isinstance(value, list) else value) != default, f"{name}: {key} restates its default"


def test_a_registered_suite_needs_no_file() -> None:
    suite = load_suite("shift_calibration")
    assert suite.params == suite_class("shift_calibration").params()
    assert str(suite.path) == "<shift_calibration defaults>"


def test_every_leaderboard_column_shows_a_declared_metric() -> None:
    columns = leaderboard_columns()
    assert len({column.name for column in columns}) == len(columns)
    for column in columns:
        metric = suite_class(column.suite).metric(column.metric)
        assert metric.column is not None and metric.higher_is_better is not None
        assert column.higher_is_better == metric.higher_is_better


@pytest.mark.parametrize("radius", [0.3, 2.0, -0.25])
def test_a_radius_off_the_certified_grid_is_refused(radius: float) -> None:
    with pytest.raises(RobustKDError, match=f"--radius {radius:.2f}: the certified suite records 0.00, 0.25"):
        leaderboard_columns(radius)


def test_metric_families_match_only_their_shape() -> None:
    family = Metric("acc_{corruption}", "percent", True)
    assert family.matches("acc_fog") and not family.matches("ece_fog") and not family.matches("acc_")
    assert suite_class("corruption").metric("acc_severity_3").key == "acc_severity_{severity}"
    with pytest.raises(RobustKDError, match="not declared"):
        suite_class("clean").metric("top3")


def test_a_suite_declaration_that_breaks_the_contract_is_refused() -> None:
    from robustkd.evaluate.suite import Suite, register_suite

    @dataclasses.dataclass(frozen=True)
    class Params:
        batch_size: int = 1

    class Broken(Suite[Params]):
        name = "broken"
        params = Params
        metrics = (Metric("x_{thing}", "percent", True, column="x"), Metric("y", "", True, column="y_{radius}"))
        extends = frozenset({"nope"})

        def run(self, ctx, params, work):  # pragma: no cover
            raise AssertionError

    with pytest.raises(TypeError, match="extends names unknown parameters"):
        register_suite(Broken)
    Broken.extends = frozenset()
    with pytest.raises(TypeError, match="needs a grid"):
        register_suite(Broken)
    assert "broken" not in SUITES.names()


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every registered suite run once on a small synthetic model (with a teacher for relations)."""
    root = tmp_path_factory.mktemp("smoke")
    files = []
    for name, text in SMOKE.items():
        path = root / f"{name}.toml"
        path.write_text(f'suite = "{name}"\n{text}')
        files.append(load_suite(str(path)))
    torch.manual_seed(0)
    model = build_model("resnet8", 10, (0.5,) * 3, (0.25,) * 3)
    teacher = build_model("resnet8", 10, (0.5,) * 3, (0.25,) * 3)
    runs = evaluate_model(model, name="smoke", dataset="synthetic", suites=files, out_root=root / "out",
                          data_dir=root, device=torch.device("cpu"), n_examples=16, teacher=teacher,
                          model_info={"weights_sha256": "0" * 64, "architecture": "resnet8"})
    return {run.suite: run.target for run in runs}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_a_smoke_run_records_only_declared_metrics_with_units_and_every_declared_plot(
        smoke_results: dict[str, Path], name: str) -> None:
    folder = smoke_results[name]
    summary = ResultSummary.from_json(folder / "summary.json")
    cls = suite_class(name)
    assert summary.metrics, name
    for key, value in summary.metrics.items():
        assert summary.units[key] == cls.metric(key).unit and summary.units[key]
        assert isinstance(value, float) or isinstance(value, int)
    for plot in cls.plots:
        assert (folder / plot.file).is_file() and (folder / plot.file).read_bytes()[:4] == b"\x89PNG"
    json.loads((folder / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in summary"))


def test_the_smoke_adversarial_run_reports_by_kind(smoke_results: dict[str, Path]) -> None:
    summary = ResultSummary.from_json(smoke_results["adversarial"] / "summary.json")
    metrics, attacks = summary.metrics, summary.protocol["attacks"]
    assert attacks["pgd_linf"]["kind"] == "bounded" and attacks["cw_l2"]["kind"] == "minimum_norm"
    assert attacks["apgd_dlr"]["kind"] == "bounded" and attacks["apgd_dlr"]["iterations"] == 100
    # headline robust accuracy for bounded attacks and minimum-norm attacks with a budget; none for DeepFool
    assert {"robust_acc_apgd_dlr", "robust_acc_cw_l2", "robust_acc_pgd_linf_eps4"} <= set(metrics)
    assert "robust_acc_deepfool_l2" not in metrics and "robust_acc_square" not in metrics
    assert metrics["worst_case_linf"] <= min(metrics["robust_acc_apgd_dlr"], metrics["robust_acc_pgd_linf"])
    assert summary.counts == {"square": 4}
    assert "foolbox_pgd_gap" in metrics and "square_robust_acc_subset" in metrics


def test_every_attack_module_registers_its_attacks_by_kind() -> None:
    registry = load_attacks()
    plumbing = {"base", "registry"}
    modules = set(_suite_modules("robustkd.evaluate.attacks")) - plumbing
    owners = {registry.get(name).__module__.rsplit(".", 1)[-1] for name in registry.names()}
    assert owners == modules
    params = AdversarialParams(autoattack_versions=("standard", "plus"))
    for name in registry.names():
        for attack in registry.get(name)(params):
            assert isinstance(attack, (BoundedAttack, MinimumNormAttack)), name
            assert attack.library in ("torchattacks", "foolbox", "pyautoattack")


def _image_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    return model, torch.rand(3, 3, 4, 4) * 0.5 + 0.25, torch.tensor([0, 1, 2])


def test_an_over_budget_attack_is_refused() -> None:
    model, x, y = _image_batch()
    eps = 8 / 255
    greedy = BoundedAttack("greedy", ThreatModel("linf", eps), lambda m, xs, ys: (xs + 2 * eps).clamp(0, 1),
                           "torchattacks", {})
    with pytest.raises(RobustKDError, match="greedy: perturbation 0.06.* exceeds eps 0.031373"):
        greedy(model, x, y)
    within = BoundedAttack("within", ThreatModel("linf", eps), lambda m, xs, ys: (xs + eps).clamp(0, 1), "torchattacks", {})
    assert torch.equal(within(model, x, y), (x + eps).clamp(0, 1))
    # a minimum-norm attack has no budget: the same perturbation is accepted and counted at eps
    unbounded = MinimumNormAttack("far", ThreatModel("linf", eps), lambda m, xs, ys: (xs + 2 * eps).clamp(0, 1),
                                  "torchattacks", {})
    assert unbounded(model, x, y).shape == x.shape


@pytest.mark.parametrize("output, message", [
    (lambda xs: xs + 1.0, "left \\[0, 1\\]"),
    (lambda xs: xs[:2], "returned \\(2, 3, 4, 4\\)"),
])
def test_attack_outputs_outside_the_contract_are_refused(output, message: str) -> None:
    model, x, y = _image_batch()
    broken = MinimumNormAttack("broken", ThreatModel("l2", 0.5), lambda m, xs, ys: output(xs), "foolbox", {})
    with pytest.raises(RobustKDError, match=message):
        broken(model, x, y)


def test_minimum_norm_robustness_counts_at_eps() -> None:
    attack = attack_lib.cw_l2(0.5, 1.0, 0.0, 5, 0.01)
    correct, fooled = torch.tensor([True, True, True, False]), torch.tensor([True, True, False, True])
    norms = torch.tensor([0.2, 0.9, 0.0, 0.1], dtype=torch.float64)
    assert attack.robust(correct, fooled, norms).tolist() == [False, True, True, False]
    bounded = attack_lib.pgd_l2(0.5, 0.1, 2, True)
    assert bounded.robust(correct, fooled, norms).tolist() == [False, False, True, False]


def test_apgd_dlr_runs_the_reference_apgd_with_the_dlr_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyautoattack

    seen = {}

    def capture(self, x, y, *, batch_size, state_path=None):
        seen.update(attacks=list(self.attacks_to_run), iterations=self.apgd.n_iter, restarts=self.apgd.n_restarts,
                    eps=self.epsilon, norm=self.norm)
        return x, y

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", capture)
    (attack,) = load_attacks().get("apgd_dlr")(AdversarialParams(linf_eps_255=4.0))
    model, x, y = _image_batch()
    attack(model, x, y)
    assert seen == {"attacks": ["apgd-dlr"], "iterations": 100, "restarts": 1, "eps": pytest.approx(4 / 255),
                    "norm": "Linf"}


def test_apgd_dlr_fools_an_undefended_model_within_budget() -> None:
    model, x, y = _image_batch()
    with torch.no_grad():
        model[1].weight.mul_(20)  # margins that 16/255 can cross
    y = model(x).argmax(1)
    (attack,) = load_attacks().get("apgd_dlr")(AdversarialParams(linf_eps_255=16.0))
    x_adv = attack(model, x, y)
    assert float((x_adv - x).abs().max()) <= 16 / 255 + 1e-6
    assert bool(model(x_adv).argmax(1).ne(y).any())


def test_shift_calibration_agrees_with_the_calibration_and_corruption_suites(tmp_path: Path) -> None:
    """Same logits, bins and temperature fit as the calibration suite on clean data; the same generated
    images as the corruption suite (its per-severity accuracy over the same corruptions)."""
    texts = {"calibration": 'batch_size = 8\nholdout = 16\n',
             "corruption": 'batch_size = 8\ncorruptions = ["fog", "contrast"]\nseverities = [2, 5]\n',
             "shift_calibration": 'batch_size = 8\nholdout = 16\ncorruptions = ["fog", "contrast"]\nseverities = [2, 5]\n'}
    files = []
    for name, text in texts.items():
        (tmp_path / f"{name}.toml").write_text(f'suite = "{name}"\n{text}')
        files.append(load_suite(str(tmp_path / f"{name}.toml")))
    torch.manual_seed(3)
    model = build_model("resnet8", 10, (0.5,) * 3, (0.25,) * 3)
    runs = evaluate_model(model, name="shift", dataset="synthetic", suites=files, out_root=tmp_path / "out",
                          data_dir=tmp_path, device=torch.device("cpu"), n_examples=16)
    calibration, corruption, shift = (ResultSummary.from_json(run.target / "summary.json").metrics for run in runs)
    assert shift["ece_clean"] == pytest.approx(calibration["ece"])
    assert shift["ece_clean_ts"] == pytest.approx(calibration["ece_ts"])
    assert shift["temperature"] == pytest.approx(calibration["temperature"])
    for severity in (2, 5):  # the corruption suite's cells are recorded to 6 decimals
        assert shift[f"acc_severity_{severity}"] == pytest.approx(corruption[f"acc_severity_{severity}"], abs=1e-4)
        assert shift[f"ece_severity_{severity}"] == pytest.approx(corruption[f"ece_severity_{severity}"], abs=1e-6)
    assert shift["ece_shift_mean"] == pytest.approx(corruption["ece_corrupted_mean"], abs=1e-6)
    assert shift["ece_shift_ts_mean"] != pytest.approx(shift["ece_shift_mean"], abs=1e-9)


def test_suites_command_lists_declarations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["suites", "certified"]) == 0
    out = capsys.readouterr().out
    assert "alpha = 0.001  (> 0 and < 1)" in out and "certified_acc_r{radius}  (percent; higher" in out
    assert main(["suites"]) == 0
    listed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if line and not line.startswith(" ")]
    assert listed == [cls.name for cls in suites_in_order()]


def test_recorded_counts_match_the_rows_behind_them(smoke_results: dict[str, Path]) -> None:
    """The summary's image counts agree with the work tables it was computed from."""
    import pandas as pd

    corruption = smoke_results["corruption"]
    summary = ResultSummary.from_json(corruption / "summary.json")
    cells = pd.read_csv(corruption / "cells.csv")
    assert (cells["n"] == summary.counts["per_cell"]).all() and len(cells) == 4
    assert summary.counts["per_cell"] == summary.n_examples == 16
    adversarial = smoke_results["adversarial"]
    summary = ResultSummary.from_json(adversarial / "summary.json")
    rows = pd.read_csv(adversarial / "examples.csv").groupby("attack").size()
    for name, count in rows.items():
        assert count == summary.counts.get(name, summary.n_examples), name
    certified = smoke_results["certified"]
    summary = ResultSummary.from_json(certified / "summary.json")
    certificates = pd.read_csv(certified / "certify.tsv", sep="\t")
    assert len(certificates) == summary.counts["certified"] == summary.metrics["n_certified"] == 2
