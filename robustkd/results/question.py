"""What a comparison asks: which method pairs get verdicts, which method the others are measured against,
and how a pair of methods is oriented when every pair is compared.

``DEFAULT_QUESTION`` is the study's question (docs/study.md) and the only place its methods are named:
the verdict pairs cmkd - kd, cmkd - dist, dist - kd; differences to kd in the report's per-method table;
pairs oriented cmkd, dist, kd, ce (the earlier method is "a" in "a - b"). Callers (``robustkd compare``,
``robustkd report``, a study file) pass another ``Question`` to ask something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from robustkd.errors import RobustKDError
from robustkd.results.method_labels import base_method, is_variant

Pair = tuple[str, str]
QUESTION_KEYS = ("pairs", "reference", "order")


def parse_pair(text: str, where: str = "--pair") -> Pair:
    """``"cmkd:kd"`` -> ("cmkd", "kd"); the colon outside brackets separates the two labels. RobustKDError
    (one line, starting with ``where``) for anything but two different non-empty labels."""
    depth, cut = 0, None
    for index, char in enumerate(text):
        depth += (char == "[") - (char == "]")
        if char == ":" and depth == 0:
            if cut is not None:
                cut = -1
                break
            cut = index
    if cut is None or cut < 0 or not text[:cut].strip() or not text[cut + 1:].strip():
        raise RobustKDError(f"{where} {text!r}: expected A:B, e.g. cmkd:kd or cmkd[cmkd_spearman=0.5]:cmkd")
    a, b = text[:cut].strip(), text[cut + 1:].strip()
    if a == b:
        raise RobustKDError(f"{where} {text!r}: compares {a} with itself")
    return a, b


def _label(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RobustKDError(f"{where}: expected a method label (a non-empty string), got {value!r}")
    if value != value.strip():
        raise RobustKDError(f"{where}: {value!r} has surrounding spaces")
    return value


@dataclass(frozen=True)
class Question:
    """``pairs``: the (a, b) method labels asked about, compared as a - b, in the order shown (the verdict
    tables, first in compare's output); ``reference``: the label the report's per-method table shows
    differences to (``Δkd``), None for no differences; ``order``: the orientation when every pair is
    compared: a label earlier in ``order`` (or whose method is) is "a", ablation variants before their
    method, labels not in ``order`` after, by name. A pair in ``pairs`` is always oriented as asked.

    Built from lists or tuples, stored as tuples. RobustKDError (one line) for a label that is not a
    non-empty string without surrounding spaces, a pair of a label with itself, a pair given twice (in
    either orientation), an order entry given twice.
    """

    pairs: tuple[Pair, ...]
    reference: str | None
    order: tuple[str, ...]

    def __post_init__(self) -> None:
        pairs, order = _validated(self.pairs, self.reference, self.order, "question")
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "order", order)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], where: str = "question") -> Question:
        """A question from a TOML/JSON table, e.g. ``{"pairs": ["cmkd:kd", "cmkd:dist"], "reference": "kd",
        "order": ["cmkd", "dist", "kd", "ce"]}``; a pair is "A:B" (``parse_pair``) or [A, B]. A key left out
        keeps ``DEFAULT_QUESTION``'s value; ``reference`` None means no differences. RobustKDError (one line,
        starting with ``where``, e.g. ``study.toml [question]``) for an unknown key or an invalid value."""
        if not isinstance(mapping, Mapping):
            raise RobustKDError(f"{where}: expected a table with keys {', '.join(QUESTION_KEYS)}, got {mapping!r}")
        unknown = sorted(set(mapping) - set(QUESTION_KEYS))
        if unknown:
            raise RobustKDError(f"{where}: unknown key {unknown[0]!r}; expected {', '.join(QUESTION_KEYS)}")
        pairs: object = DEFAULT_QUESTION.pairs
        if "pairs" in mapping:
            given = _items(mapping["pairs"], f"{where} pairs")
            pairs = [parse_pair(p, f"{where} pairs[{i}]") if isinstance(p, str) else p for i, p in enumerate(given)]
        reference = mapping.get("reference", DEFAULT_QUESTION.reference)
        order = mapping.get("order", DEFAULT_QUESTION.order)
        pairs, order = _validated(pairs, reference, order, where)  # the errors name ``where``
        return cls(pairs=pairs, reference=reference, order=order)  # type: ignore[arg-type]

    def rank(self, label: str) -> tuple[int, int, str]:
        """Sort key of a label: its (or its method's) place in ``order``, variants before their method."""
        position = len(self.order)
        if label in self.order:
            position = self.order.index(label)
        elif base_method(label) in self.order:
            position = self.order.index(base_method(label))
        return position, 0 if is_variant(label) else 1, label

    def orient(self, a: str, b: str) -> Pair:
        """(a, b) or (b, a): as in ``pairs`` when either is asked, else the lower ``rank`` first."""
        if (a, b) in self.pairs or (b, a) in self.pairs:
            return (a, b) if (a, b) in self.pairs else (b, a)
        return (a, b) if self.rank(a) <= self.rank(b) else (b, a)

    def pair_order(self, pair: Pair) -> tuple:
        """Sort key of a compared pair: the asked ``pairs`` first, in their order, then by rank."""
        asked = self.pairs.index(pair) if pair in self.pairs else len(self.pairs)
        return asked, self.rank(pair[0]), self.rank(pair[1])


def _items(value: object, where: str) -> list:
    """A list or tuple as a list; RobustKDError for a string or anything else."""
    if not isinstance(value, (list, tuple)):
        raise RobustKDError(f"{where}: expected a list, got {value!r}")
    return list(value)


def _validated(pairs: object, reference: object, order: object,
               where: str) -> tuple[tuple[Pair, ...], tuple[str, ...]]:
    """``pairs`` and ``order`` as tuples, checked; RobustKDError (one line, starting with ``where``)."""
    checked: list[Pair] = []
    for index, pair in enumerate(_items(pairs, f"{where} pairs")):
        at = f"{where} pairs[{index}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise RobustKDError(f"{at}: expected a pair (a, b) of method labels, got {pair!r}")
        a, b = _label(pair[0], at), _label(pair[1], at)
        if a == b:
            raise RobustKDError(f"{at}: compares {a} with itself")
        if (a, b) in checked:
            raise RobustKDError(f"{at}: {a}:{b} is given twice")
        if (b, a) in checked:
            raise RobustKDError(f"{at}: {a}:{b} is {b}:{a} turned around; ask each comparison once")
        checked.append((a, b))
    ranked: list[str] = []
    for index, label in enumerate(_items(order, f"{where} order")):
        label = _label(label, f"{where} order[{index}]")
        if label in ranked:
            raise RobustKDError(f"{where} order[{index}]: {label} is given twice")
        ranked.append(label)
    if reference is not None:
        _label(reference, f"{where} reference")
    return tuple(checked), tuple(ranked)


DEFAULT_QUESTION = Question(pairs=(("cmkd", "kd"), ("cmkd", "dist"), ("dist", "kd")), reference="kd",
                            order=("cmkd", "dist", "kd", "ce"))
