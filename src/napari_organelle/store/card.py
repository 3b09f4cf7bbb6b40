"""Dataset cards: what an exported data set holds, where it came from, how to use it.

Every export writes ``dataset_card.json`` (for programs) and
``dataset_card.md`` (for people) next to its data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..durable import atomic_write_json
from .durable import atomic_write_bytes
from .training_store import SampleRecord

CARD_JSON = "dataset_card.json"
CARD_MARKDOWN = "dataset_card.md"
UNSPECIFIED_LICENCE = "unspecified"


@dataclass
class ClassTally:
    """Pixel counts of one class over the exported cases.

    Attributes:
        samples: cases in which the class was reviewed somewhere.
        foreground: pixels marked as the class.
        background: reviewed pixels marked as not the class.
        ignored: pixels where the class is unknown (not reviewed, or the
            sample has no labels for the class).
        lost_to_precedence: foreground pixels that the single label map gave
            to another class or to ignore (nnU-Net export only).
    """

    samples: int = 0
    foreground: int = 0
    background: int = 0
    ignored: int = 0
    lost_to_precedence: int = 0


@dataclass
class CardFacts:
    """Facts gathered while exporting, turned into a card by :func:`dataset_card`."""

    name: str
    export_format: str
    store: Path
    classes: list[str]
    licence: str | None
    ignore_encoding: str
    cases: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    tallies: dict[str, ClassTally] = field(default_factory=dict)
    label_pixels: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add_case(self, case: str, record: SampleRecord) -> None:
        """Record one exported case and its per-class pixel counts."""
        provenance = record.provenance
        self.cases.append(
            {
                "case": case,
                "sample_id": record.id,
                "source_path": provenance.get("source_path"),
                "source_sha256": provenance.get("source_sha256"),
                "plane": provenance.get("plane"),
                "crop": provenance.get("crop"),
                "pixel_size_nm": provenance.get("pixel_size_nm"),
                "annotator": provenance.get("annotator"),
                "model": _model_name(provenance),
                "corrected": provenance.get("time"),
                "changed_pixels": provenance.get("changed_pixels", {}),
            }
        )
        area = record.shape[0] * record.shape[1]
        for name in self.classes:
            tally = self.tallies.setdefault(name, ClassTally())
            counts = record.pixels.get(name)
            if counts is None:
                tally.ignored += area
                continue
            tally.samples += int(counts["foreground"] + counts["background"] > 0)
            tally.foreground += counts["foreground"]
            tally.background += counts["background"]
            tally.ignored += counts["ignored"]


def dataset_card(
    facts: CardFacts, records: Sequence[SampleRecord], created: str, generator: str
) -> dict[str, Any]:
    """The card as a JSON-ready dict.

    Args:
        facts: what the export gathered.
        records: the exported samples (for the provenance summary).
        created: ISO time of the export.
        generator: program name and version.
    """
    annotators = Counter(r.provenance.get("annotator") or "unknown" for r in records)
    models = Counter(_model_name(r.provenance) or "none (drawn from scratch)" for r in records)
    sources: dict[str, dict[str, Any]] = {}
    for r in records:
        sha = r.provenance.get("source_sha256") or "unknown"
        entry = sources.setdefault(
            sha, {"path": r.provenance.get("source_path"), "sha256": sha, "samples": 0}
        )
        entry["samples"] += 1
    changed = Counter[str]()
    for r in records:
        counts = r.provenance.get("changed_pixels") or {}
        changed.update({k: int(v) for k, v in counts.items() if k in facts.classes})
    times = sorted(t for r in records if (t := r.provenance.get("time")))
    pixel_sizes = sorted({tuple(p) for r in records if (p := r.provenance.get("pixel_size_nm"))})
    return {
        "name": facts.name,
        "format": facts.export_format,
        "created": created,
        "generator": generator,
        "licence": facts.licence or UNSPECIFIED_LICENCE,
        "source_store": str(facts.store),
        "cases": len(facts.cases),
        "skipped": facts.skipped,
        "classes": [
            {"name": name, **vars(facts.tallies.get(name, ClassTally()))} for name in facts.classes
        ],
        "ignore": facts.ignore_encoding,
        "label_pixels": facts.label_pixels,
        "provenance": {
            "annotators": dict(annotators.most_common()),
            "models_corrected": dict(models.most_common()),
            "source_files": sorted(sources.values(), key=lambda s: (-s["samples"], str(s["path"]))),
            "changed_pixels": dict(changed),
            "corrected_between": [times[0], times[-1]] if times else None,
            "pixel_sizes_nm": [list(p) for p in pixel_sizes],
        },
        **facts.extra,
        "case_list": facts.cases,
    }


def card_markdown(card: dict[str, Any]) -> str:
    """Render a card (from :func:`dataset_card`) as Markdown."""
    unspecified = card["licence"] == UNSPECIFIED_LICENCE
    lines = [
        f"# Dataset card: {card['name']}",
        "",
        f"Exported by {card['generator']} on {card['created']} as **{card['format']}**, "
        f"from the training store `{card['source_store']}`.",
        "",
        f"* Cases: {card['cases']}"
        + (f" ({len(card['skipped'])} sample(s) skipped, see below)" if card["skipped"] else ""),
        f"* Licence: {card['licence']}"
        + (" (set one with `--licence` before sharing)" if unspecified else ""),
        "* The images remain subject to the licences of their source files, listed below.",
        f"* Ignore: {card['ignore']}",
    ]
    if "overlap_precedence" in card:
        seen = "; ".join(
            f"{' & '.join(o['classes'])} ({o['pixels']} px)"
            for o in card.get("overlapping_classes", [])
        )
        lines.append(
            f"* Overlapping classes (seen in the samples: {seen or 'none'}): a pixel gets the "
            "first class in this order that marks it: "
            + " > ".join(f"`{c}`" for c in card["overlap_precedence"])
            + ". Where a class that could overlap and comes earlier was not reviewed, the pixel "
            "is ignored; a pixel no class marks is background only where every class was reviewed."
        )
    lines += [
        "",
        "## Classes",
        "",
        "| class | samples | foreground px | background px | ignored px | lost to overlap px |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in card["classes"]:
        lines.append(
            f"| {c['name']} | {c['samples']} | {c['foreground']} | {c['background']} | "
            f"{c['ignored']} | {c['lost_to_precedence']} |"
        )
    if card["label_pixels"]:
        lines += ["", "Pixels per label in the exported label maps: "
                  + ", ".join(f"{k} {v}" for k, v in card["label_pixels"].items()) + "."]
    prov = card["provenance"]
    lines += ["", "## Provenance", ""]
    lines.append("* Annotators: " + _counts(prov["annotators"]))
    lines.append("* Model proposals corrected: " + _counts(prov["models_corrected"]))
    if prov["changed_pixels"]:
        lines.append("* Pixels changed versus the proposals: " + _counts(prov["changed_pixels"]))
    if prov["corrected_between"]:
        first, last = prov["corrected_between"]
        lines.append(f"* Corrected between {first} and {last}")
    if prov["pixel_sizes_nm"]:
        sizes = "; ".join(str(tuple(p)) for p in prov["pixel_sizes_nm"])
        lines.append(f"* Pixel sizes (y, x nm): {sizes}")
    lines += ["", "| source file | sha256 | samples |", "| --- | --- | ---: |"]
    for s in prov["source_files"]:
        lines.append(f"| {s['path'] or '(no file)'} | `{s['sha256'][:16]}…` | {s['samples']} |")
    if card["skipped"]:
        lines += ["", "## Skipped samples", ""]
        lines += [f"* `{s['sample_id']}`: {s['reason']}" for s in card["skipped"]]
    lines += [
        "",
        "## Cases",
        "",
        "The case list (case name, store sample id, source, plane, crop, annotator, model) "
        f"is in `{CARD_JSON}`.",
        "",
    ]
    return "\n".join(lines)


def write_card(folder: Path, card: dict[str, Any]) -> None:
    """Write ``dataset_card.json`` and ``dataset_card.md`` into ``folder``."""
    atomic_write_json(folder / CARD_JSON, card, indent=2, ensure_ascii=False)
    atomic_write_bytes(folder / CARD_MARKDOWN, card_markdown(card).encode())


def _model_name(provenance: dict[str, Any]) -> str | None:
    name = provenance.get("model_name")
    if not name:
        return None
    version = provenance.get("model_version")
    return f"{name} {version}" if version else str(name)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none recorded"
