"""Atrous conversion of an encoder built at output stride 32: its last strides become dilations.

DeepLab (Chen et al., 2017, section 3.1) keeps the feature maps of a classification network at output stride
16 or 8 by removing the strides of its last stages and dilating every layer after them by the stride removed:
a layer whose input has been downsampled ``r`` times in the original network, with ``r`` above the output
stride, gets dilation ``r / output_stride``. A strided layer whose input is still at the output stride keeps
its dilation and loses its stride. The result computes the original network's features at every position of
the finer grid, so its features taken every ``32 / output_stride`` pixels are the original ones
(tests/models/test_atrous.py). segmentation-models-pytorch's ``make_dilated`` does this for its own encoders, stage by
stage; this does it for any encoder, such as timm's original Xception (``legacy_xception``), whose constructor
takes no output stride: the reductions are measured on a probe image, layer by layer.

Convolutions and max pooling can be dilated; an encoder that downsamples in another way (average pooling,
patch embedding, a strided operation inside a layer's forward) cannot, and :func:`make_atrous` says so.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DILATABLE = (nn.Conv2d, nn.MaxPool2d)


class DilatedMaxPool2d(nn.MaxPool2d):
    """Max pooling whose padding may exceed half its kernel, as a dilated pool's must (PyTorch's refuses it):
    the input is padded with -inf first, as max pooling pads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = _pair(self.padding)
        x = F.pad(x, (pw, pw, ph, ph), value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride, 0, self.dilation, self.ceil_mode)


class NotAtrous(ValueError):
    """The encoder cannot run at the requested output stride."""


def _reductions(body: nn.Module, probe: int, in_channels: int) -> dict[nn.Module, tuple[int, int]]:
    """Per strided-or-spatial leaf module: the original network's downsampling of its input and output
    (powers of two, measured on a ``probe`` x ``probe`` image)."""
    seen: dict[nn.Module, tuple[int, int]] = {}

    def level(size: int) -> int:
        return 2 ** round(math.log2(probe / max(size, 1)))

    def record(module, args, output):
        if module not in seen and torch.is_tensor(args[0]) and args[0].ndim == 4 and torch.is_tensor(output):
            seen[module] = (level(args[0].shape[-1]), level(output.shape[-1]))

    hooks = [m.register_forward_hook(record) for m in body.modules() if isinstance(m, DILATABLE)]
    try:
        with torch.no_grad():
            body(torch.zeros(1, in_channels, probe, probe))
    finally:
        for h in hooks:
            h.remove()
    return seen


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def make_atrous(body: nn.Module, output_stride: int, in_channels: int = 3, probe: int = 256) -> None:
    """Turns the strides of ``body`` (an encoder at output stride 32, eval or train mode) that would take its
    features below ``output_stride`` (8 or 16) into dilations, in place; the weights are untouched.

    Raises :class:`NotAtrous` when the encoder still downsamples past ``output_stride`` afterwards.
    """
    if output_stride == 32:
        return
    training = body.training
    body.eval()  # the probe must not move batch-norm statistics
    for module, (r_in, r_out) in _reductions(body, probe, in_channels).items():
        if r_out <= output_stride:
            continue
        dilation = max(1, r_in // output_stride)
        if isinstance(module, nn.MaxPool2d):
            padding = tuple(p * dilation for p in _pair(module.padding))
            pool = DilatedMaxPool2d(module.kernel_size, 1, padding, dilation, ceil_mode=module.ceil_mode)
            replace_module(body, module, pool)
            continue
        kernel, padding = _pair(module.kernel_size), module.padding
        module.stride = (1, 1)
        if max(kernel) > 1:
            if not isinstance(padding, str):  # "same" and "valid" follow the dilation themselves
                module.padding = tuple(p * dilation for p in _pair(padding))
            module.dilation = (dilation, dilation)
    final = _final_reduction(body, probe, in_channels)
    body.train(training)
    if final != output_stride:
        raise NotAtrous(f"downsamples by {final} after dilation (a stride outside its convolutions and max pools)")


def replace_module(body: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Puts ``new`` where ``old`` is in ``body``."""
    for parent in body.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)


def _final_reduction(body: nn.Module, probe: int, in_channels: int) -> int:
    with torch.no_grad():
        out = body(torch.zeros(1, in_channels, probe, probe))
    last = out[-1] if isinstance(out, list | tuple) else out
    return 2 ** round(math.log2(probe / last.shape[-1]))
