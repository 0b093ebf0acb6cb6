"""PyTorch checkpoint and weight files: read with errors that say, in one line, which file and what is wrong,
and written atomically.

PyTorch's own messages name neither the file nor the cause a user can act on: a truncated file gives
"PytorchStreamReader failed reading zip archive", any other file "Weights only load failed ... Re-running
with weights_only=False will likely succeed" (advice that would run arbitrary code from an untrusted file).
Files are always read with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from .disk import DiskFullError, free_bytes, is_disk_full, tensor_bytes


class CheckpointFileError(ValueError):
    """A checkpoint or weights file that cannot be used; the message names the file and the problem."""


class CheckpointNotFound(CheckpointFileError, FileNotFoundError):
    """The file does not exist."""


def read_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors naming ``path``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFound(f"{what} not found: {path}")
    if path.is_dir():
        raise CheckpointFileError(f"{what} {path} is a folder, not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointFileError(f"{what} {path} is empty (0 bytes): its writing was interrupted; use another")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointFileError(_explain(path, size, e, what)) from None


def _explain(path: Path, size: int, error: Exception, what: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":  # torch.save writes zip archives
        kind = "a text file" if _is_text(path) else f"a file starting with {head!r}"
        return f"{what} {path} is not a PyTorch file ({kind}, {size} bytes)"
    if not zipfile.is_zipfile(path) or "PytorchStreamReader" in str(error) or isinstance(error, EOFError):
        return (
            f"{what} {path} is truncated or corrupt ({size} bytes; its writing was probably interrupted): "
            "use another checkpoint, e.g. the previous last.ckpt or a best checkpoint"
        )
    if isinstance(error, pickle.UnpicklingError) or "Weights only load failed" in str(error):
        return (
            f"{what} {path} holds Python objects other than tensors and plain values; segkit reads only "
            "weights (torch.load weights_only=True), so it does not run code from files"
        )
    return f"{what} {path} cannot be read: {str(error).splitlines()[0]}"


def _is_text(path: Path) -> bool:
    with open(path, "rb") as f:
        chunk = f.read(512)
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_checkpoint(path: str | Path) -> dict:
    """A Lightning/segkit checkpoint (a dict with ``state_dict``), with one-line errors naming ``path``."""
    checkpoint = read_torch_file(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        keys = sorted(checkpoint)[:6] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointFileError(
            f"{path} is not a segkit checkpoint (no state_dict; it holds {keys}): give a "
            "file written by segkit fit or segkit convert"
        )
    return checkpoint


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file in the same folder, fsync and rename; a full disk
    raises :class:`~segkit.io.disk.DiskFullError` and leaves no temporary file (an earlier ``path`` stays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file (mkstemp's is private)
        os.close(fd)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):
            raise DiskFullError(path, tensor_bytes(obj), free_bytes(path.parent)) from None
        raise
    try:  # the rename itself survives a power loss once the folder is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # folders cannot be opened for fsync on some systems
