"""The DeepLabV3+ decoder (Chen et al., 2018, Sec. 3.1 and Fig. 2).

Low-level encoder features (stride 4) are reduced to 48 channels by a 1x1 convolution, the ASPP output is
upsampled bilinearly to their size, both are concatenated and refined by two 3x3 separable convolutions of
256 channels; a 1x1 classifier gives the logits. Every resize goes to an explicit size, so inputs such as
the paper's 513x513 crops (33x33 at stride 16, 129x129 at stride 4) work, as do all other sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ActLayer, ConvBnAct, NormLayer, SeparableConv2d

# The official TF implementation resizes with align_corners=True (tf.image.resize_bilinear).
ALIGN_CORNERS = True


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of features or logits to an explicit (H, W)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=ALIGN_CORNERS)


class DeepLabV3PlusDecoder(nn.Module):
    """Decoder producing class logits at the low-level feature resolution (stride 4).

    Args:
        low_chs: channels of the stride-4 encoder features.
        num_classes: number of output classes.
        aspp_chs: channels of the ASPP output.
        low_proj_chs: width of the low-level projection (48 in the paper).
        chs: width of the two refinement convolutions (256 in the paper).
        norm_layer: normalization layer type.
        act_layer: activation type.
    """

    def __init__(
        self,
        low_chs: int,
        num_classes: int,
        aspp_chs: int = 256,
        low_proj_chs: int = 48,
        chs: int = 256,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        self.low_proj = ConvBnAct(low_chs, low_proj_chs, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.refine = nn.Sequential(
            SeparableConv2d(aspp_chs + low_proj_chs, chs, 3, norm_layer=norm_layer, act_layer=act_layer),
            SeparableConv2d(chs, chs, 3, norm_layer=norm_layer, act_layer=act_layer),
        )
        self.classifier = nn.Conv2d(chs, num_classes, 1)

    def forward(self, aspp_out: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.low_proj(low)  # (B, 48, H/4, W/4)
        x = torch.cat([resize(aspp_out, low.shape[-2:]), low], dim=1)  # (B, 256 + 48, H/4, W/4)
        return self.classifier(self.refine(x))  # (B, num_classes, H/4, W/4)
