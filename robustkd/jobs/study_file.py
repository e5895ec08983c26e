"""A study file: teachers, cohorts, evaluations, comparisons and outputs, declared in TOML (docs/studies.md).

``load_study(name_or_path)`` reads a packaged study (``quick``, ``paper``, ``cmkd``, ``smoke``; files in
``robustkd/studies/``) or any ``.toml`` path, and checks everything that can be checked without data:
unknown keys, types, names referring to each other (a cohort's teacher, an evaluation's models), suite
files, method specs, comparison pairs. Paths in the file are relative to the current directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError
from robustkd.utils.seeding import MAX_SEED

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STUDIES_PACKAGE = "robustkd.studies"
MAX_STUDY_BYTES = 1 << 20


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher: a ``checkpoint`` to use, and/or a ``train`` table (TrainConfig keys; ``init_from`` may name
    another teacher of the study) trained into ``<runs>/<folder>`` when the checkpoint cannot be used (it is
    missing, or the study's data is the embedded subset rather than the real set)."""

    name: str
    checkpoint: str | None
    train: dict[str, Any] | None
    folder: str


@dataclass(frozen=True)
class CohortSpec:
    """Students x methods x seeds distilled from one teacher in one process (``robustkd distill`` cohort)."""

    name: str
    teacher: str
    students: list[str]
    methods: list[str]
    seeds: list[int]
    recipe: dict[str, Any]
    method_options: dict[str, Any]
    folder: str


@dataclass(frozen=True)
class EvaluationSpec:
    """Suites run on models: teacher names and cohort names (every member, seed by seed)."""

    models: list[str]
    suites: list[str]
    n_examples: int | None


@dataclass(frozen=True)
class ComparisonSpec:
    """A paired comparison written to ``<results>/<name>.md`` (and ``<name>.png`` with ``plot``)."""

    name: str
    pairs: list[str]
    metrics: list[str]
    plot: bool
    interval: str = "seeds"
    holm: bool = False


@dataclass(frozen=True)
class OutputsSpec:
    leaderboard: list[str] = field(default_factory=lambda: ["csv", "md"])
    corruption_grid: bool = True
    report: bool = True
    curves: bool = False


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    path: Path
    sha256: str
    dataset: str
    allow_embedded: bool
    runs: str
    results: str
    teachers: dict[str, TeacherSpec]
    cohorts: list[CohortSpec]
    evaluations: list[EvaluationSpec]
    comparisons: list[ComparisonSpec]
    question: Any  # robustkd.results.question.Question: the verdict pairs, the reference method, the order
    outputs: OutputsSpec

    def cohort(self, name: str) -> CohortSpec:
        return next(cohort for cohort in self.cohorts if cohort.name == name)


def packaged_study_names() -> list[str]:
    root = resources.files(STUDIES_PACKAGE)
    return sorted(entry.name[:-5] for entry in root.iterdir() if entry.is_file() and entry.name.endswith(".toml"))


