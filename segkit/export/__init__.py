"""A trained model as a file to run without segkit (ONNX, INT8 ONNX, TorchScript), and what each file records.

Two forms:

- **logits** (:func:`write_logits_file`): a normalized float32 batch ``(N, C, H, W)`` (RGB, or the model's
  bands), ``x = (pixel / max - mean) / std`` -> logits ``(N, num_classes, H, W)`` at the input size. ONNX or
  TorchScript.
- **end-to-end** (:func:`write_end_to_end_file`, :class:`EndToEnd`): an image ``(H, W, C)`` as stored (uint8
  RGB, or the model's bands as uint8 or uint16; or a batch ``(N, H, W, C)``) of any size -> ``labels``
  ``(H, W)`` (a multi-label model's ``(K, H, W)`` masks at its thresholds; and/or ``probs``, ``logits``), with
  normalization, the evaluation padding, scales and flip inside the graph. ONNX.

Batch norm is folded into the convolutions in both. Each file's metadata (:mod:`segkit.io.exported_metadata`) holds its
contract, classes, palette, mean/std, settings and the source checkpoint's SHA-256; :mod:`.quantize` makes an
INT8 copy for CPUs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..io.exported_metadata import FORMATS, OUTPUTS, ModelFileError, read_metadata, sha256
from .end_to_end import EndToEnd
from .writers import export_onnx, export_torchscript, write_new

__all__ = [
    "FORMATS",
    "OUTPUTS",
    "EndToEnd",
    "ModelFileError",
    "write_new",
    "write_end_to_end_file",
    "write_logits_file",
    "read_metadata",
    "sha256",
]


def write_logits_file(
    model: nn.Module, fmt: str, path: Path, meta: dict, height: int = 513, width: int = 513, dynamic: bool = True
) -> None:
    """Writes the logits form of ``model`` (eval mode) as ``fmt`` at ``path``.

    ONNX files have a dynamic batch size, height and width unless ``dynamic=False`` (batch 1, ``height`` x
    ``width``); the example input of that size is what the model is traced with. TorchScript is traced: its
    shape arithmetic is recorded, so it also takes other sizes.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    model = model.float().cpu().eval()
    # two images in a dynamic example: a size of 1 would be taken for a constant
    example = torch.randn(2 if dynamic and fmt == "onnx" else 1, model.in_channels, height, width)
    with torch.no_grad():
        if fmt == "onnx":
            dims = {0: "batch", 2: "height", 3: "width"} if dynamic else None
            export_onnx(model, example, path, meta, "image", ("logits",), dims)
        else:
            export_torchscript(model, example, path, meta)


def write_end_to_end_file(module: EndToEnd, path: Path, meta: dict) -> None:
    """Writes ``module`` as ONNX at ``path``, its height and width (and batch, when batched) dynamic."""
    module = module.float().cpu().eval()
    # two images of unequal sides: no size may be taken for a constant
    shape = (2, 200, 264, module.in_channels) if module.batched else (200, 264, module.in_channels)
    example = torch.randint(0, 256, shape, dtype=torch.int32).to(module.pixel_dtype)
    dims = {0: "batch", 1: "height", 2: "width"} if module.batched else {0: "height", 1: "width"}
    with torch.no_grad():
        export_onnx(module, example, path, meta, "image", module.outputs, dims)
