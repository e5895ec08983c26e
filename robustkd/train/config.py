"""Training configuration: recipe presets, a TOML/YAML config file, then command-line overrides.

Precedence (later wins): the dataclass defaults < the recipe's values < the config file < explicit flags.
The resolved config is saved with the run as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustkd.errors import RobustKDError
from robustkd.registry import Registry
from robustkd.utils.field_types import check_field_types
from robustkd.utils.seeding import MAX_SEED
from robustkd.utils.short_repr import short_repr

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Small-lr architectures of the standard protocol (CRD / mdistiller): lr 0.01 instead of 0.05 at batch 64.
SMALL_LR_MODELS = ("MobileNetV2", "ShuffleV1", "ShuffleV2")


@dataclass
class TrainConfig:
    """Every knob of a training run; units: lr per step, epochs counted from 1, noise_sd in [0, 1] pixels."""

    model: str = "resnet20"
    dataset: str = "cifar100"
    recipe: str = "quick"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [5, 8])
    lr_decay: float = 0.1
    seed: int = 0
    noise_sd: float = 0.0
    deterministic: bool = False
    device: str = "auto"
    channels_last: bool = True
    amp: str = "none"
    compile: bool = False
    train_limit: int | None = None
    holdout: int = 0
    test_limit: int | None = None
    eval_every: int = 1

    def validate(self) -> TrainConfig:
        from robustkd.data.sources import check_dataset_name
        from robustkd.models import canonical_model_name

        def bad(name: str, expected: str) -> RobustKDError:
            return RobustKDError(f"config: {name}={short_repr(getattr(self, name))}; expected {expected}")

        check_field_types(self, "config")
        canonical_model_name(self.model)  # unknown names fail here, before any run directory exists
        check_dataset_name(self.dataset)

        for name in ("epochs", "batch_size", "eval_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "a positive integer")
        if not self.lr > 0:
            raise bad("lr", "a positive number")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", "a number in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "a non-negative number")
        if self.noise_sd < 0:
            raise bad("noise_sd", "a non-negative number")
        if not self.lr_decay > 0:
            raise bad("lr_decay", "a positive number (the factor applied to lr at each milestone)")
        if self.seed < 0:
            raise bad("seed", "a non-negative integer")
        if self.seed > MAX_SEED:
            raise bad("seed", f"a non-negative integer of at most {MAX_SEED} (2^63 - 1)")
        if self.amp not in ("none", "bf16", "fp16"):
            raise bad("amp", "one of none, bf16, fp16")
        if sorted(self.milestones) != list(self.milestones) or any(m < 1 for m in self.milestones):
            raise bad("milestones", "increasing positive epoch numbers")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise bad(name, "a positive integer or null")
        if not isinstance(self.holdout, int) or self.holdout < 0:
            raise bad("holdout", "a non-negative integer (training images held out of training, from the end)")
        if self.holdout and self.dataset == "imagenet":
            raise bad("holdout", "0 for imagenet (its training folder is ordered by class: the last images are whole "
                                 "classes); calibration's default cross-fit on the test images needs no holdout")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Fields added after results were first recorded: a training record leaves them out at these defaults, so one
# training reads the same whether it was recorded before or after the field existed (groups and pairs stay whole).
LATER_FIELD_DEFAULTS: dict[str, Any] = {"holdout": 0}


def without_later_defaults(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without the ``LATER_FIELD_DEFAULTS`` fields that hold their default."""
    return {key: value for key, value in record.items()
            if not (key in LATER_FIELD_DEFAULTS and value == LATER_FIELD_DEFAULTS[key])}


RECIPES: Registry[dict[str, Any]] = Registry("recipe")
RECIPES.add("paper", {"epochs": 240, "batch_size": 64, "lr": 0.05, "milestones": [150, 180, 210]})
# quick: a few CPU-minutes per epoch for the small CIFAR models; the same step-decay shape, compressed.
RECIPES.add("quick", {"epochs": 10, "batch_size": 128, "lr": 0.1, "milestones": [5, 8]})


