"""The files a suite reads, checked against each dataset before any suite runs (``Suite.check_inputs``).

``check_suite_inputs`` is called by the evaluation job (robustkd/jobs/evaluate.py) once per dataset of the
models it evaluates, after the suites' parameters are checked and before the clean pass: a suite that reads
files of its own (the corruption suite's official ``.npy`` files) refuses them there, so a refusal never comes
after work was done and never leaves a partial result folder. The clean pass's labels are loaded only if a
suite asks for them (``test_labels``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from robustkd.evaluate.suite import suite_class
from robustkd.evaluate.suite_file import SuiteFile


def check_suite_inputs(suites: Sequence[SuiteFile], datasets: Iterable[str], *, n_examples: int | None,
                       data_dir: str | Path | None, allow_embedded: bool) -> None:
    """Every suite's ``check_inputs`` for every dataset in ``datasets`` (RobustKDError on the first refusal)."""
    from robustkd.data import resolve_data_dir
    from robustkd.data.sources import load_image_dataset

    for dataset in sorted(set(datasets)):
        loaded: list[torch.Tensor] = []

        def test_labels(dataset: str = dataset) -> torch.Tensor:
            """The labels of the images the clean pass evaluates (the first ``n_examples`` test images)."""
            if not loaded:
                split = load_image_dataset(dataset, "test", resolve_data_dir(data_dir), allow_embedded=allow_embedded,
                                           announce=lambda line: None)
                loaded.append(split.labels if n_examples is None else split.labels[:n_examples])
            return loaded[0]

        for suite in suites:
            suite_class(suite.name)().check_inputs(suite.params, dataset, test_labels)
