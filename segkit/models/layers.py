"""Building blocks shared by the encoder, ASPP and decoder.

DeepLabV3+ (Chen et al., 2018, "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation") uses one separable convolution everywhere: an atrous depthwise 3x3 convolution followed by a
pointwise 1x1 convolution, each with batch norm. Module names follow timm's ``xception_aligned`` so that
its state dicts (ported from the official TensorFlow checkpoints) load without renaming.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[..., nn.Module]


def same_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """Symmetric padding that keeps ``ceil(size / stride)`` outputs, as TF's fixed "SAME" padding does for k=3."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


def set_conv_geometry(conv: nn.Conv2d, stride: int, dilation: int) -> None:
    """Change a convolution's stride and dilation in place (weights untouched), keeping "same" padding."""
    k = conv.kernel_size[0]
    if k == 1:
        dilation = 1  # a 1x1 convolution has nothing to dilate
    conv.stride = (stride, stride)
    conv.dilation = (dilation, dilation)
    pad = same_padding(k, stride, dilation)
    conv.padding = (pad, pad)


class ConvBnAct(nn.Module):
    """Convolution (no bias) -> norm -> optional activation; keys ``conv.*`` and ``bn.*`` as timm's ConvNormAct."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs,
            out_chs,
            kernel_size,
            stride=stride,
            dilation=dilation,
            padding=same_padding(kernel_size, stride, dilation),
            bias=False,
        )
        self.bn = norm_layer(out_chs)
        self.act = act_layer(inplace=True) if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SeparableConv2d(nn.Module):
    """Atrous depthwise conv -> BN -> [act] -> pointwise 1x1 conv -> BN -> [act].

    With ``act_layer=None`` the activations are identities: the Xception entry and middle flows apply ReLU
    *before* each separable convolution instead (official DeepLab ``activation_fn_in_separable_conv=False``).
    ASPP and the decoder use ``act_layer=nn.ReLU``, as the official implementation does.

    Args:
        in_chs: input channels.
        out_chs: output channels.
        kernel_size: depthwise kernel size.
        stride: depthwise stride.
        dilation: depthwise atrous rate.
        norm_layer: normalization layer type.
        act_layer: activation type, or None for no activation inside the block.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(
            in_chs,
            in_chs,
            kernel_size,
            stride=stride,
            dilation=dilation,
            padding=same_padding(kernel_size, stride, dilation),
            groups=in_chs,
            bias=False,
        )
        self.bn_dw = norm_layer(in_chs)
        self.act_dw = act_layer(inplace=True) if act_layer is not None else nn.Identity()
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn_pw = norm_layer(out_chs)
        self.act_pw = act_layer(inplace=True) if act_layer is not None else nn.Identity()

    def set_geometry(self, stride: int, dilation: int) -> None:
        """Change the depthwise stride and atrous rate in place."""
        set_conv_geometry(self.conv_dw, stride, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_dw(self.bn_dw(self.conv_dw(x)))
        return self.act_pw(self.bn_pw(self.conv_pw(x)))
