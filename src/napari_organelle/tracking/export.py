"""CSV files of a tracking result, written atomically (:mod:`napari_organelle.durable`)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..durable import atomic_write_text
from .core import TrackingResult

#: file name -> what it holds
FILES = {
    "tracks.csv": "one row per object and frame: t, label, track_id, position (px), area, length",
    "track_summary.csv": "one row per track: lifetime, path length, displacement, speed, sizes",
    "events.csv": "one row per fission or fusion: t, position (px), parent and child tracks",
    "graph.csv": "napari Tracks graph: child_track_id, parent_track_id",
}


def write_tracking(result: TrackingResult, folder: str | os.PathLike) -> list[Path]:
    """Write the tables of ``result`` as CSV files in ``folder``; returns their paths.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from napari_organelle.tracking import track
        >>> movie = np.zeros((2, 4, 4), np.uint8); movie[:, 1:3, 1:3] = 1
        >>> paths = write_tracking(track(movie), tempfile.mkdtemp())
        >>> [p.name for p in paths]
        ['tracks.csv', 'track_summary.csv', 'events.csv', 'graph.csv']
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    graph = pd.DataFrame([(child, parent) for child, parents in sorted(result.graph.items())
                          for parent in parents], columns=["child_track_id", "parent_track_id"])
    tables = {
        "tracks.csv": result.detections.sort_values(["track_id", "t"], kind="stable"),
        "track_summary.csv": result.track_table,
        "events.csv": result.event_table,
        "graph.csv": graph,
    }
    written = []
    for name, table in tables.items():
        atomic_write_text(out / name, table.to_csv(index=False, float_format="%.6g"))
        written.append(out / name)
    return written
