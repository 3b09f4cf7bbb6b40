"""Crash-safe files: atomic writes, staged folders, durable appends, file hashes, time stamps.

Models, fine-tuning runs, the training store and segmentation results must
survive the process being killed at any instant (napari closed, laptop battery
empty, OOM killer). Every file the package writes for keeps goes through this
module, which follows these rules:

* a file is written to a temporary name in its final folder, flushed and
  fsynced, then renamed over the final name (``os.replace`` is atomic), so a
  reader sees either the old file or the whole new one, never a part;
* a folder of several files is built under a temporary name and renamed into
  place once complete (:func:`staging_folder`, :func:`publish_folder`);
* the parent folder is fsynced after a rename so the new name itself is durable;
* temporary names start with :data:`TEMP_PREFIX`, so left-overs of a killed
  write are recognisable (:func:`is_temporary`) and can be deleted without
  guessing.

It also holds the two helpers every record writer needs: :func:`sha256_file`
(content hash of a file) and :func:`utc_now` (the time stamp format of all
records).

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_write_json(folder / "run.json", {"step": 3})
    >>> read = json.loads((folder / "run.json").read_text())
    >>> read
    {'step': 3}
    >>> [p.name for p in folder.iterdir()]  # no temporary left behind
    ['run.json']
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "TEMP_PREFIX",
    "append_line",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "is_temporary",
    "publish_folder",
    "sha256_file",
    "staging_folder",
    "utc_now",
]

#: prefix of every temporary file or folder written by this module
TEMP_PREFIX = ".tmp-"

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows would otherwise translate newlines
_CHUNK = 1 << 20


def is_temporary(name: str) -> bool:
    """True for names of files or folders left behind by an interrupted write.

    Examples:
        >>> is_temporary(".tmp-card.json-1a2b3c4d"), is_temporary("card.json")
        (True, False)
    """
    return name.startswith(TEMP_PREFIX)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the entries of folder ``path`` (new names, renames) durable.

    Windows cannot open folders for fsync; NTFS journals metadata itself, so
    skipping it there is what other tools (e.g. SQLite) do too.

    Args:
        path: an existing folder.

    Examples:
        >>> import tempfile
        >>> fsync_dir(tempfile.gettempdir())
    """
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    # Read-write: Windows' fsync (_commit) needs a handle that may write.
    fd = os.open(path, os.O_RDWR | _O_BINARY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temporary(folder: Path, stem: str) -> tuple[int, Path]:
    # os.open with 0o666 honours the umask, unlike tempfile.mkstemp's 0o600:
    # stores and model folders are often shared by a lab, so files must get the
    # usual permissions.
    for _ in range(100):
        path = folder / f"{TEMP_PREFIX}{stem}-{secrets.token_hex(4)}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not find a free temporary name", str(folder))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file name to write by name; it becomes ``path`` when the block ends.

    For writers that want a file name rather than a file object (safetensors,
    ``torch.save``, tifffile). When the block ends normally the temporary file
    is fsynced and renamed over ``path``; when it raises, the temporary file is
    deleted and ``path`` keeps its old content (or stays absent).

    Args:
        path: final file name; its folder must exist.

    Yields:
        The temporary file (created empty) in the same folder.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> target = Path(tempfile.mkdtemp()) / "weights.bin"
        >>> with atomic_path(target) as temporary:
        ...     _ = temporary.write_bytes(b"new weights")
        >>> target.read_bytes()
        b'new weights'
    """
    path = Path(path)
    fd, temporary = _create_temporary(path.parent, path.name)
    os.close(fd)
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:  # includes KeyboardInterrupt and GeneratorExit
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file so that ``path`` holds either its old content or all of the new.

    Args:
        path: final file name; its folder must exist.
        write: called with a binary file object to write the content.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> target = Path(tempfile.mkdtemp()) / "data.bin"
        >>> atomic_write(target, lambda handle: handle.write(b"\\x00\\x01"))
        >>> target.read_bytes()
        b'\\x00\\x01'
    """
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        write(handle)


