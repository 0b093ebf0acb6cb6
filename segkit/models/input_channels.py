"""Input bands other than RGB: the encoder's first convolution widened (or narrowed) to ``in_channels``, with
RGB-pretrained weights kept working.

The rule (:func:`adapt_input_weight`), for a first convolution pretrained on RGB:

- ``in_channels >= 3``: the first three bands take the red, green and blue weights, every further band zero
  weights. With the RGB bands first, the model computes exactly what the RGB model computes, whatever the
  other bands hold; training then learns what the other bands add (their weights get gradients from the
  first step). timm's ``adapt_input_conv`` and smp's ``patch_first_conv`` repeat the RGB weights over the
  bands instead (scaled by 3 / N), which changes the pretrained model's output from the start.
- ``in_channels < 3``: the first band takes the sum of the RGB weights (a grey image: R = G = B gives the
  RGB model's output, as timm and smp do for one band), the others zero.

Without pretrained weights the convolution is simply built for ``in_channels`` and initialized as PyTorch
initializes a new convolution.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def first_conv(module: nn.Module) -> tuple[str, nn.Conv2d]:
    """The name and the module of the first convolution that reads the image (the first ``Conv2d`` in
    registration order, which is the order of the stem in segkit's, timm's and smp's encoders)."""
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d):
            return name, child
    raise ValueError(f"{type(module).__name__} has no Conv2d to read the image")


def adapt_input_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """An RGB first convolution's weight (out, 3, kh, kw) for ``in_channels`` bands (the rule above)."""
    if weight.shape[1] != 3:
        raise ValueError(f"expected the weight of an RGB convolution (out, 3, kh, kw), got {tuple(weight.shape)}")
    if in_channels == 3:
        return weight
    out = weight.new_zeros(weight.shape[0], in_channels, *weight.shape[2:])
    if in_channels > 3:
        out[:, :3] = weight
    else:
        out[:, 0] = weight.sum(1)
    return out


def set_input_channels(encoder: nn.Module, in_channels: int, keep_weights: bool) -> None:
    """Replaces the encoder's first convolution (built for RGB) by one of ``in_channels`` inputs; with
    ``keep_weights`` its weights follow :func:`adapt_input_weight`, else it is a newly initialized convolution."""
    name, conv = first_conv(encoder)
    if conv.in_channels == in_channels:
        return
    if conv.in_channels != 3 or conv.groups != 1:
        raise ValueError(f"the encoder's first convolution {name} reads {conv.in_channels} channels, not RGB")
    new = copy.deepcopy(conv)  # its own class (timm's Conv2dSame pads at run time) and settings
    new.in_channels = in_channels
    new.weight = nn.Parameter(conv.weight.new_empty(conv.out_channels, in_channels, *conv.kernel_size))
    if keep_weights:
        with torch.no_grad():
            new.weight.copy_(adapt_input_weight(conv.weight, in_channels))
    else:
        new.reset_parameters()
    parent_name, _, attr = name.rpartition(".")
    parent = encoder.get_submodule(parent_name) if parent_name else encoder
    setattr(parent, attr, new)
