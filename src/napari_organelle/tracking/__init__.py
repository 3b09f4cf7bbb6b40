"""Tracking organelles over time: tracks, gap closing, fission and fusion.

The core is plain data (numpy and pandas, no Qt): :func:`track_iter` links the
instance labels of a time-lapse ``(T, Y, X)`` or ``(T, Z, Y, X)`` frame to frame
and returns a :class:`TrackingResult` that holds napari Tracks layer data and
graph, the events (fission, fusion), a table per track and per event, and can
be written as CSV (:func:`write_tracking`). :mod:`.scoring` compares a result
with a known truth (:mod:`napari_organelle.simulation.dynamics`).

Examples:
    >>> import numpy as np
    >>> movie = np.zeros((3, 8, 12), np.uint16)
    >>> movie[0, 2:6, 1:11] = 5                  # one object ...
    >>> movie[1, 2:6, 1:5] = 1; movie[1, 2:6, 7:11] = 2   # ... divides
    >>> movie[2, 2:6, 1:5] = 9; movie[2, 2:6, 7:11] = 3
    >>> result = track(movie)
    >>> [(e.kind, e.t) for e in result.events]
    [('fission', 1)]
    >>> len(result.track_table)
    3
"""

from __future__ import annotations

from .core import Event, TrackingResult, relabel_by_track, track, track_iter
from .export import write_tracking

__all__ = ["Event", "TrackingResult", "relabel_by_track", "track", "track_iter", "write_tracking"]
