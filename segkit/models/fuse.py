"""Inference copies of a model with batch norm folded into the convolutions.

In eval mode a batch norm is a fixed per-channel affine map, so a convolution followed by one equals a single
convolution with scaled weights and a bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``). DeepLabV3+ with
Xception-65 has 146 batch norms, most on large maps; folding them removes one read and one write of every such
map. ``segkit eval`` runs the folded copy; training and validation inside ``segkit fit`` keep the real layers.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .layers import ConvBnAct, SeparableConv2d

# (convolution, batch norm) attributes of segkit's blocks, whose forward applies the norm right after the
# convolution. Other modules (smp / timm encoders) are left as they are: an attribute name alone does not say
# whether a norm comes after its convolution or before it (pre-activation blocks).
CONV_BN_PAIRS = {ConvBnAct: (("conv", "bn"),), SeparableConv2d: (("conv_dw", "bn_dw"), ("conv_pw", "bn_pw"))}


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` where the batch norm of each ConvBnAct and SeparableConv2d (segkit's
    Xception, ASPP and decoder) is folded into its convolution and replaced by ``nn.Identity``.

    The copy computes the same function as ``model.eval()`` up to float rounding; the original is untouched.
    Its state dict has no ``bn`` keys, so save the original, not the copy.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        for conv_name, bn_name in CONV_BN_PAIRS.get(type(module), ()):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _BatchNorm) and bn.track_running_stats:
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return folded
