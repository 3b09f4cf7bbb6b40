"""Export the training store as an nnU-Net v2 raw dataset or as TIFF pairs.

Both exports take the current version of every non-excluded sample, write into
a hidden staging folder and rename it into place at the end, so the output
folder either holds a complete data set or does not exist (a killed export
leaves only a ``.tmp-*`` folder). Both write a dataset card
(``dataset_card.md`` and ``.json``).

The exports are generators yielding :class:`~napari_organelle.progress.Progress`
per sample and returning an :class:`ExportResult`; drive them with
:func:`napari_organelle.progress.run` or napari's ``thread_worker``.

nnU-Net specifics (checked against nnunetv2 2.x ``nnunetv2/imageio``): 2-D
``.tif`` files are read by ``NaturalImage2DIO`` (skimage), which needs no
spacing sidecar (that is ``Tiff3DIO``, for 3-D stacks only, which would reject
2-D planes). ``dataset.json`` names ``NaturalImage2DIO`` explicitly via
``overwrite_image_reader_writer`` so nnU-Net does not have to guess.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..durable import atomic_write_json, publish_folder, staging_folder, utc_now
from ..errors import InputError
from ..progress import Progress
from .card import (
    CARD_MARKDOWN,
    UNSPECIFIED_LICENCE,
    CardFacts,
    ClassTally,
    dataset_card,
    write_card,
)
from .durable import check_writable
from .labelmap import compose_label_map, observed_overlaps, smallest_first
from .layout import IGNORE_VALUE, generator_name
from .training_store import SampleRecord, TrainingStore

NNUNET_FILE_ENDING = ".tif"
NNUNET_READER = "NaturalImage2DIO"
#: nnU-Net asks custom data sets to use IDs from 500 up, clear of its pretrained ones
FIRST_CUSTOM_DATASET_ID = 500
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        path: the data set folder (``DatasetNNN_Name`` for nnU-Net).
        export_format: ``"nnunet"`` or ``"tiff"``.
        cases: number of exported cases.
        skipped: ``{"sample_id", "reason"}`` for samples left out.
        card: the dataset card, as written to ``dataset_card.json``.
    """

    path: Path
    export_format: str
    cases: int
    skipped: tuple[dict[str, str], ...]
    card: dict[str, Any]


