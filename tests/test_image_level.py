"""Image-level uncertainty (hierarchical bootstrap over seeds and test images) and Holm's adjustment, checked
against independent computations (the normal interval of a paired mean, a hand-worked Holm example), and the
comparison's verdict basis end to end on made-up result folders with per-image predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustkd.results import store
from robustkd.results.image_level import hierarchical_bootstrap, holm
from robustkd.results.paired import compare
from test_compare import fabricate


def test_one_seed_bootstrap_matches_the_normal_interval_of_a_paired_mean() -> None:
    generator = np.random.default_rng(1)
    images = 4000
    a = 100.0 * (generator.random((1, images)) < 0.62)
    b = 100.0 * (generator.random((1, images)) < 0.58)
    result = hierarchical_bootstrap(a, b, resamples=4000, seed=3)
    d = (a - b)[0]
    half = stats.norm.ppf(0.975) * d.std(ddof=1) / np.sqrt(images)
    assert result.mean == pytest.approx(d.mean())
    assert result.low == pytest.approx(d.mean() - half, abs=0.12 * half)
    assert result.high == pytest.approx(d.mean() + half, abs=0.12 * half)


def test_seed_variation_widens_the_interval_and_degenerate_cases() -> None:
    generator = np.random.default_rng(2)
    base = 100.0 * (generator.random((3, 500)) < 0.5)
    same_images = hierarchical_bootstrap(base + 0.0, base * 0.0 + base, resamples=500)
    assert (same_images.low, same_images.high, same_images.p_value) == (0.0, 0.0, 1.0)
    constant = hierarchical_bootstrap(np.full((3, 50), 60.0), np.full((3, 50), 55.0), resamples=200)
    assert (constant.low, constant.high, constant.p_value) == (5.0, 5.0, 0.0)
    # Seeds that disagree (one method ahead on one seed, behind on another) widen the interval over images alone.
    images_only = hierarchical_bootstrap(base[:1] + 10 * (generator.random((1, 500)) < 0.5), base[:1], resamples=1000)
    shifts = np.array([[30.0], [-20.0], [5.0]])
    both = hierarchical_bootstrap(base + shifts * (generator.random((3, 500)) < 0.5), base, resamples=1000)
    assert both.high - both.low > 3 * (images_only.high - images_only.low)
    with pytest.raises(ValueError, match="one shape"):
        hierarchical_bootstrap(np.zeros((2, 3)), np.zeros((2, 4)))


def test_holm_adjustment_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(adjusted[4])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0]) and list(holm([])) == []  # 2 x 0.8 capped at 1


def _with_predictions(folder: Path, correct: np.ndarray) -> Path:
    labels = np.arange(len(correct)) % 10
    predictions = np.where(correct, labels, (labels + 1) % 10)
    pd.DataFrame({"index": range(len(correct)), "label": labels, "prediction": predictions}).to_csv(
        folder / "predictions.csv", index=False)
    return folder


def test_compare_gives_image_level_intervals_and_says_which_interval_its_verdicts_use(tmp_path: Path) -> None:
    generator = np.random.default_rng(5)
    db = tmp_path / "r.db"
    images = 300
    for seed in range(3):
        for method, rate in (("cmkd", 0.55), ("kd", 0.50)):
            correct = generator.random(images) < rate
            folder = fabricate(tmp_path, method=method, seed=seed, suite="clean",
                               metrics={"top1": 100.0 * correct.mean(), "top5": 90.0})
            store.record_result(db, _with_predictions(folder, correct))
    results = store.read_results(db)
    seeds = compare(results, metrics=["clean_acc"], pairs=[("cmkd", "kd")])
    images_basis = compare(results, metrics=["clean_acc"], pairs=[("cmkd", "kd")], interval="images", family_wise=True)
    row, image_row = seeds.rows.iloc[0], images_basis.rows.iloc[0]
    assert row["verdict_basis"] == "seeds: t-interval, 95 %" and np.isnan(row["p_holm"])
    assert image_row["verdict_basis"] == "seeds and images: hierarchical bootstrap, 95 %, Holm over 1 tests"
    assert image_row["n_images"] == images and image_row["image_ci_low"] < row["mean_diff"] < image_row["image_ci_high"]
    # The same bootstrap on the folders' own files, stacked by seed, gives the row's interval.
    frames = {m: [pd.read_csv(f, index_col="index") for f in sorted(tmp_path.glob(f"{m}-s*-clean-*/predictions.csv"))]
              for m in ("cmkd", "kd")}
    scores = {m: np.stack([100.0 * f["prediction"].eq(f["label"]).to_numpy() for f in frames[m]]) for m in frames}
    expected = hierarchical_bootstrap(scores["cmkd"], scores["kd"])
    assert (image_row["image_ci_low"], image_row["image_ci_high"]) == pytest.approx((expected.low, expected.high))
    assert image_row["p_holm"] == pytest.approx(expected.p_value)
    # Both intervals side by side in the per-seed table, whichever decides the verdicts.
    from robustkd.results.compare_format import render_comparison

    shown = render_comparison(seeds, "md")
    assert "| CI over seeds and images |" in shown
    assert f"[{image_row['image_ci_low']:+.2f}, {image_row['image_ci_high']:+.2f}]" in shown


def test_holm_from_a_compare_markdown_matches_compare_holm_on_its_database(tmp_path: Path) -> None:
    """scripts/holm_from_compare.py (for v1 results kept only as Markdown) recovers compare --holm's p-values
    from the printed per-seed differences (rounded to the printed decimals, hence the tolerance)."""
    import importlib.util

    from robustkd.results.compare_format import render_comparison

    spec = importlib.util.spec_from_file_location("holm_from_compare", Path(__file__).resolve().parents[1] /
                                                  "scripts" / "holm_from_compare.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    generator = np.random.default_rng(11)
    db = tmp_path / "r.db"
    for seed in range(3):
        for method, shift in (("cmkd", 3.0), ("dist", 1.0), ("kd", 0.0)):
            top1 = 50.0 + shift + generator.normal(0.0, 1.0)
            store.record_result(db, fabricate(tmp_path, method=method, seed=seed, suite="clean",
                                              metrics={"top1": top1, "top5": 90.0}))
            store.record_result(db, fabricate(tmp_path, method=method, seed=seed, suite="calibration",
                                              metrics={"ece": 0.05 + 0.01 * shift + generator.normal(0.0, 0.002),
                                                       "nll": 2.0, "brier": 0.6}))
    pairs = [("cmkd", "kd"), ("cmkd", "dist"), ("dist", "kd")]
    comparison = compare(store.read_results(db), metrics=["clean_acc", "ece"], pairs=pairs, family_wise=True)
    table = script.holm_table(script.per_seed_rows(render_comparison(comparison, "md")))
    assert len(table) == 6 and table["family"].eq(6).all()
    expected = comparison.rows.set_index(["a", "b", "metric"])
    for row in table.itertuples():
        a, b = row.pair.split(" − ")
        reference = expected.loc[(a, b, row.metric)]
        assert row.p_value == pytest.approx(reference["p_value"], rel=0.05, abs=1e-4)
        assert row.p_holm == pytest.approx(reference["p_holm"], rel=0.05, abs=1e-4)
