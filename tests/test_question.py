"""The results layer asks the caller's question (robustkd/results/question.py): verdict pairs, the report's
reference method and the orientation of pairs; method labels from one module, no import circles."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustkd.errors import RobustKDError
from robustkd.results import store
from robustkd.results.method_labels import method_label, method_order, model_method_label
from robustkd.results.paired import compare
from robustkd.results.question import DEFAULT_QUESTION, Question
from robustkd.results.report import render_report

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "5" * 64
TOP1 = {"ce": [38.0, 38.5, 37.0], "kd": [40.0, 41.0, 39.5], "dist": [40.5, 40.8, 40.1], "cmkd": [42.0, 42.5, 41.8]}
ECE = {"ce": [0.15, 0.16, 0.14], "kd": [0.10, 0.12, 0.11], "dist": [0.09, 0.13, 0.10], "cmkd": [0.05, 0.06, 0.055]}


def _record(db: Path, root: Path, method: str, seed: int, suite: str, metrics: dict) -> None:
    checkpoint = f"{method}-{seed}".encode().hex().ljust(64, "0")
    folder = root / f"{method}-s{seed}-{suite}"
    folder.mkdir(parents=True)
    summary = {
        "name": f"resnet8-{method}-{seed}", "architecture": "resnet8", "dataset": "cifar100", "clean_acc": 40.0,
        "suite": suite, "metrics": metrics, "units": {}, "protocol": {}, "n_examples": 10000, "subset": False,
        "seed": seed, "device": "cpu", "package_versions": {}, "checkpoint_sha256": checkpoint,
        "suite_file": f"{suite}.toml", "suite_sha256": suite[0] * 64, "created": "2026-12-01T00:00:00+00:00",
        "method": method, "teacher_sha256": TEACHER, "method_options": None, "kind": "distill",
        "training": {"recipe": "quick", "epochs": 10}, "cohort": {"path": "runs/c", "member": method, "members": []},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    store.record_result(db, folder)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Four methods (ce, kd, dist, cmkd), three paired seeds each, on the clean and calibration suites."""
    root = tmp_path_factory.mktemp("question")
    db = root / "r.db"
    for method in TOP1:
        for seed in range(3):
            _record(db, root, method, seed, "clean", {"top1": TOP1[method][seed]})
            _record(db, root, method, seed, "calibration", {"ece": ECE[method][seed], "nll": 1.0, "brier": 0.5})
    return store.read_results(db)


def _section(page: str, heading: str) -> str:
    return page.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]


def _method_table(page: str) -> tuple[list[str], dict[str, list[str]]]:
    """The per-method comparison's headers and its rows by student (cells as HTML)."""
    section = _section(page, "Per-method comparison (same teacher)")
    headers = re.findall(r"<th>(.*?)</th>", section)
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section)]
    return headers, {cells[0]: cells for cells in rows if cells}


def _number(cell: str) -> float:
    return float(re.sub(r"<[^>]+>", "", cell))


def test_default_question_is_the_study_question(results: pd.DataFrame) -> None:
    assert DEFAULT_QUESTION == Question(pairs=[("cmkd", "kd"), ("cmkd", "dist"), ("dist", "kd")], reference="kd",
                                        order=["cmkd", "dist", "kd", "ce"])
    assert Question.from_mapping({}) == DEFAULT_QUESTION
    assert Question.from_mapping({"pairs": ["cmkd:kd", "cmkd:dist", "dist:kd"], "reference": "kd",
                                  "order": ["cmkd", "dist", "kd", "ce"]}) == DEFAULT_QUESTION
    comparison = compare(results)
    assert comparison.verdict_pairs == [("cmkd", "kd"), ("cmkd", "dist"), ("dist", "kd")]
    # The asked pairs first, then the others oriented cmkd, dist, kd, ce.
    assert comparison.pairs == [("cmkd", "kd"), ("cmkd", "dist"), ("dist", "kd"), ("cmkd", "ce"), ("dist", "ce"),
                                ("kd", "ce")]
    headers, _ = _method_table(render_report(results))
    assert "clean_acc Δkd" in headers and not any("Δdist" in h for h in headers)


