"""A trained model as a file to run without segkit (ONNX, INT8 ONNX, TorchScript), and what each file records.

Two forms:

- **logits** (:func:`write_logits_file`): a normalized float32 batch ``(N, C, H, W)`` (RGB, or the model's
  bands), ``x = (pixel / max - mean) / std`` -> logits ``(N, num_classes, H, W)`` at the input size. ONNX or
  TorchScript.
- **end-to-end** (:func:`write_end_to_end_file`, :class:`EndToEnd`): an image ``(H, W, C)`` as stored (uint8
  RGB, or the model's bands as uint8 or uint16; or a batch ``(N, H, W, C)``) of any size -> ``labels``
  ``(H, W)`` (a multi-label model's ``(K, H, W)`` masks at its thresholds; and/or ``probs``, ``logits``), with
  normalization, the evaluation padding, scales and flip inside the graph. ONNX.

:func:`write_model_file` writes either for a checkpoint's model and its data set, as ``segkit export`` does.
Batch norm is folded into the convolutions in both. Each file's metadata (:mod:`segkit.io.exported_metadata`) holds its
contract, classes, palette, mean/std, settings and the source checkpoint's SHA-256; :mod:`.quantize` makes an
INT8 copy for CPUs.
"""

from __future__ import annotations

from ..io.exported_metadata import FORMATS, OUTPUTS, ModelFileError, read_metadata, sha256
from .end_to_end import EndToEnd
from .model_file import write_model_file
from .writers import write_end_to_end_file, write_logits_file, write_new

__all__ = [
    "FORMATS",
    "OUTPUTS",
    "EndToEnd",
    "ModelFileError",
    "write_new",
    "write_end_to_end_file",
    "write_logits_file",
    "write_model_file",
    "read_metadata",
    "sha256",
]
