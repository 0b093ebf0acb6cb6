"""Modified Aligned Xception, the DeepLabV3+ encoder (Chen et al., 2018, Sec. 3.2 and Fig. 4).

Changes to Xception (Chollet, 2017) made by the paper: a deeper middle flow (16 blocks for Xception-65),
every max-pooling replaced by a strided depthwise separable convolution, and extra batch norm + ReLU after
each 3x3 depthwise convolution. The output stride (8, 16 or 32) is reached by turning the strides of the
last blocks into atrous rates, exactly as the official ``stack_blocks_dense`` does: the first block that
would exceed the output stride keeps the current rate with stride 1, and every later block uses the rate
multiplied by the removed stride.

Module and parameter names equal timm's ``xception41/65/71`` (a port of the official model whose
``*.tf_in1k`` weights come from the official TensorFlow checkpoints), so their state dicts load directly.
Unlike timm, the output stride can be changed after construction (:meth:`AlignedXception.set_output_stride`),
so a model trained at output stride 16 is evaluated at 8 with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from .layers import ActLayer, ConvBnAct, NormLayer, SeparableConv2d, set_conv_geometry

VALID_OUTPUT_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class BlockCfg:
    in_chs: int
    out_chs: tuple[int, int, int]
    stride: int = 1
    no_skip: bool = False
    start_with_relu: bool = True


def _flows(entry: list[tuple[int, int, int]], middle: tuple[int, int], exit_chs: tuple[int, ...]) -> list[BlockCfg]:
    """Block list from (in, out, stride) entry blocks, (channels, count) middle flow and exit-flow widths."""
    blocks = [BlockCfg(i, (o, o, o), s) for i, o, s in entry]
    chs, count = middle
    blocks += [BlockCfg(chs, (chs, chs, chs)) for _ in range(count)]
    e1, e2, e3, e4 = exit_chs  # exit flow: (e1, e2, e2) strided block, then (e3, e3, e4) without skip
    blocks.append(BlockCfg(chs, (e1, e2, e2), stride=2))
    blocks.append(BlockCfg(e2, (e3, e3, e4), no_skip=True, start_with_relu=False))
    return blocks


# Official DeepLab xception.py / timm xception_aligned.py block configurations.
_EXIT = (728, 1024, 1536, 2048)
ARCHS: dict[str, tuple[tuple[int, int], list[BlockCfg]]] = {
    # name: ((stem widths), blocks)
    "xception41": ((32, 64), _flows([(64, 128, 2), (128, 256, 2), (256, 728, 2)], (728, 8), _EXIT)),
    "xception65": ((32, 64), _flows([(64, 128, 2), (128, 256, 2), (256, 728, 2)], (728, 16), _EXIT)),
    "xception71": (
        (32, 64),
        _flows([(64, 128, 2), (128, 256, 1), (256, 256, 2), (256, 728, 1), (728, 728, 2)], (728, 16), _EXIT),
    ),
    # segkit's small variant for the CPU demo and tests: same topology, narrow, two middle-flow blocks.
    "xception_tiny": ((16, 32), _flows([(32, 48, 2), (48, 96, 2), (96, 192, 2)], (192, 2), (192, 256, 384, 512))),
}

# timm's Xception weights were trained with TF's batch-norm epsilon.
TF_BATCHNORM = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.1)


class XceptionBlock(nn.Module):
    """Three separable convolutions (the last one strided) with a residual connection.

    ``start_with_relu=True``: ReLU -> separable conv (no inner activation), three times (entry and middle
    flows). ``start_with_relu=False``: separable convs with BN + ReLU inside (the last exit-flow block).
    ``keeps_tap``: the block whose second separable convolution's output (before the ReLU that opens the
    third) feeds the decoder; that ReLU then runs out of place, so the tap is not overwritten.
    """

    def __init__(
        self, cfg: BlockCfg, dilation: int, norm_layer: NormLayer, act_layer: ActLayer, keeps_tap: bool = False
    ) -> None:
        super().__init__()
        self.no_skip = cfg.no_skip
        out = cfg.out_chs[-1]
        self.shortcut = None
        if not cfg.no_skip and (out != cfg.in_chs or cfg.stride != 1):
            self.shortcut = ConvBnAct(cfg.in_chs, out, 1, stride=cfg.stride, norm_layer=norm_layer, act_layer=None)
        self.stack = nn.Sequential()
        in_chs = cfg.in_chs
        for i, out_chs in enumerate(cfg.out_chs):
            if cfg.start_with_relu:
                # the first ReLU must not overwrite the block input, which the shortcut still needs, nor the
                # third the decoder's tap
                self.stack.add_module(f"act{i + 1}", act_layer(inplace=i == 1 or (i == 2 and not keeps_tap)))
            self.stack.add_module(
                f"conv{i + 1}",
                SeparableConv2d(
                    in_chs,
                    out_chs,
                    3,
                    stride=cfg.stride if i == 2 else 1,
                    dilation=dilation,
                    norm_layer=norm_layer,
                    act_layer=None if cfg.start_with_relu else act_layer,
                ),
            )
            in_chs = out_chs

    def set_geometry(self, stride: int, dilation: int) -> None:
        for i in (1, 2, 3):
            getattr(self.stack, f"conv{i}").set_geometry(stride if i == 3 else 1, dilation)
        if self.shortcut is not None:
            set_conv_geometry(self.shortcut.conv, stride, 1)

    def forward(self, x: torch.Tensor, return_tap: bool = False):
        """The block output; with ``return_tap``, also the tap: the output of the second separable conv (its
        pointwise batch norm) before the ReLU that opens the third, the official ``separable_conv2_pointwise``
        end point."""
        out, tap = x, None
        for name, layer in self.stack.named_children():
            if name == "act3":
                tap = out
            out = layer(out)
        if not self.no_skip:
            out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return (out, tap) if return_tap else out


class AlignedXception(nn.Module):
    """Modified Aligned Xception encoder returning ``{"low": stride-4 features, "out": stride-OS features}``.

    ``"low"`` is the decoder's input inside the stride-4 entry-flow block, as the official model takes it
    (``entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise``; ``block3`` for Xception-71): the
    output of the block's second separable convolution, *before* the ReLU that opens the third. timm's
    ``feature_info`` entry at reduction 4 is that ReLU's output (``blocks.1.stack.act3``); the official tap
    changes the decoder's input, so segkit follows the official code. ``"out"`` is the exit-flow output.

    Args:
        arch: one of ``xception41``, ``xception65``, ``xception71`` or the small ``xception_tiny``.
        output_stride: 8, 16 or 32.
        norm_layer: normalization layer type (TF epsilon 1e-3 by default, as the pretrained weights).
        act_layer: activation type.
    """

    def __init__(
        self,
        arch: str = "xception65",
        output_stride: int = 16,
        norm_layer: NormLayer = TF_BATCHNORM,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"Unknown Aligned Xception '{arch}'; choose one of {sorted(ARCHS)}")
        (stem1, stem2), cfgs = ARCHS[arch]
        self.arch = arch
        self.stem = nn.Sequential(
            ConvBnAct(3, stem1, 3, stride=2, norm_layer=norm_layer, act_layer=act_layer),
            ConvBnAct(stem1, stem2, 3, stride=1, norm_layer=norm_layer, act_layer=act_layer),
        )
        self._nominal_strides = [c.stride for c in cfgs]
        # the block whose tap is at stride 4: the second strided block (after stem /2 and one /2 block)
        strided = [i for i, s in enumerate(self._nominal_strides) if s > 1]
        self.low_index = strided[1]
        self.blocks = nn.Sequential(
            *[XceptionBlock(c, 1, norm_layer, act_layer, keeps_tap=i == self.low_index) for i, c in enumerate(cfgs)]
        )
        self.low_channels = cfgs[self.low_index].out_chs[1]
        self.out_channels = cfgs[-1].out_chs[-1]
        self.output_stride = 32
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """Switch strides to atrous rates (or back) in place; the weights are unchanged."""
        if output_stride not in VALID_OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {VALID_OUTPUT_STRIDES}, got {output_stride}")
        stride, dilation = 2, 1  # after the stem
        for block, nominal in zip(self.blocks, self._nominal_strides):
            block_dilation = dilation
            if nominal > 1 and stride * nominal > output_stride:
                dilation *= nominal
                nominal = 1
            stride *= nominal
            block.set_geometry(nominal, block_dilation)
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)  # (B, C, H/2, W/2)
        low = x
        for i, block in enumerate(self.blocks):
            if i == self.low_index:
                x, low = block(x, return_tap=True)  # low: (B, C_low, H/4, W/4)
            else:
                x = block(x)
        return {"low": low, "out": x}  # out: (B, C_out, H/OS, W/OS)