def load_study(name_or_path: str | Path) -> Study:
    """The study of a packaged name or a ``.toml`` path, checked (RobustKDError naming the file and key)."""
    text = str(name_or_path)
    if text.endswith(".toml"):
        path = Path(text)
        if not path.is_file():
            raise RobustKDError(f"study: no file {path}")
        if path.stat().st_size > MAX_STUDY_BYTES:
            raise RobustKDError(f"study: {path} is larger than {MAX_STUDY_BYTES} bytes; a study file is a few KiB")
        data = path.read_bytes()
    else:
        if text not in packaged_study_names():
            raise RobustKDError(f"study: {text!r} is not a packaged study ({', '.join(packaged_study_names())}) "
                                "nor a path ending in .toml")
        entry = resources.files(STUDIES_PACKAGE).joinpath(f"{text}.toml")
        path, data = Path(str(entry)), entry.read_bytes()
    try:
        content = tomllib.loads(data.decode("utf-8"))
    except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise RobustKDError(f"study: {path} does not parse ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise RobustKDError(f"study: {path} nests its values too deeply for a study file") from None
    return _parse(content, path, hashlib.sha256(data).hexdigest())


class _Reader:
    """Typed access to one table of the file, with messages naming the file and the key."""

    def __init__(self, table: Any, where: str) -> None:
        if not isinstance(table, dict):
            raise RobustKDError(f"{where}: expected a table, got {type(table).__name__}")
        self.table, self.where, self.used = table, where, set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = dataclasses.MISSING) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is dataclasses.MISSING:
                raise RobustKDError(f"{self.where}: '{key}' is required")
            return default
        value = self.table[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            names = " or ".join(k.__name__ for k in _as_tuple(kind))
            raise RobustKDError(f"{self.where}: '{key}' must be {names}, got {type(value).__name__}")
        return value

    def strings(self, key: str, default: Any = dataclasses.MISSING) -> list[str]:
        values = self.get(key, list, default)
        if any(not isinstance(v, str) or not v.strip() for v in values):
            raise RobustKDError(f"{self.where}: '{key}' must be a list of non-empty strings")
        return list(values)

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise RobustKDError(f"{self.where}: unknown key(s) {', '.join(unknown)}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _parse(content: dict[str, Any], path: Path, sha256: str) -> Study:
    from robustkd.results.question import Question

    top = _Reader(content, f"study {path}")
    name = top.get("name", str, path.stem)
    teachers = {}
    for teacher_name, table in top.get("teachers", dict).items():
        reader = _Reader(table, f"study {path}: [teachers.{teacher_name}]")
        spec = TeacherSpec(teacher_name, reader.get("checkpoint", str, None), reader.get("train", dict, None),
                           reader.get("folder", str, f"teacher-{teacher_name}"))
        reader.done()
        if spec.train is not None:
            if "dataset" in spec.train:
                raise RobustKDError(f"study {path}: [teachers.{teacher_name}] train sets 'dataset'; the dataset is "
                                    "the study's")
            _check_config_keys(spec.train, "TrainRunConfig", f"study {path}: [teachers.{teacher_name}] train")
        if spec.checkpoint is None and spec.train is None:
            raise RobustKDError(f"study {path}: [teachers.{teacher_name}] needs a checkpoint, a train table or both")
        teachers[teacher_name] = spec
    if not teachers:
        raise RobustKDError(f"study {path}: no [teachers.NAME] table")
    cohorts = [_cohort(table, path, index, teachers) for index, table in enumerate(top.get("cohorts", list, []))]
    _unique([c.name for c in cohorts] + list(teachers), f"study {path}: teacher and cohort names")
    _unique([c.folder for c in cohorts] + [t.folder for t in teachers.values() if t.train], f"study {path}: run folders")
    _check_folders([(f"cohort {c.name}", c.folder) for c in cohorts]
                   + [(f"[teachers.{t.name}]", t.folder) for t in teachers.values() if t.train], path)
    models = set(teachers) | {c.name for c in cohorts}
    evaluations = [_evaluation(table, path, index, models) for index, table in enumerate(top.get("evaluations", list, []))]
    comparisons = [_comparison(table, path, index) for index, table in enumerate(top.get("comparisons", list, []))]
    _unique([c.name for c in comparisons], f"study {path}: comparison names")
    outputs_reader = _Reader(top.get("outputs", dict, {}), f"study {path}: [outputs]")
    outputs = OutputsSpec(outputs_reader.strings("leaderboard", ["csv", "md"]),
                          outputs_reader.get("corruption_grid", bool, True), outputs_reader.get("report", bool, True),
                          outputs_reader.get("curves", bool, False))
    outputs_reader.done()
    for fmt in outputs.leaderboard:
        if fmt not in ("csv", "json", "md", "html"):
            raise RobustKDError(f"study {path}: [outputs] leaderboard format {fmt!r}; expected csv, json, md or html")
    for teacher in teachers.values():
        parent = (teacher.train or {}).get("init_from")
        if isinstance(parent, str) and parent == teacher.name:
            raise RobustKDError(f"study {path}: teacher {teacher.name} cannot start from itself")
    study = Study(name=name, description=top.get("description", str, ""), path=path, sha256=sha256,
                  dataset=top.get("dataset", str, "cifar100"), allow_embedded=top.get("allow_embedded", bool, False),
                  runs=top.get("runs", str, f"runs/{name}"), results=top.get("results", str, f"results/{name}"),
                  teachers=teachers, cohorts=cohorts, evaluations=evaluations, comparisons=comparisons,
                  question=Question.from_mapping(top.get("question", dict, {}), where=f"study {path}: [question]"),
                  outputs=outputs)
    top.done()
    return study


def _check_config_keys(table: dict[str, Any], config: str, where: str) -> None:
    """Keys and values of a training table, checked as a config file's would be (types, ranges), now rather
    than when its stage starts. ``init_from`` naming another teacher is resolved later."""
    from robustkd.distill.command import DistillConfig
    from robustkd.train.command import TrainRunConfig
    from robustkd.train.config import resolve_config

    config_cls = {"TrainRunConfig": TrainRunConfig, "DistillConfig": DistillConfig}[config]
    values = {key: value for key, value in table.items() if key != "init_from"}
    try:
        resolve_config(config_cls, values, {"teacher": "checked later"} if config == "DistillConfig" else {})
    except RobustKDError as exc:
        raise RobustKDError(f"{where}: {exc}") from None


def _check_folders(folders: list[tuple[str, str]], path: Path) -> None:
    """Run folders lie inside the runs folder, one run each: relative, no empty, '.' or '..' part, none inside
    another (a folder '' or '.' was the runs folder itself; '../x' escaped it)."""
    for where, folder in folders:
        parts = folder.replace("\\", "/").split("/")
        if Path(folder).is_absolute() or any(part in ("", ".", "..") for part in parts):
            raise RobustKDError(f"study {path}: {where}: folder {folder!r} must be a relative path inside the runs "
                                "folder, without empty, '.' or '..' parts")
    for where, folder in folders:
        for other_where, other in folders:
            if folder.replace("\\", "/").startswith(other.replace("\\", "/") + "/"):
                raise RobustKDError(f"study {path}: {where}: folder {folder!r} is inside {other_where}'s folder "
                                    f"{other!r}; a run folder holds one run")


def _unique(names: list[str], what: str) -> None:
    seen = [n for i, n in enumerate(names) if n in names[:i]]
    if seen:
        raise RobustKDError(f"{what}: {seen[0]!r} is used twice")


def _cohort(table: Any, path: Path, index: int, teachers: dict[str, TeacherSpec]) -> CohortSpec:
    from robustkd.distill.cohort_spec import cohort_members

    reader = _Reader(table, f"study {path}: [[cohorts]] #{index + 1}")
    name = reader.get("name", str)
    reader.where = f"study {path}: cohort {name}"
    teacher = reader.get("teacher", str, "teacher")
    if teacher not in teachers:
        raise RobustKDError(f"{reader.where}: teacher {teacher!r} is not a teacher of the study ({', '.join(teachers)})")
    seeds = reader.get("seeds", list, [0])
    if any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED for s in seeds) \
            or len(set(seeds)) != len(seeds) or not seeds:
        raise RobustKDError(f"{reader.where}: 'seeds' must be distinct non-negative integers (at most 2^63 - 1), got {seeds!r}")
    spec = CohortSpec(name, teacher, reader.strings("students"), reader.strings("methods"), list(seeds),
                      reader.get("recipe", dict, {}), reader.get("method_options", dict, {}),
                      reader.get("folder", str, name))
    reader.done()
    for key in ("model", "teacher", "method", "method_options", "seed", "dataset"):
        if key in spec.recipe:
            raise RobustKDError(f"{reader.where}: recipe sets {key!r}; a cohort names it in its own keys "
                                "(the dataset is the study's)")
    _check_config_keys(spec.recipe, "DistillConfig", f"{reader.where}: recipe")
    try:  # the method specs and option values, checked now rather than after the teachers trained
        cohort_members(",".join(spec.methods), ",".join(spec.students), spec.seeds, spec.method_options)
    except RobustKDError as exc:
        raise RobustKDError(f"{reader.where}: {exc}") from None
    return spec


def _evaluation(table: Any, path: Path, index: int, models: set[str]) -> EvaluationSpec:
    from robustkd.evaluate.suite_file import load_suite

    reader = _Reader(table, f"study {path}: [[evaluations]] #{index + 1}")
    spec = EvaluationSpec(reader.strings("models"), reader.strings("suites"), reader.get("n_examples", int, None))
    reader.done()
    for model in spec.models:
        if model not in models:
            raise RobustKDError(f"{reader.where}: {model!r} is neither a teacher nor a cohort of the study")
    if spec.n_examples is not None and spec.n_examples < 1:
        raise RobustKDError(f"{reader.where}: 'n_examples' must be a positive integer")
    for suite in spec.suites:
        try:
            load_suite(suite)
        except RobustKDError as exc:
            raise RobustKDError(f"{reader.where}: {exc}") from None
    return spec


def _comparison(table: Any, path: Path, index: int) -> ComparisonSpec:
    from robustkd.results.question import parse_pair

    reader = _Reader(table, f"study {path}: [[comparisons]] #{index + 1}")
    spec = ComparisonSpec(reader.get("name", str), reader.strings("pairs", []), reader.strings("metrics", []),
                          reader.get("plot", bool, False), reader.get("interval", str, "seeds"),
                          reader.get("holm", bool, False))
    reader.done()
    from robustkd.results.paired import INTERVALS

    if spec.interval not in INTERVALS:
        raise RobustKDError(f"{reader.where}: interval {spec.interval!r}; expected one of: {', '.join(INTERVALS)}")
    if not spec.name.replace("_", "").replace("-", "").isalnum():
        raise RobustKDError(f"{reader.where}: name {spec.name!r} must be letters, digits, '-' and '_' (a file name)")
    for pair in spec.pairs:
        parse_pair(pair, where=reader.where + ": pair")
    from robustkd.results.leaderboard import leaderboard_columns

    known = {column.name for column in leaderboard_columns()}
    unknown = [metric for metric in spec.metrics if metric not in known and not metric.startswith("certified_acc_r")]
    if unknown:
        raise RobustKDError(f"{reader.where}: unknown metric {unknown[0]!r}; expected leaderboard columns such as "
                            f"{', '.join(sorted(known)[:6])}, ...")
    return spec
