"""A full disk, said in one line: which file, how many bytes it needed and how many were free.

PyTorch's writer reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc:672] . unexpected
pos ...`` with the ``OSError`` (errno ENOSPC) only in its context; segkit's writers look for that cause and
raise :class:`DiskFullError` instead, after removing what they had written.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import torch

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """Writing ``path`` ran out of space: ``needed`` bytes (None when not known beforehand), ``free`` bytes."""

    def __init__(self, path: Path, needed: int | None, free: int) -> None:
        self.path, self.needed, self.free = Path(path), needed, free
        need = f"needs about {human(needed)}" if needed is not None else "did not fit"
        super().__init__(
            errno.ENOSPC,
            f"no space left for {self.path}: it {need}, {human(free)} free on its disk; "
            "free some space or write elsewhere (earlier files are untouched)",
        )

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` or an error it was raised from is a full disk (or an exceeded quota)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in FULL:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def names_a_file(error: BaseException | None) -> bool:
    """Whether ``error`` or an error it was raised from is an OSError that names its file."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.filename:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (its nearest existing folder)."""
    folder = Path(path).absolute()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in a (nested) checkpoint: about its size on disk."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def written_whole(file: Path, write) -> None:
    """Runs ``write()``, which writes ``file``; when the disk fills, the partial file is removed and
    :class:`~segkit.io.disk.DiskFullError` names it."""
    try:
        write()
    except Exception as e:
        if not is_disk_full(e):
            raise
        Path(file).unlink(missing_ok=True)
        raise DiskFullError(file, None, free_bytes(file)) from None


def human(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
