"""The whole of inference as one module: a uint8 RGB image in, class labels (or probabilities) out.

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

from ..inference.predict import predict_logits, predict_probs

OUTPUTS = ("labels", "probs", "logits")


def labels_dtype(num_classes: int) -> torch.dtype:
    """uint8 when every class index fits in it (1 byte a pixel), else int64."""
    return torch.uint8 if num_classes <= 256 else torch.int64


class EndToEnd(nn.Module):
    """``image`` uint8 RGB ``(H, W, 3)`` (or ``(N, H, W, 3)`` with ``batched``) -> ``outputs``, each at the
    image's size: ``labels`` ``(H, W)`` class indices, ``probs`` ``(K, H, W)`` float32 class probabilities
    averaged over the scales and flips, ``logits`` ``(K, H, W)`` (one scale without flip only: averaged
    probabilities have no logits).

    ``model`` is a :class:`~segkit.models.DeepLabV3Plus` in eval mode (batch norm folded or not).
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        pad_to: Sequence[int] | None = None,
        outputs: Sequence[str] = ("labels",),
        batched: bool = False,
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
        self.model = model
        # (pixel / 255 - mean) / std, as the training transform: one subtraction and one division on 0-255
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.scales, self.flip, self.pad_to = [float(s) for s in scales], flip, pad_to
        self.outputs, self.batched = tuple(outputs), batched
        self.labels_dtype = labels_dtype(model.num_classes)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        if not self.batched:
            image = image.unsqueeze(0)
        x = (image.permute(0, 3, 1, 2).float() - self.pixel_mean) / self.pixel_std
        if self.outputs == ("labels",):  # the common case: no probabilities leave the graph
            results = [self._probs(x).argmax(1).to(self.labels_dtype)]
        else:
            results = []
            probs = self._probs(x) if ("labels" in self.outputs or "probs" in self.outputs) else None
            for name in self.outputs:
                if name == "labels":
                    results.append(probs.argmax(1).to(self.labels_dtype))
                elif name == "probs":
                    results.append(probs)
                else:
                    results.append(self._logits(x))
        if not self.batched:
            results = [r.squeeze(0) for r in results]
        return results[0] if len(results) == 1 else tuple(results)

    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        return predict_probs(self.model, x, self.scales, self.flip, pad_to=self.pad_to)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return predict_logits(self.model, x, self.pad_to)
