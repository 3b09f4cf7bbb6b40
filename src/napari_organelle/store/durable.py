"""The training store's crash-safe operations: label TIFFs, a write probe, a cross-process lock.

The store must survive the process being killed at any instant (napari
closed, laptop battery empty, OOM killer). The generic rules and primitives
(temporary name, fsync, rename; durable appends) live in
:mod:`napari_organelle.durable` and are re-exported here; this module adds
what only the store needs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..durable import (
    TEMP_PREFIX,
    _create_temporary,
    append_line,
    atomic_write,
    atomic_write_bytes,
    fsync_dir,
    is_temporary,
)
from ..errors import StoreError

__all__ = [
    "TEMP_PREFIX",
    "append_line",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_tiff",
    "check_writable",
    "exclusive_lock",
    "fsync_dir",
    "is_temporary",
]


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
