"""Atomic writes: a crash mid-write leaves the old file (or folder) intact, never a torn one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def swap_in_directory(staging: Path, target: Path) -> None:
    """Replace folder ``target`` by ``staging``; readers see the old or the new one, never a mix.

    ``target`` is a symlink to a versioned folder, so the swap is one atomic
    ``rename`` of a fresh symlink over the old one; the previous folder is
    removed afterwards.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.resolve() if target.is_symlink() else None
    link_tmp = target.parent / f".{target.name}.link.{os.getpid()}"
    link_tmp.unlink(missing_ok=True)
    os.symlink(staging.name, link_tmp)
    if target.exists() and not target.is_symlink():
        shutil.rmtree(target)  # a plain folder from an older layout: nothing reads it atomically anyway
    os.replace(link_tmp, target)
    if old is not None and old != staging.resolve() and old.exists():
        shutil.rmtree(old, ignore_errors=True)
