"""DeepLabV3+ (Chen et al., 2018): encoder with atrous convolution, ASPP and a decoder.

The model returns logits at the input resolution for any input size; it knows nothing about training,
data or logging, and is usable on its own like a timm or torchvision model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .aspp import ASPP
from .decoder import DeepLabV3PlusDecoder, resize
from .encoders import build_encoder
from .input_channels import set_input_channels
from .pretrained import load_pretrained, read_pretrained

# ASPP rates of the paper at output stride 16; they scale inversely with the output stride (12/24/36 at 8).
PAPER_RATES_OS16 = (6, 12, 18)


def scale_atrous_rates(rates: Sequence[int], from_stride: int, to_stride: int) -> tuple[int, ...]:
    """ASPP rates defined at output stride ``from_stride``, at ``to_stride``: the same field of view in pixels."""
    return tuple(max(1, round(r * from_stride / to_stride)) for r in rates)


def default_atrous_rates(output_stride: int) -> tuple[int, ...]:
    return scale_atrous_rates(PAPER_RATES_OS16, 16, output_stride)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ semantic segmentation model.

    Args:
        num_classes: number of classes (21 for Pascal VOC, 19 for Cityscapes).
        encoder: ``xception41``/``xception65``/``xception71`` (Modified Aligned Xception), ``xception_tiny``
            (small variant for CPU demos and tests), any segmentation-models-pytorch encoder name
            (``resnet101``, ``mobilenet_v2``...) or ``tu-<timm model>``.
        output_stride: encoder output stride, 8, 16 or 32.
        pretrained: initial weights. The whole model (the classifier left at random when the class count
            differs) from an official TensorFlow DeepLab checkpoint prefix (``.../model.ckpt``) or a segkit
            checkpoint (``segkit fit`` or ``segkit convert``); the encoder from a backbone-only TF checkpoint,
            an encoder weights file, a timm name (``xception65.tf_in1k``) or an smp weights name
            (``imagenet``); None for random initialization.
        atrous_rates: ASPP rates at ``output_stride``; default 6/12/18 scaled by 16 / output_stride.
        decoder_channels: ASPP and decoder width (256 in the paper).
        low_level_channels: low-level projection width (48 in the paper).
        dropout: dropout after the ASPP projection (0.1 in the official implementation).
        multilabel: the logits are read one sigmoid per class (overlapping labels), not one softmax over the
            classes; inference (:func:`segkit.inference.predict_probs`) reads this attribute.
        binary: a two-class problem (background, foreground) with one output read by a sigmoid (the
            foreground's probability) instead of two read by a softmax; ``num_classes`` stays 2, and inference
            gives the probabilities of both classes, ``1 - p`` and ``p``.
        in_channels: input bands (3: RGB). RGB-pretrained weights are kept for other counts: the first
            convolution's extra bands start at zero weights, one band takes the sum of the RGB weights
            (:mod:`segkit.models.input_channels`).
    """

    def __init__(
        self,
        num_classes: int,
        encoder: str = "xception65",
        output_stride: int = 16,
        pretrained: str | None = None,
        atrous_rates: Sequence[int] | None = None,
        decoder_channels: int = 256,
        low_level_channels: int = 48,
        dropout: float = 0.1,
        in_channels: int = 3,
        multilabel: bool = False,
        binary: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if binary and (num_classes != 2 or multilabel):
            raise ValueError(
                f"a binary (one-output sigmoid) model has 2 classes and one label per pixel; got {num_classes}"
            )
        self.num_classes, self.in_channels, self.multilabel, self.binary = num_classes, in_channels, multilabel, binary
        whole, weights = read_pretrained(pretrained)  # a weights file is read once, here
        self.encoder = build_encoder(
            encoder, output_stride, None if whole else pretrained, state=None if whole else weights
        )
        # pretrained encoders are RGB: built for 3 bands, loaded, then widened (a whole model widens on loading)
        set_input_channels(self.encoder, in_channels, keep_weights=pretrained is not None and not whole)
        rates = tuple(atrous_rates) if atrous_rates is not None else default_atrous_rates(output_stride)
        self._rates_at = (rates, output_stride)  # rates are defined at this output stride
        self.aspp = ASPP(self.encoder.out_channels, rates, decoder_channels, dropout)
        self.decoder = DeepLabV3PlusDecoder(
            self.encoder.low_channels,
            1 if binary else num_classes,
            aspp_chs=decoder_channels,
            low_proj_chs=low_level_channels,
            chs=decoder_channels,
        )
        if whole:
            report = load_pretrained(self, pretrained, weights)
            if not (torch.distributed.is_initialized() and torch.distributed.get_rank() > 0):  # once under DDP
                print(report, flush=True)

    @property
    def output_stride(self) -> int:
        return self.encoder.output_stride

    def set_output_stride(self, output_stride: int) -> None:
        """Switches encoder dilation and ASPP rates for a new output stride, keeping the weights.

        A model trained at output stride 16 with rates 6/12/18 is evaluated at 8 with rates 12/24/36, the
        paper's evaluation protocol.
        """
        self.encoder.set_output_stride(output_stride)
        self.aspp.set_atrous_rates(scale_atrous_rates(*self._rates_at, output_stride))

    def forward(self, x: torch.Tensor, upsample: bool = True) -> torch.Tensor:
        """Logits (B, K, H, W); with ``upsample=False`` at the decoder's stride 4, (B, K, ceil(H/4), ceil(W/4)),
        as the official model returns them before ``predict_labels`` resizes them."""
        feats = self.encoder(x)  # low: (B, C_low, H/4, W/4), out: (B, C_out, H/OS, W/OS)
        logits = self.decoder(self.aspp(feats["out"]), feats["low"])  # (B, K, H/4, W/4)
        return resize(logits, x.shape[-2:]) if upsample else logits  # (B, K, H, W)
