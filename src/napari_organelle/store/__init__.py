"""Training store and export: corrected masks kept as versioned training data.

No Qt or napari here: the widget, the CLI and scripts share this core.

Saving and reading::

    store = open_store(path, classes=["mitochondria", "membranes"])
    result = store.save(image, {"mitochondria": mask}, reviewed=[(0, 0, 256, 256)],
                        provenance={"source_path": "cell1.tif", "plane": (3,)})
    image, labels, ignore_masks, provenance = store.load(result.sample.id)

Exporting (generators yielding :class:`~napari_organelle.progress.Progress`)::

    from napari_organelle.progress import run
    run(export_nnunet(store, nnunet_raw_dir, dataset_id=501, name="Organelles"))
    run(export_tiff(store, out_dir))

The on-disk layout is described in :mod:`.layout` and in the ``README.md``
written into every store.
"""

from .export import ExportResult, compose_label_map, export_nnunet, export_tiff
from .layout import IGNORE_VALUE, SCHEMA_VERSION, default_store_path
from .prepare import ReviewedRegion
from .provenance import Box, Provenance, changed_pixels
from .training_store import (
    LoadedSample,
    SampleRecord,
    SaveResult,
    TrainingStore,
    open_store,
    save_sample,
)

__all__ = [
    "IGNORE_VALUE",
    "SCHEMA_VERSION",
    "Box",
    "ExportResult",
    "LoadedSample",
    "Provenance",
    "ReviewedRegion",
    "SampleRecord",
    "SaveResult",
    "TrainingStore",
    "changed_pixels",
    "compose_label_map",
    "default_store_path",
    "export_nnunet",
    "export_tiff",
    "open_store",
    "save_sample",
]
