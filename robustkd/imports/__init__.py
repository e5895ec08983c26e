"""``robustkd import``: models of other code bases as verified robustkd checkpoints (docs/models.md).

One importer per source kind (``SourceKind``), registered in ``IMPORTERS`` by its module: ``state_dict``
(robustkd's zoo architectures), ``timm_source``, ``torchvision_source``, ``robustbench_source``,
``onnx_source``. Each reads and checks its source without writing anything and without running code from
a file; ``robustkd.jobs.import_model`` writes and verifies the checkpoint.
"""

from robustkd.imports.base import (
    IMPORTERS,
    ImportedModel,
    ImportOptions,
    SourceKind,
    SourceSpec,
    importer,
    parse_source,
)

__all__ = ["IMPORTERS", "ImportOptions", "ImportedModel", "SourceKind", "SourceSpec", "importer", "parse_source"]