def export_nnunet(
    store: TrainingStore | str | os.PathLike,
    nnunet_raw: str | os.PathLike,
    *,
    dataset_id: int | None = None,
    name: str = "Organelles",
    classes: Sequence[str] | None = None,
    precedence: Sequence[str] | None = None,
    licence: str | None = None,
    channel_name: str = "microscopy",
) -> Generator[Progress, None, ExportResult]:
    """Write ``<nnunet_raw>/DatasetNNN_<name>`` in nnU-Net v2's raw format.

    Layout: ``imagesTr/<case>_0000.tif``, ``labelsTr/<case>.tif`` and
    ``dataset.json``; ``<case>`` is the store's sample id. Labels are
    background 0, the classes 1..N in ``classes`` order, and ``ignore`` N+1
    (nnU-Net requires the ignore label to be the highest) for pixels nobody
    reviewed. Classes that the samples show overlapping (both foreground at
    some pixel, like boundaries inside mitochondria) are resolved by
    ``precedence``; a pixel whose label a class not reviewed there could
    have overridden becomes ignore. See
    :func:`~napari_organelle.store.labelmap.compose_label_map`.

    Args:
        store: the training store (or its folder).
        nnunet_raw: the nnU-Net raw folder (``$nnUNet_raw``); created if needed.
        dataset_id: 1..999; default: the lowest free ID from 500 up.
        name: data set name (letters, digits, ``_``, ``-``).
        classes: classes to export, in label order; default: the store's
            classes that have samples.
        precedence: which class wins where classes overlap, highest first;
            classes not listed follow in the default order, smallest total
            foreground first (nested structures would vanish otherwise).
        licence: licence of the exported data, for the card and dataset.json.
        channel_name: nnU-Net channel name; anything but ``CT`` gives
            per-image z-score normalisation, right for EM and fluorescence.

    Raises:
        InputError: no samples, unknown classes, an ID already in use, or an
            existing output folder.
        StoreError: a sample cannot be read.
    """
    store = _as_store(store)
    records, classes = _select(store, classes)
    order = _precedence(precedence, classes, records)
    raw = Path(nnunet_raw).expanduser().absolute()
    final = raw / f"Dataset{_dataset_id(raw, dataset_id):03d}_{_check_name(name)}"
    label_values = {cls: i + 1 for i, cls in enumerate(classes)}
    ignore_label = len(classes) + 1
    labels = {"background": 0, **label_values, "ignore": ignore_label}
    label_names = {value: label for label, value in labels.items()}
    overlapping, overlap_pixels = _overlaps(records, classes)
    facts = CardFacts(
        name=final.name,
        export_format="nnunet",
        store=store.path,
        classes=classes,
        licence=licence,
        ignore_encoding=(
            f"label {ignore_label} (`ignore` in dataset.json): not reviewed, excluded from the loss"
        ),
        label_pixels=dict.fromkeys(labels, 0),
        extra={
            "labels": labels,
            "overlap_precedence": order,
            "overlapping_classes": overlap_pixels,
        },
    )
    exported: list[SampleRecord] = []
    with _staged_folder(final) as staging:
        (staging / "imagesTr").mkdir()
        (staging / "labelsTr").mkdir()
        yield Progress(0, len(records), f"exporting {len(records)} samples to {final.name}")
        for done, record in enumerate(records, start=1):
            image, masks = _read_sample(store, record, classes)
            label_map = compose_label_map(
                masks, label_values, order, ignore_label, record.shape, overlapping
            )
            if np.all(label_map == ignore_label):
                reason = _why_all_ignored(order, masks)
                facts.skipped.append({"sample_id": record.id, "reason": reason})
            else:
                _write_tiff(staging / "imagesTr" / f"{record.id}_0000{NNUNET_FILE_ENDING}", image)
                _write_tiff(staging / "labelsTr" / f"{record.id}{NNUNET_FILE_ENDING}", label_map)
                facts.add_case(record.id, record)
                _tally_label_map(facts, label_map, masks, label_values, label_names)
                exported.append(record)
            yield Progress(done, len(records), f"exported {record.id}")
        _require_cases(facts, classes)
        created = utc_now()
        _write_json(
            staging / "dataset.json",
            {
                "channel_names": {"0": channel_name},
                "labels": labels,
                "numTraining": len(exported),
                "file_ending": NNUNET_FILE_ENDING,
                "overwrite_image_reader_writer": NNUNET_READER,
                "name": name,
                "description": "Corrected segmentations from a napari-organelle training store",
                "reference": str(store.path),
                "licence": licence or UNSPECIFIED_LICENCE,
                "release": created,
                "overlap_precedence": order,
                "overlapping_classes": overlap_pixels,
                "dataset_card": CARD_MARKDOWN,
            },
        )
        card = dataset_card(facts, exported, created, generator_name())
        write_card(staging, card)
    return ExportResult(final, "nnunet", len(exported), tuple(facts.skipped), card)


