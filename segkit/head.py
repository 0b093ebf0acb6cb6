"""The head of a segmentation model: how its logits become class probabilities, and probabilities decisions.

Three kinds, named as segmentation-models-pytorch names them in its losses and ``smp.metrics.get_stats``:

- ``multiclass``: K logits, one softmax over the classes, the most probable class.
- ``binary``: two classes (background, foreground) from one logit; its sigmoid ``p`` is the foreground's
  probability, the classes' probabilities are ``(1 - p, p)``, and the foreground is predicted where ``p`` is above
  the threshold ``t`` (0.5 unless tuned: ``p > 0.5`` is the most probable class).
- ``multilabel``: K logits, one sigmoid per class (overlapping labels); class k is present where its probability
  is above its threshold ``t_k``.

Inference averages the probabilities over scales and flips (:func:`segkit.inference.predict_probs`) and then
decides once, here (:meth:`Head.decide`): eval, predict, tiling, video, Segmenter, the exported graph, W&B and
training's validation all call it, so a threshold is applied in one place. The threshold tuning
(:mod:`segkit.evaluation.thresholds`) counts probabilities against the same float32 thresholds with the same strict
comparison, so the scores it reports are those of deciding at the thresholds it chooses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

MODES = ("multiclass", "binary", "multilabel")


def threshold_tensor(thresholds: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """``thresholds`` as float32 (then ``like``'s dtype and device): the values every decision and every threshold
    histogram compares probabilities with."""
    return torch.tensor([float(t) for t in thresholds], dtype=torch.float32).to(like.device, like.dtype)


@dataclass(frozen=True)
class Head:
    """What a model's outputs mean (``mode``, one of :data:`MODES`), its classes and its decision thresholds (one
    per class of a multi-label model, one for a binary model's foreground; 0.5 each when not given)."""

    mode: str
    num_classes: int
    thresholds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"a head is one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "binary" and self.num_classes != 2:
            raise ValueError(f"a binary head has 2 classes, got {self.num_classes}")
        if self.mode == "multiclass":
            object.__setattr__(self, "thresholds", None)
            return
        count = 1 if self.mode == "binary" else self.num_classes
        thresholds = tuple(float(t) for t in (self.thresholds or [0.5] * count))
        if len(thresholds) != count or not all(0 < t < 1 for t in thresholds):
            raise ValueError(
                f"a {self.mode} head takes {count} threshold(s) strictly between 0 and 1, got {list(thresholds)}"
            )
        object.__setattr__(self, "thresholds", thresholds)

    @classmethod
    def of(cls, model, thresholds: Sequence[float] | None = None) -> Head:
        """The head of a :class:`~segkit.models.DeepLabV3Plus` (its ``binary``/``multilabel`` flags) at
        ``thresholds``, by default the model's own (a checkpoint's, once loaded for inference)."""
        mode = (
            "binary"
            if getattr(model, "binary", False)
            else "multilabel"
            if getattr(model, "multilabel", False)
            else "multiclass"
        )
        return cls(mode, model.num_classes, thresholds or getattr(model, "thresholds", None))

    @property
    def outputs(self) -> int:
        """The model's output channels: one logit for a binary head, one per class otherwise."""
        return 1 if self.mode == "binary" else self.num_classes

    @property
    def default_loss(self) -> str:
        """The training loss when the config names none (:mod:`segkit.training.losses`): the cross-entropy of the
        softmax, or the binary cross-entropy of each sigmoid."""
        return "cross_entropy" if self.mode == "multiclass" else "binary_cross_entropy"

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, outputs, H, W) logits -> (B, K, H, W) class probabilities."""
        if self.mode == "binary":
            p = logits.sigmoid()
            return torch.cat([1 - p, p], 1)
        if self.mode == "multilabel":
            return logits.sigmoid()
        # exp(x - max) / sum written out: softmax(dim=1) to float precision; in an exported graph ONNX Runtime
        # runs it 10x faster than its Softmax over a dimension other than the last (24 against 242 ms for
        # 21 x 513 x 513 on 2 CPU cores), at 1.2x PyTorch's time
        e = (logits - logits.amax(1, keepdim=True)).exp()
        return e / e.sum(1, keepdim=True)

    def decide_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """:meth:`decide` on the probabilities of ``logits``; a multiclass head's most probable class is taken from
        the logits themselves (the same class, without rounding two close logits to one probability)."""
        if self.mode == "multiclass":
            return logits.argmax(1).to(torch.uint8 if self.num_classes <= 256 else torch.int64)
        return self.decide(self.probabilities(logits))

    def decide(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) class probabilities -> class indices (B, H, W) (uint8 up to 256 classes, else int64), or a
        multi-label head's (B, K, H, W) booleans."""
        if self.mode == "multilabel":
            return probs > threshold_tensor(self.thresholds, probs).view(1, -1, 1, 1)
        if self.mode == "binary":
            return (probs[:, 1] > threshold_tensor(self.thresholds, probs)).to(torch.uint8)
        return probs.argmax(1).to(torch.uint8 if self.num_classes <= 256 else torch.int64)
