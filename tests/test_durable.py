"""Crash-safe writing (napari_organelle.durable): a failed write never leaves part of a file."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from napari_organelle import durable
from napari_organelle.durable import (
    append_line,
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    is_temporary,
    publish_folder,
    sha256_file,
    staging_folder,
    utc_now,
)


def names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_a_write_that_fails_midway_leaves_the_old_content_and_no_temporary(tmp_path):
    target = tmp_path / "card.json"
    target.write_bytes(b"old card")

    def write_half(handle):
        handle.write(b"new ca")  # half written, then the disk fills
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, write_half)
    assert target.read_bytes() == b"old card"
    assert names(tmp_path) == {"card.json"}


def test_a_failed_first_write_leaves_no_file_at_all(tmp_path):
    def interrupted(handle):
        handle.write(b"x")
        raise KeyboardInterrupt  # Ctrl+C: not an Exception, still cleaned up

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new.bin", interrupted)
    assert names(tmp_path) == set()


def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "active.json"
    atomic_write_json(target, {"version": "1"})

    def crash(*_args):  # the process dies (or the rename is refused) at the last moment
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(durable.os, "replace", crash)
    with pytest.raises(PermissionError):
        atomic_write_json(target, {"version": "2"})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"version": "1"}
    assert names(tmp_path) == {"active.json"}


def test_a_successful_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "notes.txt"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "second, µm\n")
    assert target.read_text(encoding="utf-8") == "second, µm\n"
    atomic_write_bytes(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert names(tmp_path) == {"notes.txt"}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_written_files_get_the_usual_permissions_not_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "shared.bin", b"lab data")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.bin").stat().st_mode & 0o777 == 0o644


def test_json_round_trip(tmp_path):
    value = {"name": "lab", "scores": {"mitochondria": 0.8125}, "steps": [1, 2, 3],
             "unit": "µm", "none": None, "flag": True}
    atomic_write_json(tmp_path / "run.json", value)
    text = (tmp_path / "run.json").read_text(encoding="ascii")  # escaped: readable anywhere
    assert json.loads(text) == value
    assert text.endswith("}\n")
    atomic_write_json(tmp_path / "one-line.json", value, indent=None, ensure_ascii=False)
    text = (tmp_path / "one-line.json").read_text(encoding="utf-8")
    assert text.count("\n") == 1 and "µm" in text and json.loads(text) == value


def test_a_value_json_cannot_hold_leaves_the_file_untouched(tmp_path):
    target = tmp_path / "run.json"
    atomic_write_json(target, {"step": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"step": 2, "path": object()})
    assert json.loads(target.read_text()) == {"step": 1}
    assert names(tmp_path) == {"run.json"}


def test_atomic_path_for_writers_that_want_a_file_name(tmp_path):
    target = tmp_path / "model.safetensors"
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and is_temporary(temporary.name)
        temporary.write_bytes(b"weights")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"weights"
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"weights"
    assert names(tmp_path) == {"model.safetensors"}


def test_staged_folder_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "lab" / "2"
    final.parent.mkdir()
    with pytest.raises(RuntimeError), staging_folder(final) as staging:
        (staging / "model.safetensors").write_bytes(b"w")
        raise RuntimeError("killed while copying")
    assert names(final.parent) == set()  # neither the folder nor the staging one

    with staging_folder(final) as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "card.json").write_text("{}")
        publish_folder(staging, final)
    assert (final / "sub" / "card.json").read_text() == "{}"
    assert names(final.parent) == {"2"}


def test_publishing_onto_a_full_folder_is_refused_and_an_empty_one_replaced(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "card.json").write_text("theirs")
    with staging_folder(taken) as staging:
        (staging / "card.json").write_text("ours")
        with pytest.raises(OSError):
            publish_folder(staging, taken)
    assert (taken / "card.json").read_text() == "theirs"
    assert names(tmp_path) == {"taken"}

    empty = tmp_path / "empty"
    empty.mkdir()
    with staging_folder(empty) as staging:
        (staging / "card.json").write_text("ours")
        publish_folder(staging, empty, sync=False)
    assert (empty / "card.json").read_text() == "ours"


def test_append_line_keeps_a_torn_line_apart(tmp_path):
    log = tmp_path / "manifest.jsonl"
    append_line(log, b'{"op": "add"}')
    with open(log, "ab") as handle:
        handle.write(b'{"op": "exc')  # a killed append
    append_line(log, b'{"op": "restore"}')
    assert log.read_bytes().splitlines() == [b'{"op": "add"}', b'{"op": "exc',
                                             b'{"op": "restore"}']


def test_sha256_file_sees_a_rewrite_with_the_same_size_and_time(tmp_path):
    path = tmp_path / "weights.bin"
    atomic_write_bytes(path, b"aaaa")
    assert sha256_file(path) == hashlib.sha256(b"aaaa").hexdigest()
    stat = path.stat()
    atomic_write_bytes(path, b"bbbb")  # same size; same time stamps forced below
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sha256_file(path) == hashlib.sha256(b"bbbb").hexdigest()
    assert sha256_file(str(path)) == sha256_file(path)


def test_sha256_file_reads_large_files_in_blocks(tmp_path):
    content = os.urandom((1 << 20) * 2 + 17)
    (tmp_path / "stack.tif").write_bytes(content)
    assert sha256_file(tmp_path / "stack.tif") == hashlib.sha256(content).hexdigest()


def test_utc_now_is_a_utc_iso_time_in_seconds():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = utc_now()
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.microsecond == 0
    assert before <= parsed <= datetime.now(timezone.utc)


def test_the_store_uses_the_same_primitives():
    from napari_organelle.store import durable as store_durable
    from napari_organelle.store import hashing

    assert store_durable.atomic_write_bytes is atomic_write_bytes
    assert store_durable.append_line is append_line
    assert hashing.sha256_file is sha256_file