def export_tiff(
    store: TrainingStore | str | os.PathLike,
    out: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    licence: str | None = None,
) -> Generator[Progress, None, ExportResult]:
    """Write the samples as TIFF pairs in the development-data layout.

    Layout (as in ``../shared/data``): ``<out>/dataset.json``,
    ``<out>/train/images/<case>.tif``, ``<out>/train/masks/<class>/<case>.tif``
    (uint8: 0 background, 1 class, **255 ignore**), and for instance classes
    ``<out>/train/instances/<class>/<case>.tif``. Classes may overlap. A class a
    sample has no labels for is written as all 255. ``dataset.json`` records
    ``"ignore_value": 255`` so trainers reading this layout can mask the loss.

    Args:
        store: the training store (or its folder).
        out: the data set folder to create (must not exist, or be empty).
        classes: classes to export; default: the store's classes that have samples.
        licence: licence of the exported data.

    Raises:
        InputError: no samples, unknown classes, or a non-empty output folder.
        StoreError: a sample cannot be read.
    """
    store = _as_store(store)
    records, classes = _select(store, classes)
    final = Path(out).expanduser().absolute()
    facts = CardFacts(
        name=final.name,
        export_format="tiff",
        store=store.path,
        classes=classes,
        licence=licence,
        ignore_encoding=(
            f"value {IGNORE_VALUE} in the masks: not reviewed, neither class nor background"
        ),
    )
    exported: list[SampleRecord] = []
    instance_classes = [c for c in classes if any(c in r.instance_classes for r in records)]
    with _staged_folder(final) as staging:
        split = staging / "train"
        (split / "images").mkdir(parents=True)
        for cls in classes:
            (split / "masks" / cls).mkdir(parents=True)
        for cls in instance_classes:
            (split / "instances" / cls).mkdir(parents=True)
        yield Progress(0, len(records), f"exporting {len(records)} samples to {final}")
        for done, record in enumerate(records, start=1):
            image, masks = _read_sample(store, record, classes)
            if not masks or all(np.all(mask == IGNORE_VALUE) for mask in masks.values()):
                reason = "no reviewed pixels of the exported classes"
                facts.skipped.append({"sample_id": record.id, "reason": reason})
            else:
                file_name = f"{record.id}.tif"
                _write_tiff(split / "images" / file_name, image)
                unknown = np.full(record.shape, IGNORE_VALUE, dtype=np.uint8)
                for cls in classes:
                    _write_tiff(split / "masks" / cls / file_name, masks.get(cls, unknown))
                if any(c in instance_classes for c in record.instance_classes):
                    for cls, ids in store.load_instances(record.id).items():
                        if cls in instance_classes:
                            _write_tiff(split / "instances" / cls / file_name, ids)
                facts.add_case(record.id, record)
                exported.append(record)
            yield Progress(done, len(records), f"exported {record.id}")
        _require_cases(facts, classes)
        created = utc_now()
        provenances = [r.provenance for r in exported]
        pixel_sizes = [_as_tuple(p.get("pixel_size_nm")) for p in provenances]
        _write_json(
            staging / "dataset.json",
            {
                "modality": _shared_value(p.get("extra", {}).get("modality") for p in provenances),
                "pixel_size_nm": _shared_value(pixel_sizes),  # None if mixed: trainers keep scale
                "classes": classes,
                "images": len(exported),
                "splits": {"train": len(exported), "test": 0},
                "ignore_value": IGNORE_VALUE,
                "masks": (
                    "uint8 per class: 0 = not the class, 1 = the class, "
                    f"{IGNORE_VALUE} = not reviewed (leave out of the loss); classes may overlap"
                ),
                "instance_labels": bool(instance_classes),
                "instance_classes": instance_classes,
                "source": f"napari-organelle training store {store.path}",
                "licence": licence or UNSPECIFIED_LICENCE,
                "created": created,
                "dataset_card": CARD_MARKDOWN,
            },
        )
        card = dataset_card(facts, exported, created, generator_name())
        write_card(staging, card)
    return ExportResult(final, "tiff", len(exported), tuple(facts.skipped), card)


# -- choosing what to export -----------------------------------------------------------


def _as_store(store: TrainingStore | str | os.PathLike) -> TrainingStore:
    return store if isinstance(store, TrainingStore) else TrainingStore(store)


def _select(
    store: TrainingStore, classes: Sequence[str] | None
) -> tuple[list[SampleRecord], list[str]]:
    records = store.samples()
    if not records:
        raise InputError(
            f"the training store {store.path} has no samples to export (excluded ones are left out)"
        )
    if classes is None:
        used = {c for r in records for c in r.classes}
        return records, [c for c in store.classes if c in used]
    classes = list(dict.fromkeys(classes))
    unknown = [c for c in classes if c not in store.classes]
    if unknown or not classes:
        raise InputError(
            f"cannot export class(es) {', '.join(unknown) or '(none given)'}: the store has "
            f"{', '.join(store.classes) or 'no classes'}"
        )
    return records, classes


def _precedence(
    given: Sequence[str] | None, classes: list[str], records: list[SampleRecord]
) -> list[str]:
    given = list(dict.fromkeys(given or ()))
    unknown = [c for c in given if c not in classes]
    if unknown:
        raise InputError(
            f"precedence names {', '.join(unknown)}, which are not exported ({', '.join(classes)})"
        )
    totals = {c: sum(r.pixels.get(c, {}).get("foreground", 0) for r in records) for c in classes}
    return given + [c for c in smallest_first(totals) if c not in given]


def _overlaps(
    records: list[SampleRecord], classes: list[str]
) -> tuple[set[frozenset[str]], list[dict[str, Any]]]:
    """Class pairs the exported samples show overlapping, and their pixel totals."""
    totals: dict[frozenset[str], int] = {}
    for record in records:
        for overlap in record.overlaps:
            pair = frozenset(overlap["classes"])
            if pair <= set(classes):
                totals[pair] = totals.get(pair, 0) + int(overlap["pixels"])
    pairs = observed_overlaps({"classes": sorted(p), "pixels": n} for p, n in totals.items())
    listing = [
        {"classes": sorted(pair, key=classes.index), "pixels": totals[pair]} for pair in pairs
    ]
    return pairs, sorted(listing, key=lambda o: (-o["pixels"], o["classes"]))