def test_question_pairs_lead_compare_and_are_the_report_verdicts(results: pd.DataFrame) -> None:
    question = Question(pairs=[("kd", "ce")], reference="kd", order=DEFAULT_QUESTION.order)
    comparison = compare(results, question=question)
    assert comparison.verdict_pairs == [("kd", "ce")] and comparison.pairs[0] == ("kd", "ce")
    rows = comparison.rows[(comparison.rows["a"] == "kd") & (comparison.rows["b"] == "ce")
                           & (comparison.rows["metric"] == "clean_acc")]
    assert rows["differences"].iloc[0] == pytest.approx(list(np.subtract(TOP1["kd"], TOP1["ce"])))
    section = _section(render_report(results, question=question), "Paired comparison")
    verdict_headers = re.findall(r"<th>([^<]* vs [^<]*)</th>", section)
    assert verdict_headers == ["kd vs ce"]
    default = _section(render_report(results), "Paired comparison")
    assert re.findall(r"<th>([^<]* vs [^<]*)</th>", default) == ["cmkd vs kd", "cmkd vs dist", "dist vs kd"]
    # A pair asked against the default orientation is compared as asked: ce - cmkd, not cmkd - ce.
    flipped = compare(results, question=Question(pairs=[("ce", "cmkd")], reference=None, order=("cmkd", "ce")))
    pairs = set(zip(flipped.rows["a"], flipped.rows["b"]))
    assert ("ce", "cmkd") in pairs and ("cmkd", "ce") not in pairs and flipped.pairs[0] == ("ce", "cmkd")


def test_order_orients_every_pair(results: pd.DataFrame) -> None:
    default = compare(results, metrics=["clean_acc"])
    with_ce = default.rows[(default.rows["a"] == "ce") | (default.rows["b"] == "ce")]
    assert len(with_ce) == 3 and set(with_ce["b"]) == {"ce"}
    question = dataclasses.replace(DEFAULT_QUESTION, order=("ce", "cmkd", "dist", "kd"))
    comparison = compare(results, metrics=["clean_acc"], question=question)
    with_ce = comparison.rows[(comparison.rows["a"] == "ce") | (comparison.rows["b"] == "ce")]
    assert len(with_ce) == 3 and set(with_ce["a"]) == {"ce"}
    for row in with_ce.to_dict("records"):
        assert row["differences"] == pytest.approx(list(np.subtract(TOP1["ce"], TOP1[row["b"]])))
    # The asked pairs keep their orientation: ce first in order does not turn cmkd - kd around.
    assert comparison.pairs[:3] == [("cmkd", "kd"), ("cmkd", "dist"), ("dist", "kd")]
    # Labels not in order come after, by name; a variant before its method.
    ranked = Question(pairs=[], reference=None, order=["kd"])
    assert ranked.orient("ce", "kd") == ("kd", "ce") and ranked.orient("dist", "cmkd") == ("cmkd", "dist")
    assert ranked.orient("kd", "kd[kd_temperature=2]") == ("kd[kd_temperature=2]", "kd")


def test_reference_sets_the_report_deltas(results: pd.DataFrame) -> None:
    page = render_report(results, question=dataclasses.replace(DEFAULT_QUESTION, reference="dist"))
    headers, rows = _method_table(page)
    assert "clean_acc Δdist" in headers and "ece Δdist" in headers and not any("Δkd" in h for h in headers)
    top1, ece = headers.index("clean_acc Δdist"), headers.index("ece Δdist")
    assert set(rows) == {f"resnet8/{m}" for m in TOP1}
    for method in TOP1:
        cells = rows[f"resnet8/{method}"]
        assert _number(cells[top1]) == pytest.approx(np.mean(TOP1[method]) - np.mean(TOP1["dist"]), abs=6e-4)
        assert _number(cells[ece]) == pytest.approx(np.mean(ECE[method]) - np.mean(ECE["dist"]), abs=6e-4)
    assert "class='better'" in rows["resnet8/cmkd"][ece] and "class='worse'" in rows["resnet8/ce"][ece]
    headers, _ = _method_table(render_report(results, question=dataclasses.replace(DEFAULT_QUESTION, reference=None)))
    assert "clean_acc" in headers and not any("Δ" in h for h in headers)


