"""The append-only JSON-lines manifest: reading it tolerantly, appending durably."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .durable import append_line

log = logging.getLogger(__name__)

#: the event kinds this version understands; others (from a future minor
#: version with the same schema) are kept in the file and skipped on reading
ADD, EXCLUDE, RESTORE = "add", "exclude", "restore"


@dataclass(frozen=True)
class ManifestContent:
    """The events of a manifest, in file order.

    Attributes:
        events: each valid line as a dict with an ``"op"`` key.
        line_numbers: the 1-based line number of each event.
        damaged_lines: 1-based numbers of lines that were not valid JSON
            objects (a save cut short by a crash leaves one at the end).
    """

    events: list[dict[str, Any]]
    line_numbers: list[int]
    damaged_lines: list[int]


def read_manifest(path: Path) -> ManifestContent:
    """Read every event, skipping lines that a crash left incomplete.

    A missing manifest is an empty one: a store killed while being created
    may have ``store.json`` but no manifest yet.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ManifestContent([], [], [])
    events: list[dict[str, Any]] = []
    numbers: list[int] = []
    damaged: list[int] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            event = None
        if isinstance(event, dict) and isinstance(event.get("op"), str):
            events.append(event)
            numbers.append(number)
        else:
            damaged.append(number)
    if damaged:
        log.warning(
            "%s: skipped %d incomplete or damaged line(s): %s", path, len(damaged), damaged[:10]
        )
    return ManifestContent(events, numbers, damaged)


def append_event(path: Path, event: dict[str, Any]) -> None:
    """Durably append one event as a single JSON line.

    The line is encoded before the file is opened, so an unserialisable event
    raises without touching the file.
    """
    line = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    append_line(path, line.encode("utf-8"))
