"""The result summary (``summary.json``): one typed record per (checkpoint, suite) result folder.

RobustBench's ``ModelInfo`` fields where they exist (name, architecture, dataset, clean_acc), extended with
the suite, its metrics and units, the protocol (suite parameters and what the suite recorded), the images
evaluated (``n_examples``, ``subset``, and ``counts`` where a metric family used fewer), the model's
provenance (checkpoint sha256, method, teacher, training configuration, cohort) and the environment.
Written as strict JSON (no NaN or inf: a non-finite metric is refused before anything is written); read
back with type checks, so a broken or hand-edited file is one clear error instead of a KeyError later.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError
from robustkd.utils.atomic import write_text_atomic
from robustkd.utils.field_types import check_field_types


@dataclass
class ResultSummary:
    name: str
    architecture: str | None
    dataset: str
    clean_acc: float
    suite: str
    metrics: dict[str, float]
    units: dict[str, str]
    protocol: dict[str, Any]
    n_examples: int
    subset: bool
    seed: int
    device: str
    package_versions: dict[str, str]
    checkpoint_sha256: str | None
    suite_file: str
    suite_sha256: str
    created: str
    method: str | None = None
    teacher_sha256: str | None = None
    method_options: dict[str, Any] | None = None
    kind: str | None = None
    training: dict[str, Any] | None = None
    cohort: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)  # added in robustkd 0.2 (absent in older files)
    threads: int | None = None  # CPU threads of the evaluating process; added in robustkd 0.2
    suite_params: dict[str, Any] | None = None  # the suite's parameters as run (the protocol may annotate
    # some keys with what the suite recorded, e.g. the corruption source actually used); added in robustkd 0.2
    selection: str = ""  # the named selection of test images ('' all, robustbench5000, every100); robustkd 0.3
    prefix: int | None = None  # with a selection: evaluated its first ``prefix`` images; robustkd 0.3
    processes: int | None = None  # shards whose work was merged into this result (None: one process); robustkd 0.3

    def __post_init__(self) -> None:
        check_field_types(self, f"summary of the {self.suite} result of {self.name}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, allow_nan=False) + "\n"

    def write(self, folder: Path) -> Path:
        target = folder / "summary.json"
        write_text_atomic(target, self.to_json())
        return target

    @classmethod
    def from_json(cls, path: Path) -> "ResultSummary":
        """Read and check ``path``; unreadable, malformed or mistyped files raise RobustKDError."""
        try:
            values = json.loads(path.read_text(), parse_constant=_refuse_constant)
        except OSError as exc:
            raise RobustKDError(f"results: cannot read {path} ({exc.strerror or exc})") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise RobustKDError(f"results: {path} is not valid JSON ({str(exc).splitlines()[0]})") from None
        except RecursionError:
            raise RobustKDError(f"results: {path} nests its JSON too deeply to be a result summary") from None
        if not isinstance(values, dict):
            raise RobustKDError(f"results: {path} must hold a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(values))
        if missing:
            raise RobustKDError(f"results: {path} lacks {', '.join(missing)} (not a robustkd result summary)")
        try:
            return cls(**{key: value for key, value in values.items() if key in known})
        except RobustKDError as exc:
            raise RobustKDError(f"results: {path}: {exc}") from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in strict JSON")
