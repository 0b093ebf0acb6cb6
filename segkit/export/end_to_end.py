"""The whole of inference as one module: an image as it is stored in, class labels (or probabilities) out.

The image is uint8 RGB, or for a model of other bands its ``in_channels`` bands (in the order the model reads
them) as uint8 or uint16, divided by the type's maximum before the mean and std apply, as in training. A
multi-label model's labels are one 0/1 mask per class, each class's probability above its threshold.

Normalization with the training mean/std, the evaluation padding, the scales and flips and the official resize
path all run inside, by the very code ``segkit eval`` and ``segkit predict`` run
(:func:`segkit.inference.predict_probs`), so an exported graph cannot drift from them. Its sizes are integer
expressions of the input's height and width (:func:`~segkit.inference.scaled_size`), which is what lets the
graph keep them dynamic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..head import Head
from ..inference.predict import predict_logits, predict_probs
from ..io.exported_metadata import OUTPUTS


def labels_dtype(num_classes: int) -> torch.dtype:
    """uint8 when every class index fits in it (1 byte a pixel), else int64."""
    return torch.uint8 if num_classes <= 256 else torch.int64


class EndToEnd(nn.Module):
    """``image`` ``(H, W, C)`` (or ``(N, H, W, C)`` with ``batched``; uint8, or uint16 with ``pixel_max``
    65535) -> ``outputs``, each at the image's size: ``labels`` ``(H, W)`` class indices (a multi-label
    model's: ``(K, H, W)`` uint8, 1 where the class's probability is above its threshold), ``probs``
    ``(K, H, W)`` float32 class probabilities averaged over the scales and flips, ``logits`` ``(K, H, W)`` (one
    scale without flip only: averaged probabilities have no logits).

    ``model`` is a :class:`~segkit.models.DeepLabV3Plus` in eval mode (batch norm folded or not); its head decides
    the labels (:meth:`~segkit.head.Head.decide`), a sigmoid model's ``thresholds`` (0.5 each without) in the
    graph.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        pad_to: Sequence[int] | None = None,
        outputs: Sequence[str] = ("labels",),
        batched: bool = False,
        pixel_max: int = 255,
    ) -> None:
        super().__init__()
        unknown = [o for o in outputs if o not in OUTPUTS]
        if unknown or not outputs:
            raise ValueError(f"--outputs takes one or more of {', '.join(OUTPUTS)}, got {list(outputs)}")
        if "logits" in outputs and (list(scales) != [1.0] or flip):
            raise ValueError(
                "--outputs logits needs one scale (1.0) and no flip: several passes average probabilities, "
                "not logits; ask for probs"
            )
        if len(mean) != model.in_channels or len(std) != model.in_channels:
            raise ValueError(f"the model reads {model.in_channels} bands: give a mean and std of each")
        if pixel_max not in (255, 65535):
            raise ValueError(f"pixel_max is 255 (uint8 images) or 65535 (uint16), got {pixel_max}")
        self.model = model
        # (pixel / max - mean) / std, as the training transform: one subtraction and one division on the pixels
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * pixel_max)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * pixel_max)
        self.scales, self.flip, self.pad_to = [float(s) for s in scales], flip, pad_to
        self.outputs, self.batched = tuple(outputs), batched
        self.in_channels, self.pixel_dtype = model.in_channels, torch.uint8 if pixel_max == 255 else torch.uint16
        self.head = Head.of(model)
        self.multilabel = self.head.mode == "multilabel"
        self.labels_dtype = torch.uint8 if self.multilabel else labels_dtype(model.num_classes)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        if not self.batched:
            image = image.unsqueeze(0)
        x = (image.permute(0, 3, 1, 2).float() - self.pixel_mean) / self.pixel_std
        if self.outputs == ("labels",):  # the common case: no probabilities leave the graph
            results = [self._labels(self._probs(x))]
        else:
            results = []
            probs = self._probs(x) if ("labels" in self.outputs or "probs" in self.outputs) else None
            for name in self.outputs:
                if name == "labels":
                    results.append(self._labels(probs))
                elif name == "probs":
                    results.append(probs)
                else:
                    results.append(self._logits(x))
        if not self.batched:
            results = [r.squeeze(0) for r in results]
        return results[0] if len(results) == 1 else tuple(results)

    def _labels(self, probs: torch.Tensor) -> torch.Tensor:
        return self.head.decide(probs).to(self.labels_dtype)

    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        return predict_probs(self.model, x, self.scales, self.flip, pad_to=self.pad_to)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return predict_logits(self.model, x, self.pad_to)