def atomic_write_bytes(path: str | os.PathLike, content: bytes) -> None:
    """Atomically write ``content`` to ``path`` (see :func:`atomic_write`).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> target = Path(tempfile.mkdtemp()) / "blob"
        >>> atomic_write_bytes(target, b"abc")
        >>> target.read_bytes()
        b'abc'
    """
    atomic_write(path, lambda handle: handle.write(content))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` to ``path`` as UTF-8 (newlines as given, on every system).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> target = Path(tempfile.mkdtemp()) / "README.md"
        >>> atomic_write_text(target, "# µm\\n")
        >>> target.read_text(encoding="utf-8")
        '# µm\\n'
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int | None = 1,
                      ensure_ascii: bool = True) -> None:
    """Atomically write ``value`` as JSON (UTF-8, a final newline).

    The value is serialised before anything is written, so a value JSON
    cannot hold raises ``TypeError`` and leaves ``path`` untouched.

    Args:
        path: final file name; its folder must exist.
        value: anything :func:`json.dumps` accepts.
        indent: as for :func:`json.dumps` (None: one line).
        ensure_ascii: escape non-ASCII characters (``\\u00b5``), so that the
            file reads the same whatever the reader's default encoding.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> target = Path(tempfile.mkdtemp()) / "active.json"
        >>> atomic_write_json(target, {"version": "3"}, indent=None)
        >>> target.read_text()
        '{"version": "3"}\\n'
    """
    text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii) + "\n"
    atomic_write_text(path, text)


@contextlib.contextmanager
def staging_folder(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``final`` in which to build a folder of files.

    Call :func:`publish_folder` inside the block to move it into place. Whatever
    is still in the temporary folder when the block ends (the block raised, or
    the folder was never published) is deleted.

    Args:
        final: where the folder will go; its parent must exist.

    Yields:
        The empty temporary folder.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> final = Path(tempfile.mkdtemp()) / "model"
        >>> with staging_folder(final) as staging:
        ...     _ = (staging / "card.json").write_text("{}")
        ...     publish_folder(staging, final)
        >>> sorted(p.name for p in final.parent.iterdir()), (final / "card.json").read_text()
        (['model'], '{}')
    """
    final = Path(final)
    staging = final.parent / f"{TEMP_PREFIX}{final.name}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_folder(staging: str | os.PathLike, final: str | os.PathLike,
                   sync: bool = True) -> None:
    """Rename a complete ``staging`` folder to ``final`` in one step.

    Args:
        staging: the folder built (usually from :func:`staging_folder`), on the
            same file system as ``final``.
        final: the new name; must not exist, or be an empty folder (replaced).
        sync: fsync every file first, so that after a power cut the folder is
            either absent or complete. Without it (results that can be made
            again) the rename is still atomic for a process that is killed.

    Raises:
        OSError: ``final`` exists and is not an empty folder (``final.exists()``
            tells this from other failures), or the rename failed.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "taken").mkdir(); _ = (root / "taken" / "a").write_text("a")
        >>> try:
        ...     with staging_folder(root / "taken") as staging:
        ...         publish_folder(staging, root / "taken")
        ... except OSError:
        ...     print("refused")
        refused
        >>> [p.name for p in root.iterdir()]  # the staging folder is gone
        ['taken']
    """
    staging, final = Path(staging), Path(final)
    if sync:
        for folder, subfolders, files in os.walk(staging):
            for name in files:
                _fsync_file(Path(folder) / name)
            for name in subfolders:
                fsync_dir(Path(folder) / name)
        fsync_dir(staging)
    if final.is_dir() and not final.is_symlink():
        with contextlib.suppress(OSError):  # only succeeds when empty; Windows cannot rename onto
            final.rmdir()
    os.rename(staging, final)
    fsync_dir(final.parent)


def append_line(path: str | os.PathLike, line: bytes) -> None:
    """Durably append one line to a text file that is only ever appended to.

    If a previous append was cut short (no final newline), a newline is written
    first so the torn fragment stays on its own line, where readers skip it,
    instead of corrupting the new line.

    Args:
        path: the file (created if missing).
        line: the bytes of the line, without a newline.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> log = Path(tempfile.mkdtemp()) / "log.jsonl"
        >>> _ = log.write_bytes(b'{"torn')
        >>> append_line(log, b'{"step": 1}')
        >>> log.read_bytes().splitlines()
        [b'{"torn', b'{"step": 1}']
    """
    with open(path, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        prefix = b""
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                prefix = b"\n"
        handle.write(prefix + line + b"\n")  # append mode: always at the end
        handle.flush()
        os.fsync(handle.fileno())


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks.

    Cached per (path, size, modification and change time, inode): corrections
    of many planes of one large stack would otherwise re-read the whole stack
    at every save. A file replaced by :func:`atomic_path` gets a new inode, so
    it is always hashed afresh.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "empty"
        >>> _ = path.write_bytes(b"")
        >>> sha256_file(path)[:16]
        'e3b0c44298fc1c14'
    """
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256_file_cached(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
                               stat.st_ino)


@lru_cache(maxsize=64)
def _sha256_file_cached(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def utc_now() -> str:
    """The current time as the records of this package write it: UTC ISO 8601, in seconds.

    Examples:
        >>> stamp = utc_now()
        >>> len(stamp), stamp[10], stamp.endswith("+00:00")
        (25, 'T', True)
    """
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
