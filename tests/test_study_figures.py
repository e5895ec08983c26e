"""scripts/study_figures.py: the study's curves carry the numbers of the result folders they are drawn from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS
from robustkd.results import store

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "study_figures.py"
spec = importlib.util.spec_from_file_location("study_figures", SCRIPT)
figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(figures)


def _result(root: Path, db: Path, *, method: str | None, seed: int, suite: str, write,
            teacher: str = "t" * 64) -> None:
    checkpoint = f"{method}{seed}{suite}{teacher[0]}".ljust(64, "0")
    folder = root / f"{method}-{seed}-{teacher[0]}" / suite  # as evaluate lays them out: model / suite
    folder.mkdir(parents=True)
    write(folder)
    summary = {"name": f"resnet8-{method}-{seed}", "architecture": "resnet8", "dataset": "cifar100", "clean_acc": 40.0,
               "suite": suite, "metrics": {"top1": 1.0}, "units": {}, "protocol": {"skip": 3, "max": -1},
               "n_examples": 10000, "subset": False, "seed": seed, "device": "cpu", "package_versions": {},
               "checkpoint_sha256": checkpoint, "suite_file": "x.toml", "suite_sha256": "s" * 64,
               "created": "2026-12-04T00:00:00+00:00", "method": method, "teacher_sha256": None if method is None else teacher,
               "method_options": None, "kind": "train" if method is None else "distill", "training": {}}
    (folder / "summary.json").write_text(json.dumps(summary))
    store.record_result(db, folder)


def _certify(radii: list[float], correct: list[int]):
    def write(folder: Path) -> None:
        pd.DataFrame({"index": range(len(radii)), "radius": radii, "correct": correct}).to_csv(
            folder / "certify.tsv", sep="\t", index=False)
    return write


def _mean_line(figure, label: str):
    return next(line for axis in figure.axes for line in axis.get_lines() if line.get_gid() == label)


def test_certified_curve_is_the_seed_mean_of_each_image_radius(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    # kd seed 0: 2 of 4 correct with radius >= 0.3; seed 1: 1 of 4 correct with radius 0.6, one correct at 0.1.
    _result(tmp_path, db, method="kd", seed=0, suite="certified", write=_certify([0.3, 0.5, 0.9, 0.0], [1, 1, 0, 0]))
    _result(tmp_path, db, method="kd", seed=1, suite="certified", write=_certify([0.6, 0.1, 0.0, 0.0], [1, 1, 0, 0]))
    _result(tmp_path, db, method="cmkd", seed=0, suite="certified", write=_certify([0.2, 0.2, 0.2, 0.2], [1, 1, 1, 0]))
    _result(tmp_path, db, method=None, seed=0, suite="certified", write=_certify([0.45, 0.0, 0.0, 0.0], [1, 0, 0, 0]))
    figure = figures.certified_figure(store.read_results(db), db)
    kd = _mean_line(figure, "mean kd")
    at = {round(float(r), 2): float(y) for r, y in zip(kd.get_xdata(), kd.get_ydata())}
    assert at[0.0] == pytest.approx(50.0)           # (2/4 + 2/4) / 2
    assert at[0.2] == pytest.approx((50.0 + 25.0) / 2)
    assert at[0.5] == pytest.approx((25.0 + 25.0) / 2)
    assert at[0.7] == pytest.approx(0.0)            # the wrong image at 0.9 never counts
    cmkd = _mean_line(figure, "mean cmkd")
    assert float(cmkd.get_ydata()[0]) == pytest.approx(75.0) and float(cmkd.get_ydata()[-1]) == 0.0
    teacher = _mean_line(figure, "teacher resnet8-None-0")
    assert float(teacher.get_ydata()[40]) == pytest.approx(25.0) and float(teacher.get_ydata()[50]) == 0.0
    assert "4 images" in figure.axes[0].get_title() and "skip3" in figure.axes[0].get_title()
    assert "kd (n=2)" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]


def test_robustness_curves_average_seeds_and_corruptions(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    for seed, scale in enumerate([1.0, 0.5]):
        _result(tmp_path, db, method="dist", seed=seed, suite="adversarial", write=lambda folder, s=scale: pd.DataFrame(
            {"eps_255": [0.0, 0.5, 1.0, 2.0, 8.0], "robust_acc": [50 * s, 20 * s, 10 * s, 2 * s, 0.0]}).to_csv(
            folder / "eps_curve.csv", index=False))
        grid = pd.DataFrame({str(s): np.linspace(0.2, 0.6, 15) * scale / s for s in range(1, 6)},
                            index=pd.Index(BENCHMARK_CORRUPTIONS, name="corruption"))
        _result(tmp_path, db, method="dist", seed=seed, suite="corruption", write=lambda folder, g=grid: g.to_csv(
            folder / "accuracy_grid.csv"))
    figure = figures.robustness_figure(store.read_results(db), db)
    pgd, corruption = [next(line for line in axis.get_lines() if line.get_gid() == "mean dist") for axis in figure.axes]
    assert list(pgd.get_xdata()) == [0.0, 0.5, 1.0, 2.0]  # eps above 2/255 is left out
    assert list(pgd.get_ydata()) == pytest.approx([37.5, 15.0, 7.5, 1.5])
    assert list(corruption.get_ydata()) == pytest.approx([100 * 0.4 * 0.75 / s for s in range(1, 6)])


def test_cli_skips_missing_suites_and_refuses_a_bad_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    _result(tmp_path, db, method="kd", seed=0, suite="certified", write=_certify([0.3], [1]))
    assert figures.main(["--db", str(db), "--out-dir", str(tmp_path / "out"), "--prefix", "x_"]) == 0
    out = capsys.readouterr().out
    assert "robustness_curves: no results" in out and (tmp_path / "out" / "x_certified_curves.png").is_file()
    assert not (tmp_path / "out" / "x_robustness_curves.png").exists()
    (tmp_path / "bad.db").write_text("not sqlite")
    assert figures.main(["--db", str(tmp_path / "bad.db"), "--out-dir", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustkd: error: ") and err.count("\n") == 1 and not (tmp_path / "o2").exists()


def test_fewer_corruptions_and_severities_and_a_moved_database(tmp_path: Path) -> None:
    recorded, moved = tmp_path / "gpu", tmp_path / "here"
    db = recorded / "r.db"
    grid = pd.DataFrame({"1": [0.5, 0.3, 0.1], "5": [0.2, 0.1, 0.0]},
                        index=pd.Index(["gaussian_noise", "fog", "jpeg_compression"], name="corruption"))
    _result(recorded, db, method="kd", seed=0, suite="corruption", write=lambda folder: grid.to_csv(
        folder / "accuracy_grid.csv"))
    recorded.rename(moved)  # the database names folders that are now elsewhere, beside it
    figure = figures.robustness_figure(store.read_results(moved / "r.db"), moved / "r.db")
    line = _mean_line(figure, "mean kd")
    assert list(line.get_xdata()) == [1, 5] and list(line.get_ydata()) == pytest.approx([30.0, 10.0])
    assert "mean of 3 corruptions" in figure.axes[1].get_ylabel()


def test_students_of_two_teachers_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    _result(tmp_path, db, method="kd", seed=0, suite="certified", write=_certify([0.3], [1]))
    _result(tmp_path, db, method="kd", seed=0, suite="certified", write=_certify([0.3], [1]), teacher="u" * 64)
    assert figures.main(["--db", str(db), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "students of 2 teachers" in err and err.count("\n") == 1 and not (tmp_path / "out").exists()
