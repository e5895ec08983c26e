"""Suite files: a packaged suite by name (``clean``, ``quick/adversarial``) or any ``.toml`` path.

Named suites are package data (``robustkd/evaluate/suites_data/``, read through ``importlib.resources``);
a name never resolves to a file in the current directory, and an argument ending in ``.toml`` is always
read as a file. ``eval_suites/`` at the top of the repository is a byte-identical, user-facing copy of
the packaged files (tests/test_suite_packaging.py fails on any drift).

Each suite declares its parameters as a dataclass; a file with an unknown key, a missing ``suite`` or a
wrong type is refused with a one-line message. A path-valued key (``_path_field``) that is relative is
resolved against the suite file's folder. The file's sha256 is recorded with every result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS, SEVERITIES
from robustkd.errors import RobustKDError
from robustkd.registry import Registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_PACKAGE = "robustkd.evaluate"
SUITES_DATA = "suites_data"  # the packaged suite files, a folder of SUITES_PACKAGE


def _path_field(reserved: tuple[str, ...] = ()) -> Any:
    """A str parameter naming a file or folder ("" for none; ``reserved`` words are names, not paths)."""
    return dataclasses.field(default="", metadata={"path": True, "reserved": reserved})


@dataclass(frozen=True)
class CleanParams:
    batch_size: int = 500


@dataclass(frozen=True)
class CalibrationParams:
    batch_size: int = 500
    n_bins: int = 15
    holdout: int = 5000


@dataclass(frozen=True)
class CertifiedParams:
    sigma: float = 0.25
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    batch_size: int = 1000
    skip: int = 1
    max: int = -1
    seed: int = 0
    predict_n: int = 1000
    noise_chunk: int = 256
    fold_batchnorm: bool = True
    autocast: str = "none"


@dataclass(frozen=True)
class CorruptionParams:
    batch_size: int = 500
    source: str = "auto"
    official_dir: str = _path_field()
    corruptions: tuple[str, ...] = BENCHMARK_CORRUPTIONS
    severities: tuple[int, ...] = SEVERITIES
    seed: int = 0
    n_bins: int = 15
    reference: str = _path_field(reserved=("alexnet",))


@dataclass(frozen=True)
class AdversarialParams:
    batch_size: int = 200
    attacks: tuple[str, ...] = ("fgsm", "pgd_linf", "pgd_l2", "cw_l2", "autoattack", "foolbox_pgd_linf", "deepfool_l2")
    linf_eps_255: float = 8.0
    linf_step_255: float = 2.0
    pgd_steps: int = 20
    random_start: bool = True
    l2_eps: float = 0.5
    l2_step: float = 0.1
    cw_c: float = 1.0
    cw_kappa: float = 0.0
    cw_steps: int = 100
    cw_lr: float = 0.01
    autoattack_versions: tuple[str, ...] = ("standard",)
    deepfool_steps: int = 50
    deepfool_candidates: int = 10
    deepfool_overshoot: float = 0.02
    eps_curve_255: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    masking_examples: int = 100
    square_queries: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class RelationsParams:
    batch_size: int = 500


SUITE_PARAMS: Registry[type] = Registry("suite")
SUITE_PARAMS.add("clean", CleanParams)
SUITE_PARAMS.add("calibration", CalibrationParams)
SUITE_PARAMS.add("certified", CertifiedParams)
SUITE_PARAMS.add("corruption", CorruptionParams)
SUITE_PARAMS.add("adversarial", AdversarialParams)
SUITE_PARAMS.add("relations", RelationsParams)


@dataclass(frozen=True)
class SuiteFile:
    name: str
    params: Any
    path: Path
    sha256: str


def packaged_suite_names() -> list[str]:
    """Names of the packaged suite files: ``clean``, ..., ``paper_certified``, ``quick/adversarial``, ..."""
    root = resources.files(SUITES_PACKAGE).joinpath(SUITES_DATA)
    if not root.is_dir():
        return []
    names = [entry.name[:-5] for entry in root.iterdir() if entry.is_file() and entry.name.endswith(".toml")]
    for folder in (entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("__")):
        names += [f"{folder.name}/{entry.name[:-5]}" for entry in folder.iterdir()
                  if entry.is_file() and entry.name.endswith(".toml")]
    return sorted(names)


def read_suite_bytes(name_or_path: str) -> tuple[Path, bytes]:
    """(path, bytes) of a suite: an argument ending in ``.toml`` is a file; anything else a packaged name.

    A name is looked up only among the packaged files, never in the current directory.
    """
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        if not candidate.is_file():
            raise RobustKDError(f"--suite: no file {candidate}")
        return candidate, candidate.read_bytes()
    known = packaged_suite_names()
    if name_or_path in known:
        resource = resources.files(SUITES_PACKAGE).joinpath(SUITES_DATA)
        for part in f"{name_or_path}.toml".split("/"):
            resource = resource.joinpath(part)
        return Path(str(resource)), resource.read_bytes()
    if name_or_path in SUITE_PARAMS.names():
        raise RobustKDError(f"--suite {name_or_path}: its packaged suite file {SUITES_DATA}/{name_or_path}.toml is missing "
                            "from the installed robustkd; reinstall the package")
    variants = [name for name in known if name not in SUITE_PARAMS.names()]
    raise RobustKDError(f"--suite: unknown suite {name_or_path!r}; expected one of: {', '.join(SUITE_PARAMS.names())}, "
                        f"all, a packaged variant ({', '.join(variants) or 'none installed'}), "
                        "or a path to a .toml suite file")


def load_suite(name_or_path: str) -> SuiteFile:
    """The validated suite named by ``name_or_path`` (see ``read_suite_bytes``); bad files -> RobustKDError."""
    path, data = read_suite_bytes(name_or_path)
    try:
        values = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RobustKDError(f"suite file {path} does not parse ({str(exc).splitlines()[0]})") from None
    name = values.pop("suite", None)
    if not isinstance(name, str):
        raise RobustKDError(f"suite file {path} must name its suite: suite = \"{'|'.join(SUITE_PARAMS.names())}\"")
    params_cls = SUITE_PARAMS.get(name)
    fields = {field.name: field for field in dataclasses.fields(params_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RobustKDError(f"suite file {path}: unknown key(s) {', '.join(unknown)}; the {name} suite takes: "
                            f"{', '.join(fields) or 'no parameters'}")
    for key, value in list(values.items()):
        values[key] = _relative_to(path, _checked_value(path, key, value, fields[key].default), fields[key])
    return SuiteFile(SUITE_PARAMS.canonical(name), params_cls(**values), path, hashlib.sha256(data).hexdigest())


def _relative_to(path: Path, value: Any, field: dataclasses.Field) -> Any:
    """A path-valued key's relative value resolved against the suite file's folder; other values unchanged."""
    if not field.metadata.get("path") or not value or value in field.metadata["reserved"]:
        return value
    return value if Path(value).is_absolute() else str(path.resolve().parent / value)


def _checked_value(path: Path, key: str, value: Any, default: Any) -> Any:
    """``value`` if it has the default's type (a TOML array for a tuple, of the same element type)."""
    if isinstance(default, tuple):
        element = type(default[0]) if default else str
        if not isinstance(value, list) or not all(isinstance(v, element) and not isinstance(v, bool) for v in value):
            raise RobustKDError(f"suite file {path}: {key} = {value!r}; expected an array of {element.__name__}")
        return tuple(value)
    expected = type(default)
    if isinstance(value, int) and expected is float and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
        raise RobustKDError(f"suite file {path}: {key} = {value!r}; expected a {expected.__name__}")
    return value
