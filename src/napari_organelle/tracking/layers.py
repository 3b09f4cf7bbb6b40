"""napari layer data of a tracking result, as plain ``(data, kwargs, type)`` tuples.

No napari import: the tuples are what napari's ``viewer._add_layer_from_data``
and plugin readers take (``viewer.add_tracks(data, **kwargs)`` works as well),
so scripts, the CLI and the Dynamics dock share them.

Examples:
    >>> import numpy as np
    >>> from napari_organelle.tracking import track
    >>> movie = np.zeros((3, 8, 12), np.uint16)
    >>> movie[0, 2:6, 1:11] = 1
    >>> movie[1:, 2:6, 1:5] = 1; movie[1:, 2:6, 7:11] = 2
    >>> [kind for _, _, kind in layer_tuples(track(movie), name="mito")]
    ['tracks', 'points']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .core import TrackingResult

#: face colour of each event kind in the Points layer
EVENT_COLOURS = {"fission": "#ff00ff", "fusion": "#00ffff"}


def layer_tuples(result: TrackingResult, *, name: str = "organelles",
                 scale: Sequence[float] | None = None, translate: Sequence[float] | None = None
                 ) -> list[tuple[Any, dict[str, Any], str]]:
    """A Tracks layer (with the fission/fusion graph) and a Points layer of events.

    Args:
        result: the tracking result.
        name: prefix of the layer names.
        scale: the labels layer's scale ``(t, [z,] y, x)``, so the layers overlay it.
        translate: the labels layer's translate, likewise.
    """
    extra: dict[str, Any] = {}
    if scale is not None:
        extra["scale"] = tuple(scale)
    if translate is not None:
        extra["translate"] = tuple(translate)
    tracks = (result.tracks, {"name": f"{name} tracks", "graph": dict(result.graph),
                              "tail_length": 10, "features": _track_features(result),
                              **extra}, "tracks")
    points = result.event_points
    kinds = result.event_kinds
    events = (points, {"name": f"{name} events", "symbol": "ring", "size": 12,
                       "face_color": [EVENT_COLOURS.get(k, "white") for k in kinds]
                       if kinds else "white",
                       "features": {"kind": np.array(kinds, dtype=object),
                                    "parents": [" ".join(map(str, e.parents))
                                                for e in result.events],
                                    "children": [" ".join(map(str, e.children))
                                                 for e in result.events]},
                       "ndim": points.shape[1], **extra}, "points")
    return [tracks, events]


def _track_features(result: TrackingResult) -> dict[str, np.ndarray]:
    """Per-vertex features of the Tracks layer: area and length of the object then."""
    ordered = result.detections.sort_values(["track_id", "t"], kind="stable")
    ordered = ordered.drop_duplicates(["track_id", "t"])
    if len(ordered) != len(result.tracks):  # merged pieces: the tracks rows differ
        return {}
    return {"area": ordered["area"].to_numpy(), "length": ordered["length"].to_numpy()}