@pytest.mark.parametrize(("mapping", "message"), [
    ({"pairs": ["kd:kd"]}, "compares kd with itself"),
    ({"pairs": [["kd", "kd"]]}, "pairs[0]: compares kd with itself"),
    ({"pairs": ["cmkd:kd", "cmkd"]}, "pairs[1] 'cmkd': expected A:B"),
    ({"pairs": [["cmkd", ""]]}, "pairs[0]: expected a method label"),
    ({"pairs": [["cmkd", 3]]}, "pairs[0]: expected a method label"),
    ({"pairs": [["cmkd", "kd", "ce"]]}, "pairs[0]: expected a pair"),
    ({"pairs": ["cmkd:kd", ["cmkd", "kd"]]}, "pairs[1]: cmkd:kd is given twice"),
    ({"pairs": ["cmkd:kd", "kd:cmkd"]}, "pairs[1]: kd:cmkd is cmkd:kd turned around"),
    ({"pairs": "cmkd:kd"}, "pairs: expected a list"),
    ({"reference": ""}, "reference: expected a method label"),
    ({"reference": ["kd"]}, "reference: expected a method label"),
    ({"order": ["kd", "ce", "kd"]}, "order[2]: kd is given twice"),
    ({"order": "cmkd,kd"}, "order: expected a list"),
    ({"refrence": "kd"}, "unknown key 'refrence'"),
])
def test_invalid_questions_are_one_line_errors(mapping: dict, message: str) -> None:
    with pytest.raises(RobustKDError) as caught:
        Question.from_mapping(mapping, where="study.toml [question]")
    text = str(caught.value)
    assert text.startswith("study.toml [question]") and message in text and "\n" not in text, text


def test_question_constructor_validates_and_is_frozen() -> None:
    with pytest.raises(RobustKDError, match=r"^question pairs\[0\]: compares cmkd with itself$"):
        Question(pairs=[("cmkd", "cmkd")], reference="kd", order=())
    with pytest.raises(RobustKDError, match=r"^question reference: expected a method label"):
        Question(pairs=(), reference=7, order=())  # type: ignore[arg-type]
    question = Question.from_mapping({"pairs": ["cmkd[cmkd_spearman=0.5]:cmkd", ["kd", "ce"]], "reference": None})
    assert question.pairs == (("cmkd[cmkd_spearman=0.5]", "cmkd"), ("kd", "ce")) and question.reference is None
    assert question.order == DEFAULT_QUESTION.order and hash(question) == hash(dataclasses.replace(question))
    with pytest.raises(dataclasses.FrozenInstanceError):
        question.reference = "kd"  # type: ignore[misc]


def test_method_labels() -> None:
    assert model_method_label("train", "kd", None) == "trained"
    assert model_method_label("distill", None, None) == "-" and model_method_label("", "", "null") == "-"
    assert model_method_label("distill", float("nan"), None) == "-"
    options = json.dumps({"kd_temperature": 2.0, "cmkd_spearman": 0.5})  # cmkd's option says nothing about kd
    assert model_method_label("distill", "kd", options) == method_label("kd", options) == "kd[kd_temperature=2]"
    assert method_label("fitnet", options) == "fitnet"  # unknown here: the bare method
    methods = pd.Series(["kd+spearman", "cmkd", "trained", "kd", None, "-", "cmkd[cmkd_spearman=0.5]", "ce", "kd"])
    assert method_order(methods) == ["ce", "kd", "cmkd", "cmkd[cmkd_spearman=0.5]", "kd+spearman"]


def test_leaderboard_does_not_import_paired() -> None:
    code = ("import sys, robustkd.results.leaderboard, robustkd.results.question\n"
            "print(sorted(m for m in sys.modules if m.startswith('robustkd.results.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(done.stdout)  # a list of module names
    assert "robustkd.results.leaderboard" in loaded and "robustkd.results.method_labels" in loaded
    assert "robustkd.results.paired" not in loaded and "robustkd.results.report" not in loaded


def _results_imports() -> dict[str, set[str]]:
    """Module -> the robustkd.results modules it imports anywhere in its source (top level or in a function)."""
    graph = {}
    for path in sorted((ROOT / "robustkd" / "results").glob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "robustkd.results":
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("robustkd.results."):
                found.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("robustkd.results.")}
        graph[path.stem] = found - {path.stem}
    return graph


def test_no_import_circle_in_results() -> None:
    graph = _results_imports()
    assert "paired" in graph["report"] and "leaderboard" in graph["paired"]  # the scan sees imports at all
    assert graph["method_labels"] == set() and graph["question"] == {"method_labels"}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for module in graph.get(start, set()) - seen:
            seen.add(module)
            if module == target or reaches(module, target, seen):
                return True
        return False

    circles = [module for module in graph if reaches(module, module, set())]
    assert circles == [], graph
