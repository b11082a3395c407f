"""Writing files so that a crash never leaves a half-written one: ``atomic_write``.

A checkpoint or a saved model overwrites the previous one. Written in place, a crash (or a
full disk, or Ctrl-C) half-way through would destroy the old file and leave a broken new
one. Instead the new contents go to a temporary file in the same folder, which is flushed to
disk (fsync) and then renamed over the target: a rename within one file system is atomic on
POSIX (and os.replace is atomic on Windows too), so a reader sees either the whole old file
or the whole new one. The folder is fsynced last so that the rename itself survives a power
cut. ModelCheckpoint and the models' save use it.
"""
from __future__ import annotations

import os
import secrets

__all__ = ["atomic_write"]


def atomic_write(path, write_fn):
    """Write the file at ``path`` atomically: ``write_fn(tmp_path)`` writes the whole file.

    ``tmp_path`` is a fresh name in the same folder as ``path`` that ends with the same
    file name (so writers that check or add an extension see the one they expect). When
    ``write_fn`` returns, the temporary file is fsynced and renamed over ``path``; if it
    raises, the temporary file is removed, ``path`` is left as it was and the error
    propagates. Returns ``path``.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    if not name:
        raise ValueError(f"atomic_write: path must name a file, got {path!r}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"atomic_write: the folder {folder!r} of {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"atomic_write: {path!r} is a directory, not a file")
    tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{name}")
    try:
        write_fn(tmp)
        if not os.path.isfile(tmp):
            raise RuntimeError(f"atomic_write: the writer did not create the file it was given "
                               f"({tmp!r}) for {path!r}")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data reaches the disk before the rename makes it visible
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)
    return path


def _fsync_folder(folder):
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened: Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