def _dataset_id(raw: Path, requested: int | None) -> int:
    taken = set()
    if raw.is_dir():
        for entry in raw.iterdir():
            match = re.fullmatch(r"Dataset(\d{3})_.+", entry.name)
            if match and entry.is_dir():
                taken.add(int(match[1]))
    if requested is None:
        return next(i for i in range(FIRST_CUSTOM_DATASET_ID, 1000) if i not in taken)
    if isinstance(requested, bool) or not 1 <= int(requested) <= 999:
        raise InputError(f"nnU-Net dataset IDs run from 1 to 999, got {requested}")
    if int(requested) in taken:
        raise InputError(
            f"{raw} already has a Dataset{int(requested):03d}_* folder; nnU-Net needs unique "
            "IDs, so pick another --dataset-id"
        )
    return int(requested)


def _check_name(name: str) -> str:
    if not _DATASET_NAME.fullmatch(name or ""):
        raise InputError(
            f"dataset name {name!r} must be letters, digits, '_' or '-' (e.g. 'Mitochondria_EM')"
        )
    return name


# -- reading and writing ---------------------------------------------------------------


@contextlib.contextmanager
def _staged_folder(final: Path) -> Iterator[Path]:
    """Yield a hidden folder next to ``final``; rename it to ``final`` on success."""
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise InputError(
            f"{final} already exists and is not empty; choose another output folder or delete it"
        )
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create {final.parent}: {error.strerror or error}") from None
    check_writable(final.parent)
    # Removed on any exception, GeneratorExit (the user cancels) included.
    with staging_folder(final) as staging:
        yield staging
        # No per-file fsync: an export can be made again; the rename alone is atomic.
        publish_folder(staging, final, sync=False)  # replaces final if empty (checked above)


def _read_sample(
    store: TrainingStore, record: SampleRecord, classes: list[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The image and the store-encoded (0/1/255) masks of the wanted classes."""
    image, labels, ignore, _ = store.load(record.id)
    masks = {
        cls: np.where(ignore[cls], IGNORE_VALUE, labels[cls]).astype(np.uint8)
        for cls in classes
        if cls in labels
    }
    return image, masks


def _write_tiff(path: Path, array: np.ndarray) -> None:
    import tifffile

    # No per-file fsync: the whole folder appears by one rename at the end.
    tifffile.imwrite(path, array, photometric="minisblack", compression="zlib", metadata=None)


def _write_json(path: Path, content: dict[str, Any]) -> None:
    atomic_write_json(path, content, indent=2, ensure_ascii=False)


# -- bookkeeping for the card ----------------------------------------------------------


def _why_all_ignored(order: list[str], masks: dict[str, np.ndarray]) -> str:
    unlabelled = [c for c in order if c not in masks]
    reason = "no pixel can be given a definite label"
    if unlabelled:  # the usual cause: an unlabelled class that may overlap the labelled ones
        reason += f" (not labelled in this sample: {', '.join(unlabelled)})"
    return reason


def _tally_label_map(
    facts: CardFacts,
    label_map: np.ndarray,
    masks: dict[str, np.ndarray],
    label_values: dict[str, int],
    label_names: dict[int, str],
) -> None:
    values, counts = np.unique(label_map, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist()):
        facts.label_pixels[label_names[value]] += count
    for cls, mask in masks.items():
        lost = int(np.count_nonzero((mask == 1) & (label_map != label_values[cls])))
        facts.tallies.setdefault(cls, ClassTally()).lost_to_precedence += lost


def _require_cases(facts: CardFacts, classes: list[str]) -> None:
    if not facts.cases:
        raise InputError(
            f"no sample has reviewed pixels of {', '.join(classes)}; nothing to export"
        )


def _as_tuple(value: Any) -> tuple[Any, ...] | None:
    return tuple(value) if value else None


def _shared_value(values: Iterable[Any]) -> Any:
    """The value all samples share, or None if they differ or any lacks it."""
    distinct = set(values)
    if len(distinct) != 1:
        return None
    value = distinct.pop()
    return list(value) if isinstance(value, tuple) else value
