"""``robustkd suites [NAME]``: the registered suites with their declarations, read from the contract.

The parameters' defaults and ranges live in each suite's params dataclass only; this prints them, so
suite files can hold just the overrides.
"""

from __future__ import annotations

import dataclasses

from robustkd.evaluate.suite import Suite, suite_class, suites_in_order
from robustkd.evaluate.suite_params import Range


def describe_suites(name: str | None = None) -> str:
    """One paragraph per suite (or only ``name``): purpose, parameters, metrics, plots, resume rules, needs."""
    classes = [suite_class(name)] if name else suites_in_order()
    return "\n\n".join(_describe(cls) for cls in classes) + "\n"


def _describe(cls: type[Suite]) -> str:
    lines = [f"{cls.name}: {(cls.__doc__ or '').strip()}"]
    if cls.needs:
        lines.append(f"  needs: {', '.join(sorted(need.value for need in cls.needs))}")
    lines.append(f"  resumable: {'yes (keeps finished items when only ' + ', '.join(sorted(cls.extends)) + ' change)' if cls.resumable else 'no'}")
    lines.append("  parameters (default; accepted):")
    for field in dataclasses.fields(cls.params):
        lines.append(f"    {field.name} = {_toml(field.default)}  ({_contract(field)})")
    lines.append("  metrics (unit; better; leaderboard column):")
    for metric in cls.metrics:
        better = {True: "higher", False: "lower", None: "-"}[metric.higher_is_better]
        column = f"; column {metric.column}" if metric.column else ""
        lines.append(f"    {metric.key}  ({metric.unit}; {better}{column})")
    if cls.plots:
        lines.append(f"  plots: {', '.join(plot.file for plot in cls.plots)}")
    return "\n".join(lines)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)


def _contract(field: dataclasses.Field) -> str:
    bounds: Range = field.metadata.get("range", Range())
    parts = []
    if field.metadata.get("choices"):
        parts.append("one of " + ", ".join(map(str, field.metadata["choices"])))
    if isinstance(field.default, (int, float)) and not isinstance(field.default, bool) or isinstance(field.default, tuple):
        if bounds.low is not None or bounds.high is not None:
            parts.append(bounds.describe())
    if field.metadata.get("nonempty"):
        parts.append("non-empty")
    if field.metadata.get("path"):
        parts.append("a path, relative to the suite file" + (f", or {', '.join(field.metadata['reserved'])}"
                                                             if field.metadata.get("reserved") else ""))
    return "; ".join(parts) or type(field.default).__name__
