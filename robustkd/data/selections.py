"""The field's named selections of test images (``robustkd evaluate --selection NAME``).

- ``all``: every test image, in the test set's order.
- ``robustbench5000``: RobustBench's ImageNet evaluation subset, the 5,000 validation images listed (as
  ``<wnid>/<file>``) in ``robustbench/helper_files/imagenet_test_image_ids.txt`` of the installed robustbench,
  in that file's order (so ``--n-examples 1000`` takes RobustBench's first 1,000, as its ``load_imagenet`` does).
- ``every100``: every 100th test image from the first (indices 0, 100, 200, ...), Cohen et al.'s ImageNet
  certification set (their ``certify.py --skip 100`` over torchvision's ImageFolder order: 500 images).

A selection is recorded with every result (``summary.json``'s ``selection``; the store's subset label and the
result folder's name carry it), so a number on a subset is never shown as a full-test-set number.
"""

from __future__ import annotations

import enum
import importlib.util
from pathlib import Path
from typing import Sequence

from robustkd.errors import RobustKDError


class Selection(str, enum.Enum):
    ALL = "all"
    ROBUSTBENCH_5000 = "robustbench5000"
    EVERY_100 = "every100"

    @classmethod
    def parse(cls, value: str | Selection) -> Selection:
        try:
            return cls(value)
        except ValueError:
            raise RobustKDError(f"--selection {value}: expected one of: {', '.join(s.value for s in cls)}") from None

    @property
    def label(self) -> str:
        """The subset label part ('' for every image)."""
        return "" if self is Selection.ALL else self.value


def robustbench_image_ids() -> list[str]:
    """The 5,000 ``<wnid>/<file>`` ids robustbench ships, in its file's order."""
    spec = importlib.util.find_spec("robustbench")  # located, not imported (its __init__ imports autoattack)
    try:
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("robustbench")
        folder = Path(list(spec.submodule_search_locations)[0])
        text = (folder / "helper_files" / "imagenet_test_image_ids.txt").read_text()
    except OSError:
        raise RobustKDError("--selection robustbench5000: the robustbench package (and its "
                            "helper_files/imagenet_test_image_ids.txt) is not installed") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def selection_indices(selection: Selection, dataset: str, count: int, sample_paths: Sequence[str] | None = None
                      ) -> list[int] | None:
    """Positions in the test set of the ``selection`` (None: every image). ``sample_paths``: the test files of
    an ImageNet folder in its order (``robustbench5000`` matches their last two path parts)."""
    if selection is Selection.ALL:
        return None
    if selection is Selection.EVERY_100:
        return list(range(0, count, 100))
    if dataset != "imagenet" or sample_paths is None:
        raise RobustKDError(f"--selection robustbench5000 is a subset of the ImageNet validation set; the {dataset} "
                            "test set has no such ids")
    position = {"/".join(Path(path).parts[-2:]): index for index, path in enumerate(sample_paths)}
    ids = robustbench_image_ids()
    missing = [image_id for image_id in ids if image_id not in position]
    if missing:
        raise RobustKDError(f"--selection robustbench5000: {len(missing)} of its {len(ids)} images are not in the "
                            f"ImageNet validation folder (first: {missing[0]}); expected the full validation set in "
                            "<wnid>/<file> folders")
    return [position[image_id] for image_id in ids]
