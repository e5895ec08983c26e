"""Relation fidelity: golden values against scipy, limiting cases, the suite from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from scipy import stats

from robustkd.cli import main
from robustkd.evaluate.relations import kendall_tau_b_rows, relation_fidelity, spearman_rows


def test_rank_correlations_match_scipy_with_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (20, 12), generator=generator).double()  # many ties
    b = torch.randn(20, 12, generator=generator, dtype=torch.float64)
    b[:, :3] = 0.5
    kendall = kendall_tau_b_rows(a, b, chunk=7)
    spearman = spearman_rows(a, b)
    for i in range(20):
        assert kendall[i].item() == pytest.approx(stats.kendalltau(a[i], b[i]).statistic, abs=1e-12)
        assert spearman[i].item() == pytest.approx(stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)


def test_identical_and_reversed_students() -> None:
    teacher = torch.randn(50, 10, generator=torch.Generator().manual_seed(1))
    same = relation_fidelity(teacher, teacher.clone()).summary()
    for name in ("pearson", "spearman", "kendall", "top5_overlap", "top1_agreement"):
        assert same[name] == pytest.approx(1.0)
    assert same["class_correlation_distance"] == pytest.approx(0.0, abs=1e-12)
    assert same["kl_teacher_student"] == pytest.approx(0.0, abs=1e-12)
    reversed_ = relation_fidelity(teacher, -teacher).summary()
    for name in ("pearson", "spearman", "kendall"):
        assert reversed_[name] == pytest.approx(-1.0)
    assert reversed_["top1_agreement"] == 0.0
    # Top-5 overlap by hand: teacher top-5 {0..4}, student top-5 {3..7} -> 2 shared.
    t = torch.arange(10, 0, -1).double().unsqueeze(0)
    s = torch.tensor([[0, 1, 2, 10, 9, 8, 7, 6, 5, 4]]).double()
    assert relation_fidelity(t, s).per_sample["top5_overlap"].item() == pytest.approx(2 / 5)


def test_relations_suite_from_the_cli(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "relations", "--out", str(tmp_path)]) == 2
    assert "the relations suite compares against a teacher; pass --teacher CKPT" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--teacher", str(checkpoint), "--suite", "relations",
                 "--out", str(tmp_path)]) == 0
    (folder,) = list(tmp_path.glob("*/relations"))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["metrics"]["pearson"] == pytest.approx(1.0) and summary["metrics"]["kendall"] == pytest.approx(1.0)
    assert summary["protocol"]["teacher_clean_acc"] == pytest.approx(summary["clean_acc"])
    assert (folder / "relation_fidelity.png").read_bytes()[:4] == b"\x89PNG"
    assert len((folder / "per_sample.csv").read_text().splitlines()) == 201
