"""Agreement between two segmentations of the same images, e.g. a model's proposal and its
correction.

The scores are those of :mod:`napari_organelle.metrics` with the corrected
segmentation as the reference: precision is the fraction of the proposal that
was kept, recall the fraction of the final segmentation that the proposal
already had. A table per class and a heatmap (classes x scores) summarize how
much correction the proposal needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..errors import InputError
from ..metrics import MetricAccumulator

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["HEATMAP_METRICS", "Agreement", "agreement_heatmap", "compare_folders", "compare_labels"]

#: default columns of :func:`agreement_heatmap`, with their display names
HEATMAP_METRICS = {
    "dice": "Dice",
    "iou": "IoU",
    "precision": "precision",
    "recall": "recall",
    "object_f1": "object F1",
}

_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Agreement:
    """Result of :func:`compare_labels` / :func:`compare_folders`.

    Attributes:
        table: pooled scores, one row per class (see
            :func:`~napari_organelle.metrics.scores_to_dataframe`).
        per_image: scores per (image, class).
        notes: what could not be compared (classes or files on one side only).
    """

    table: pd.DataFrame
    per_image: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def compare_labels(
    proposal: ArrayLike | Mapping[str, ArrayLike],
    corrected: ArrayLike | Mapping[str, ArrayLike],
    *,
    name: str = "labels",
    objects: bool = True,
    iou_threshold: float = 0.5,
) -> Agreement:
    """Score a proposal against its correction, per class.

    Args:
        proposal: label image or mask, or a mapping class -> label image.
        corrected: the same for the corrected segmentation (the reference).
        name: class name when single images are given.
        objects: also match objects (object precision/recall/F1).
        iou_threshold: IoU at which objects match.

    Returns:
        An :class:`Agreement`. Classes present on one side only are listed in
        its notes and not scored.

    Raises:
        InputError: for images that differ in shape or are not labels, or
            when no class is on both sides.

    Examples:
        >>> import numpy as np
        >>> proposal = np.zeros((10, 10), np.uint8); proposal[2:6, 2:6] = 1
        >>> corrected = proposal.copy(); corrected[6:8, 2:6] = 1   # 8 pixels added by hand
        >>> agreement = compare_labels({"mito": proposal}, {"mito": corrected})
        >>> agreement.table.loc["mito", ["precision", "recall"]].tolist()
        [1.0, 0.6666666666666666]
    """
    proposals = proposal if isinstance(proposal, Mapping) else {name: proposal}
    corrections = corrected if isinstance(corrected, Mapping) else {name: corrected}
    notes = _one_sided("class", proposals, corrections)
    accumulator = MetricAccumulator(iou_threshold)
    for class_name in proposals:
        if class_name in corrections:
            try:
                accumulator.add(class_name, proposals[class_name], corrections[class_name],
                                objects=objects, image=class_name)
            except InputError as error:
                raise InputError(f"class {class_name!r}: {error}") from None
    if not len(accumulator):
        raise InputError("the two segmentations have no class in common: " + "; ".join(notes))
    return Agreement(accumulator.to_dataframe(), accumulator.per_image_dataframe(), notes)


def compare_folders(
    proposal_dir: str | Path,
    corrected_dir: str | Path,
    *,
    objects: bool = True,
    iou_threshold: float = 0.5,
) -> Agreement:
    """Score every TIFF of ``proposal_dir`` against the file of the same path in ``corrected_dir``.

    Files are paired by their path relative to each folder. The class of a
    file is its first sub-folder (``mito/cell1.tif`` -> ``mito``), or its name
    without suffix for files at the top (``mito.tif`` -> ``mito``); scores of
    one class are pooled over its files.

    Args:
        proposal_dir: folder of proposal label images (``.tif``/``.tiff``).
        corrected_dir: folder of corrected label images (the reference).
        objects: also match objects.
        iou_threshold: IoU at which objects match.

    Returns:
        An :class:`Agreement`; files present on one side only are in its notes.

    Raises:
        InputError: if a folder does not exist or no file is in both.
    """
    import tifffile

    folders = [Path(proposal_dir), Path(corrected_dir)]
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder")
    proposal_files, corrected_files = (_tiff_files(folder) for folder in folders)
    notes = _one_sided("file", proposal_files, corrected_files)
    common = [path for path in proposal_files if path in corrected_files]
    if not common:
        raise InputError(
            f"no TIFF file has the same relative path in {folders[0]} and {folders[1]}"
        )
    accumulator = MetricAccumulator(iou_threshold)
    for relative in common:
        class_name = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        try:
            accumulator.add(
                class_name,
                tifffile.imread(proposal_files[relative]),
                tifffile.imread(corrected_files[relative]),
                objects=objects,
                image=relative.as_posix(),
            )
        except InputError as error:
            raise InputError(f"{relative.as_posix()}: {error}") from None
    return Agreement(accumulator.to_dataframe(), accumulator.per_image_dataframe(), notes)


def agreement_heatmap(
    table: pd.DataFrame,
    metrics: Sequence[str] | Mapping[str, str] | None = None,
    *,
    title: str | None = "Agreement (proposal vs corrected)",
) -> Figure:
    """Heatmap of scores, classes x metrics, each cell annotated with its value.

    Built on :class:`matplotlib.figure.Figure` (no pyplot, so it works
    headless and in threads); save it with ``figure.savefig("agreement.png")``.

    Args:
        table: per-class scores with classes as the index (e.g.
            :attr:`Agreement.table`).
        metrics: columns to show, or a mapping column -> display name
            (default :data:`HEATMAP_METRICS`; columns missing from the table
            are skipped).
        title: figure title, or None.

    Returns:
        The figure. Scores are coloured on a fixed 0-1 scale; undefined ones
        (nan) are grey and marked "n/a".

    Examples:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"dice": [0.9, 0.5], "iou": [0.82, float("nan")]},
        ...                      index=["mito", "er"])
        >>> figure = agreement_heatmap(table)
        >>> [text.get_text() for text in figure.axes[0].texts]
        ['0.90', '0.82', '0.50', 'n/a']
    """
    import matplotlib as mpl
    from matplotlib.figure import Figure

    if metrics is None:
        metrics = HEATMAP_METRICS
    labels = (dict(metrics) if isinstance(metrics, Mapping)
              else {metric: metric for metric in metrics})
    columns = [column for column in labels if column in table.columns]
    if not columns:
        raise InputError(f"the table has none of the columns {list(labels)}")
    values = table[columns].to_numpy(dtype=float)

    n_rows, n_columns = values.shape
    figure = Figure(figsize=(1.1 * n_columns + 2.2, 0.45 * n_rows + 1.6), layout="constrained")
    axes = figure.add_subplot()
    colormap = mpl.colormaps["viridis"].with_extremes(bad="0.85")
    image = axes.imshow(np.ma.masked_invalid(values), cmap=colormap, vmin=0.0, vmax=1.0,
                        aspect="auto")
    for row in range(n_rows):
        for column in range(n_columns):
            value = values[row, column]
            text, colour = (("n/a", "0.3") if np.isnan(value)
                            else (f"{value:.2f}", "white" if value < 0.6 else "black"))
            axes.text(column, row, text, ha="center", va="center", color=colour, fontsize=9)
    axes.set_xticks(range(n_columns), [labels[column] for column in columns])
    axes.set_yticks(range(n_rows), [str(index) for index in table.index])
    axes.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
    figure.colorbar(image, ax=axes, fraction=0.05, pad=0.03)
    if title:
        figure.suptitle(title)
    return figure


def _tiff_files(folder: Path) -> dict[Path, Path]:
    """TIFF files under ``folder`` by their path relative to it."""
    return {
        path.relative_to(folder): path
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in _TIFF_SUFFIXES and path.is_file()
    }


def _one_sided(what: str, first: Mapping, second: Mapping) -> list[str]:
    """Notes for keys found in only one of the two mappings."""
    def show(key: object) -> str:
        return key.as_posix() if isinstance(key, Path) else str(key)

    notes = [f"{what} {show(key)!r} is only in the proposal; skipped"
             for key in first if key not in second]
    notes += [f"{what} {show(key)!r} is only in the corrected set; skipped"
              for key in second if key not in first]
    return notes
