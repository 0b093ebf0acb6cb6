"""Atrous Spatial Pyramid Pooling with atrous separable convolutions (DeepLabV3+, Chen et al., 2018, Sec. 3.1).

Five parallel branches on the encoder output: a 1x1 convolution, three 3x3 atrous separable convolutions
(rates 6/12/18 at output stride 16, doubled at output stride 8) and image-level pooling; concatenated,
projected to 256 channels by a 1x1 convolution with BN + ReLU, then dropout (keep_prob 0.9 in the official
implementation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ActLayer, ConvBnAct, NormLayer, SeparableConv2d


class ImagePooling(nn.Module):
    """Global average pooling -> 1x1 conv -> BN -> ReLU, broadcast back to the feature size."""

    def __init__(self, in_chs: int, out_chs: int, norm_layer: NormLayer, act_layer: ActLayer) -> None:
        super().__init__()
        self.proj = ConvBnAct(in_chs, out_chs, 1, norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.proj(F.adaptive_avg_pool2d(x, 1))  # (B, C, 1, 1)
        return pooled.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """ASPP head.

    Args:
        in_chs: encoder output channels.
        atrous_rates: the three atrous rates of the separable 3x3 branches.
        out_chs: branch and projection width (256 in the paper).
        dropout: dropout after the projection (0.1 in the official implementation).
        norm_layer: normalization layer type.
        act_layer: activation type.
    """

    def __init__(
        self,
        in_chs: int,
        atrous_rates: Sequence[int] = (6, 12, 18),
        out_chs: int = 256,
        dropout: float = 0.1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        if len(atrous_rates) != 3:
            raise ValueError(f"ASPP takes three atrous rates, got {list(atrous_rates)}")
        self.conv1x1 = ConvBnAct(in_chs, out_chs, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.atrous = nn.ModuleList(
            SeparableConv2d(in_chs, out_chs, 3, dilation=r, norm_layer=norm_layer, act_layer=act_layer)
            for r in atrous_rates
        )
        self.pool = ImagePooling(in_chs, out_chs, norm_layer, act_layer)
        self.project = ConvBnAct(5 * out_chs, out_chs, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.dropout = nn.Dropout(dropout)

    @property
    def atrous_rates(self) -> tuple[int, ...]:
        return tuple(branch.conv_dw.dilation[0] for branch in self.atrous)

    def set_atrous_rates(self, rates: Sequence[int]) -> None:
        """Change the branch rates in place (used when the output stride changes)."""
        if len(rates) != 3:
            raise ValueError(f"ASPP takes three atrous rates, got {list(rates)}")
        for branch, rate in zip(self.atrous, rates):
            branch.set_geometry(1, rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.conv1x1(x), *(branch(x) for branch in self.atrous), self.pool(x)]
        return self.dropout(self.project(torch.cat(branches, dim=1)))  # (B, 256, H/OS, W/OS)