def recipe_values(recipe: str, model: str) -> dict[str, Any]:
    """The recipe's settings for ``model`` (small-lr models get a fifth of the recipe's lr)."""
    values = dict(RECIPES.get(recipe))
    values["recipe"] = RECIPES.canonical(recipe)
    if model.lower() in (name.lower() for name in SMALL_LR_MODELS):
        values["lr"] = values["lr"] / 5
    return values


def read_config_file(path: Path) -> dict[str, Any]:
    """A flat mapping of config keys from a ``.toml``, ``.yaml`` or ``.yml`` file."""
    path = Path(path)
    if not path.is_file():
        raise RobustKDError(f"--config: no file {path}")
    check_config_size(path)
    try:
        if path.suffix == ".toml":
            content = tomllib.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            content = yaml.safe_load(path.read_text()) or {}
        else:
            raise RobustKDError(f"--config: {path} must end in .toml, .yaml or .yml")
    except (ValueError, yaml.YAMLError) as exc:  # ValueError: TOMLDecodeError, not UTF-8, a 4300+ digit integer
        raise RobustKDError(f"--config: {path} does not parse ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise RobustKDError(f"--config: {path} nests its values too deeply for a config file") from None
    check_config_content(path, content)
    if not isinstance(content, dict):
        raise RobustKDError(f"--config: {path} must hold a mapping of keys to values")
    return content


MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; 1 MiB leaves room for comments
MAX_CONFIG_VALUES = 10_000  # every value counted, YAML aliases expanded
MAX_CONFIG_DEPTH = 32


def check_config_size(path: Path) -> None:
    """A config file of at most ``MAX_CONFIG_BYTES`` (read whole into memory)."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise RobustKDError(f"--config: {path} is {size} bytes; a config file is at most {MAX_CONFIG_BYTES} bytes")


def check_config_content(path: Path, content: Any) -> None:
    """At most ``MAX_CONFIG_VALUES`` values nested at most ``MAX_CONFIG_DEPTH`` deep, YAML aliases expanded
    (a 600-byte alias tree expands to billions of values: every later step, formatting an error message
    included, would walk all of them). Counted without expanding anything, stopping at the limit."""
    pending, count = [(content, 0)], 0
    while pending:
        value, depth = pending.pop()
        count += 1
        if count > MAX_CONFIG_VALUES or depth > MAX_CONFIG_DEPTH:
            raise RobustKDError(f"--config: {path} holds more than {MAX_CONFIG_VALUES} values or nests them more "
                                f"than {MAX_CONFIG_DEPTH} deep once its YAML aliases are expanded; a config file sets "
                                "a few flat keys")
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple)):
            pending.extend((item, depth + 1) for item in value)


def resolve_config(
    config_cls: type[TrainConfig], file_values: dict[str, Any], cli_values: dict[str, Any], model_key: str = "model"
) -> TrainConfig:
    """Merge defaults < recipe < file < CLI (CLI values of None mean 'not given') into a validated config."""
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise RobustKDError(f"config: unknown key(s) {', '.join(unknown)}; expected some of: {', '.join(sorted(known))}")
    given = {key: value for key, value in cli_values.items() if value is not None and key in known}
    merged_pre = {**file_values, **given}
    defaults = config_cls()
    recipe = merged_pre.get("recipe", defaults.recipe)
    model = merged_pre.get(model_key, getattr(defaults, model_key))
    for key, value in (("recipe", recipe), (model_key, model)):
        if not isinstance(value, str):
            raise RobustKDError(f"config: {key}={short_repr(value)}; expected a name (a string)")
    values = {**recipe_values(recipe, model), **merged_pre}
    try:
        config = dataclasses.replace(defaults, **values)
    except TypeError as exc:
        raise RobustKDError(f"config: {exc}") from None
    return config.validate()


def load_saved_config(config_cls: type[TrainConfig], path: Path) -> TrainConfig:
    values = json.loads(Path(path).read_text())
    known = {f.name for f in dataclasses.fields(config_cls)}
    return dataclasses.replace(config_cls(), **{k: v for k, v in values.items() if k in known}).validate()
