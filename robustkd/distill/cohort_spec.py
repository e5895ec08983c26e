"""Which students a cohort trains: methods x student architectures x seeds, parsed and checked.

``--method`` takes a comma-separated list of method specs. A spec is a method name as for a single student
(``kd``, ``kd+spearman``), optionally followed by option overrides for that member only, in brackets:
``cmkd[cmkd_spearman=0.5,cmkd_teacher_ranks=soft]`` (an ablation as cohort members on the same seeds).
``--student`` takes a comma-separated list of architectures, ``--seeds`` a comma-separated list of seeds.
Every combination is one member, named ``<student>-<method>[-<overrides>]-s<seed>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.errors import RobustKDError
from robustkd.models import canonical_model_name
from robustkd.utils.seeding import MAX_SEED


@dataclass(frozen=True)
class MemberSpec:
    """One cohort member: its student architecture, method name, seed and per-member option overrides."""

    student: str
    method: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        extra = "".join(f"-{key}={value}" for key, value in sorted(self.overrides.items()))
        return f"{self.student}-{self.method}{extra}-s{self.seed}"


def split_top_level(text: str) -> list[str]:
    """Split ``text`` at commas outside brackets: ``"kd,cmkd[a=1,b=2]"`` -> ``["kd", "cmkd[a=1,b=2]"]``."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise RobustKDError(f"--method {text!r}: a ']' without its '['")
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if depth != 0:
        raise RobustKDError(f"--method {text!r}: a '[' without its ']'")
    parts.append(current.strip())
    return parts


def _option_value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"cmkd[cmkd_spearman=0.5]"`` -> ``("cmkd", {"cmkd_spearman": 0.5})``."""
    if "[" not in spec:
        return spec.strip(), {}
    name, _, rest = spec.partition("[")
    if not rest.endswith("]") or not name.strip():
        raise RobustKDError(f"--method entry {spec!r}: expected METHOD or METHOD[option=value,...]")
    overrides: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest[:-1].split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise RobustKDError(f"--method entry {spec!r}: {item!r} is not option=value")
        if key.strip() in overrides:
            raise RobustKDError(f"--method entry {spec!r} sets {key.strip()} twice")
        overrides[key.strip()] = _option_value(value.strip())
    return name.strip(), overrides


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; seeds are distinct non-negative integers."""
    parts = [part.strip() for part in str(text).split(",")]
    if not parts or any(not part for part in parts):
        raise RobustKDError(f"--seeds {text!r}: expected comma-separated non-negative integers such as 0,1,2")
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        raise RobustKDError(f"--seeds {text!r}: expected comma-separated non-negative integers such as 0,1,2") from None
    if any(seed < 0 for seed in seeds):
        raise RobustKDError(f"--seeds {text!r}: seeds must be non-negative")
    if any(seed > MAX_SEED for seed in seeds):
        raise RobustKDError(f"--seeds {text!r}: seeds must be at most {MAX_SEED} (2^63 - 1)")
    if len(set(seeds)) != len(seeds):
        raise RobustKDError(f"--seeds {text!r} names a seed twice")
    return seeds


def cohort_members(methods: str, students: str, seeds: list[int], base_options: dict[str, Any]) -> list[MemberSpec]:
    """Every (student, method, seed) member, students and methods validated; duplicates refused."""
    if any(list(seeds).count(seed) > 1 for seed in seeds):  # parse_seeds refuses them on the command line
        raise RobustKDError(f"--seeds {list(seeds)!r} names a seed twice")
    method_specs = split_top_level(methods)
    student_names = [name.strip() for name in students.split(",")]
    if any(not spec for spec in method_specs):
        raise RobustKDError(f"--method {methods!r}: an empty entry; expected a comma-separated list such as ce,kd,dist,cmkd")
    if any(not name for name in student_names):
        raise RobustKDError(f"--student {students!r}: an empty entry; expected a comma-separated list of architectures")
    canonical_students = [canonical_model_name(name) for name in student_names]
    if len(set(canonical_students)) != len(canonical_students):
        raise RobustKDError(f"--student {students!r} names an architecture twice")
    parsed = []
    for spec in method_specs:
        name, overrides = parse_method_spec(spec)
        options = DistillOptions.from_mapping({**base_options, **overrides})
        parsed.append((parse_method(name, options).name, overrides))
    keys = [(name, tuple(sorted(overrides.items()))) for name, overrides in parsed]
    if len(set(keys)) != len(keys):
        duplicate = next(spec for spec, key in zip(method_specs, keys) if keys.count(key) > 1)
        raise RobustKDError(f"--method {methods!r} names {duplicate!r} twice")
    return [MemberSpec(student, name, seed, overrides)
            for seed in seeds for student in canonical_students for name, overrides in parsed]
