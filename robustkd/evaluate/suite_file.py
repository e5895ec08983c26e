"""Suite files: a packaged suite by name (``clean``, ``quick/adversarial``) or any ``.toml`` path.

Named suites are package data (``robustkd/evaluate/suites_data/``, read through ``importlib.resources``);
a name never resolves to a file in the current directory, and an argument ending in ``.toml`` is always
read as a file. ``eval_suites/`` at the top of the repository is a byte-identical, user-facing copy of
the packaged files (tests/test_suite_packaging.py fails on any drift).

A file holds only overrides of the suite's parameters, whose defaults and ranges live in the suite's params
dataclass (``robustkd/evaluate/suites/<suite>.py``). A file with an unknown key, a missing ``suite``, a wrong
type or a value out of range is refused with a one-line message. A relative path-valued key is resolved
against the suite file's folder. The file's sha256 is recorded with every result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError
from robustkd.evaluate.suite import load_suites, suites_in_order
from robustkd.evaluate.suite_params import check_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_PACKAGE = "robustkd.evaluate"
SUITES_DATA = "suites_data"  # the packaged suite files, a folder of SUITES_PACKAGE


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

    A name is looked up only among the packaged files, never in the current directory; a registered suite
    without a packaged file runs with its defaults (path ``<NAME defaults>``).
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
    suite_names = [cls.name for cls in suites_in_order()]
    if name_or_path in suite_names:  # a registered suite without a packaged file: its defaults
        return Path(f"<{name_or_path} defaults>"), f'suite = "{name_or_path}"\n'.encode()
    variants = [name for name in known if name not in suite_names]
    raise RobustKDError(f"--suite: unknown suite {name_or_path!r}; expected one of: {', '.join(suite_names)}, "
                        f"all, a packaged variant ({', '.join(variants) or 'none installed'}), "
                        "or a path to a .toml suite file")


def load_suite(name_or_path: str) -> SuiteFile:
    """The validated suite named by ``name_or_path`` (see ``read_suite_bytes``); bad files -> RobustKDError."""
    path, data = read_suite_bytes(name_or_path)
    try:
        values = tomllib.loads(data.decode("utf-8"))
    except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise RobustKDError(f"suite file {path} does not parse ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise RobustKDError(f"suite file {path} nests its values too deeply for a suite file") from None
    name = values.pop("suite", None)
    registry = load_suites()
    if not isinstance(name, str):
        names = "|".join(cls.name for cls in suites_in_order())
        raise RobustKDError(f"suite file {path} must name its suite: suite = \"{names}\"")
    if name.lower() not in (known.lower() for known in registry.names()):
        raise RobustKDError(f"suite file {path}: unknown suite {name!r}; expected one of: "
                            f"{', '.join(cls.name for cls in suites_in_order())}")
    suite_cls = registry.get(name)
    params_cls = suite_cls.params
    fields = {field.name: field for field in dataclasses.fields(params_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RobustKDError(f"suite file {path}: unknown key(s) {', '.join(unknown)}; the {name} suite takes: "
                            f"{', '.join(fields) or 'no parameters'}")
    for key, value in list(values.items()):
        values[key] = _relative_to(path, check_value(f"suite file {path}", key, value, fields[key]), fields[key])
    params = params_cls(**values)
    suite_cls().check(params)
    return SuiteFile(suite_cls.name, params, path, hashlib.sha256(data).hexdigest())


def _relative_to(path: Path, value: Any, field: dataclasses.Field) -> Any:
    """A path-valued key's relative value resolved against the suite file's folder; other values unchanged."""
    if not field.metadata.get("path") or not value or value in field.metadata.get("reserved", ()):
        return value
    return value if Path(value).is_absolute() else str(path.resolve().parent / value)
