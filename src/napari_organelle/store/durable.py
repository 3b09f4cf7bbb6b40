"""Crash-safe file operations: atomic writes, durable appends, a cross-process lock.

The training store must survive the process being killed at any instant
(napari closed, laptop battery empty, OOM killer). The rules used throughout:

* a file is written to a temporary name in its final folder, flushed and
  fsynced, then renamed over the final name (``os.replace`` is atomic), so a
  reader sees either nothing or the whole file;
* the folder is fsynced after a rename so the new name itself is durable;
* temporary names start with :data:`TEMP_PREFIX`, so left-overs of a killed
  write are recognisable and can be deleted without guessing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import StoreError

#: prefix of every temporary file or folder the store creates
TEMP_PREFIX = ".tmp-"


def is_temporary(name: str) -> bool:
    """True for names of files left behind by an interrupted write."""
    return name.startswith(TEMP_PREFIX)


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (new names, renames) durable.

    Windows cannot open folders for fsync; NTFS journals metadata itself, so
    skipping it there is what other tools (e.g. SQLite) do too.
    """
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows would otherwise translate newlines


def _create_temporary(folder: Path, stem: str) -> tuple[int, Path]:
    # os.open with 0o666 honours the umask, unlike tempfile.mkstemp's 0o600:
    # stores are often shared by a lab, so files must get the usual permissions.
    for _ in range(100):
        path = folder / f"{TEMP_PREFIX}{stem}-{secrets.token_hex(4)}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not find a free temporary name", str(folder))


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file so that ``path`` holds either its old content or all of the new.

    Args:
        path: final file name; its folder must exist.
        write: called with a binary file object to write the content.
    """
    fd, temporary = _create_temporary(path.parent, path.name)
    os.close(fd)  # reopened by name: writers such as tifffile want a file object with a path
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, content: bytes) -> None:
    """Atomically write ``content`` to ``path`` (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(content))


def atomic_write_tiff(path: Path, array: np.ndarray) -> None:
    """Atomically write a 2-D array as a lossless, zlib-compressed TIFF.

    zlib is in every TIFF reader (Fiji, tifffile, skimage, nnU-Net) and shrinks
    label masks a hundredfold; ``minisblack`` stops readers guessing RGB.
    """
    import tifffile

    atomic_write(
        path,
        lambda handle: tifffile.imwrite(
            handle, array, photometric="minisblack", compression="zlib", metadata=None
        ),
    )


def append_line(path: Path, line: bytes) -> None:
    """Durably append one line to a text file that is only ever appended to.

    If a previous append was cut short (no final newline), a newline is written
    first so the torn fragment stays on its own line, where readers skip it,
    instead of corrupting the new line.

    Args:
        path: the file (created if missing).
        line: the bytes of the line, without a newline.
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


def check_writable(folder: Path) -> None:
    """Raise unless a file can really be created in ``folder``.

    ``os.access`` is not enough: it says yes to root on read-only mounts and
    ignores ACLs and full disks, so this creates and deletes a probe file.

    Raises:
        StoreError: the folder cannot be written.
    """
    try:
        fd, probe = _create_temporary(folder, "write-probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise StoreError(
            f"cannot write to the training store folder {folder} ({reason}); "
            "pick a folder you can write to, or ask its owner for write permission"
        ) from None


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout_s: float = 30.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` across processes.

    The operating system releases the lock when the process dies, so a killed
    save never leaves the store locked (unlike a lock *file* that must exist).

    Raises:
        StoreError: another process held the lock for ``timeout_s`` seconds.
    """
    handle = open(path, "a+b")  # noqa: SIM115 - closed in finally
    deadline = time.monotonic() + timeout_s
    try:
        while not _try_lock(handle):
            if time.monotonic() > deadline:
                raise StoreError(
                    f"another program has been writing to the training store {path.parent} "
                    f"for over {timeout_s:.0f} s; try again when it has finished"
                )
            time.sleep(0.05)
        try:
            yield
        finally:
            _unlock(handle)
    finally:
        handle.close()


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle: BinaryIO) -> bool:
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle: BinaryIO) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle: BinaryIO) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(handle: BinaryIO) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
