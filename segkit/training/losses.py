"""Training losses: cross-entropy (class weights, label smoothing, the official hard-pixel mining) and
segmentation-models-pytorch's Dice, Focal, Lovasz, Jaccard and Tversky losses, alone or as a weighted sum.

Every term ignores pixels labelled ``IGNORE_INDEX`` (255) completely: their logits change neither the loss nor
any gradient (tested for each term), and a batch without a labelled pixel gives a loss of 0 (PyTorch's and smp's
means over no pixels are NaN, which would stop training as a divergence).

Several processes (DDP): cross-entropy is one mean over the labelled pixels of the whole global batch, as on one
device (see :meth:`SegmentationLoss.forward`); hard-pixel mining keeps the hardest k% of each process's pixels, as
the official code does per GPU. smp's losses are computed on each process's share of the batch and DDP averages
their gradients: on N processes a set-level loss such as Dice is the mean of N per-share losses, not the Dice of
the global batch (on one process the two are the same).

``auto`` class weights: ENet's rule (Paszke et al., 2016), ``w_c = 1 / ln(1.02 + p_c)`` where ``p_c`` is class
c's share of the labelled training pixels, bounded between 1.42 (a class that covers everything) and 50.5 (a class
never seen), then scaled so that their mean over the training pixels is 1 (a weighted loss keeps the scale of the
unweighted one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import IGNORE_INDEX

SMP_LOSSES = {
    "dice": smp.losses.DiceLoss,
    "focal": smp.losses.FocalLoss,
    "lovasz": smp.losses.LovaszLoss,
    "jaccard": smp.losses.JaccardLoss,
    "tversky": smp.losses.TverskyLoss,
}
LOSS_NAMES = ("cross_entropy", "binary_cross_entropy", *SMP_LOSSES)
_SET_BY_SEGKIT = {"mode", "ignore_index", "from_logits"}


def enet_class_weights(counts: np.ndarray, c: float = 1.02) -> np.ndarray:
    """``auto`` weights from per-class pixel counts: ``1 / ln(c + p)``, scaled to a pixel-weighted mean of 1."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() <= 0:
        raise ValueError("class_weights: auto found no labelled pixel in the training set")
    share = counts / counts.sum()
    weights = 1.0 / np.log(c + share)
    return weights / float((share * weights).sum())


def hard_pixel_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    top_k_percent: float = 100.0,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy over labelled pixels; with ``top_k_percent < 100`` only the hardest k% of all pixels count.

    Like the official implementation, k% is taken of all pixels of the batch and ignored pixels have zero loss.
    """
    if top_k_percent >= 100.0:  # PyTorch's weighted mean, but 0 (not NaN) without a labelled pixel
        total = F.cross_entropy(
            logits, target, weight, ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=label_smoothing
        )
        return total / _mass(target, weight, total.dtype).clamp(min=1e-12)
    losses = F.cross_entropy(
        logits, target, weight, ignore_index=IGNORE_INDEX, reduction="none", label_smoothing=label_smoothing
    )
    k = max(1, int(losses.numel() * top_k_percent / 100.0))
    return losses.flatten().topk(k).values.mean()


def _mass(target: torch.Tensor, weight: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """What PyTorch's weighted mean divides by: the labelled pixels, each counted with its class weight."""
    labelled = target != IGNORE_INDEX
    if weight is None:
        return labelled.sum().to(dtype)
    return (weight.to(dtype)[torch.where(labelled, target, 0)] * labelled).sum()


class PerClassBinary(nn.Module):
    """A binary loss per class channel, averaged over the classes: smp's multilabel reduction, for a loss whose
    multilabel mode does not filter ignored pixels (smp 0.6's FocalLoss indexes a 3-D tensor with a 4-D mask)."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.loss(logits[:, k], target[:, k]) for k in range(logits.shape[1])]).mean()


class SegmentationLoss(nn.Module):
    """A weighted sum of loss terms.

    Args:
        terms: ``{name: weight}``, names from :data:`LOSS_NAMES`; e.g. ``{"cross_entropy": 1, "dice": 0.5}``.
        num_classes: the number of classes.
        class_weights: per-class weights of the cross-entropy (a tensor of ``num_classes``), or None.
        label_smoothing: label smoothing of the cross-entropy.
        top_k_percent_pixels: hard-pixel mining of the cross-entropy (100: every pixel).
        options: ``{name: {argument: value}}`` for smp's losses, e.g. ``{"focal": {"gamma": 3}}``.
        multilabel: one sigmoid per class against (B, K, H, W) targets of 0, 1 and 255 (overlapping labels):
            ``binary_cross_entropy`` instead of ``cross_entropy`` (class weights, label smoothing and hard-pixel
            mining apply to it alike), smp's losses in their ``multilabel`` mode.
    """

    def __init__(
        self,
        terms: dict[str, float],
        num_classes: int,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        top_k_percent_pixels: float = 100.0,
        options: dict[str, dict] | None = None,
        multilabel: bool = False,
    ) -> None:
        super().__init__()
        self.multilabel = multilabel
        unknown = sorted(set(terms) - set(LOSS_NAMES))
        if unknown or not terms:
            raise ValueError(
                f"model.loss: unknown loss {unknown[0]!r}; choose from {', '.join(LOSS_NAMES)}"
                if unknown
                else f"model.loss: no loss given; choose from {', '.join(LOSS_NAMES)}"
            )
        wrong = "cross_entropy" if multilabel else "binary_cross_entropy"
        if wrong in terms:
            raise ValueError(
                "model.loss: cross_entropy is the loss of single-label masks; overlapping (multilabel) masks train "
                "with binary_cross_entropy"
                if multilabel
                else "model.loss: binary_cross_entropy is the loss of multilabel masks; use cross_entropy"
            )
        options = dict(options or {})
        for name in sorted(set(options) - set(SMP_LOSSES)):
            raise ValueError(
                f"model.loss_options: {name!r} takes no options here; options are for "
                f"{', '.join(SMP_LOSSES)} (cross-entropy: model.class_weights, model.label_smoothing, "
                "model.top_k_percent_pixels)"
            )
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"model.class_weights has {len(class_weights)} values for {num_classes} classes")
        self.weights = {name: float(w) for name, w in terms.items()}
        self.label_smoothing, self.top_k = label_smoothing, top_k_percent_pixels
        self.register_buffer(
            "class_weights",
            None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.get_default_dtype()),
            persistent=False,
        )
        mode = "multilabel" if multilabel else "multiclass"
        self.smp = nn.ModuleDict(
            {name: self._smp(name, options.get(name) or {}, mode) for name in terms if name in SMP_LOSSES}
        )

    @staticmethod
    def _smp(name: str, options: dict, mode: str = "multiclass") -> nn.Module:
        fixed = sorted(_SET_BY_SEGKIT & set(options))
        if fixed:
            raise ValueError(
                f"model.loss_options.{name}.{fixed[0]} is set by segkit (multiclass logits, "
                f"ignore index {IGNORE_INDEX})"
            )
        try:
            if name == "focal" and mode == "multilabel":  # smp's multilabel focal loss fails with ignore_index
                return PerClassBinary(SMP_LOSSES[name](mode="binary", ignore_index=IGNORE_INDEX, **options))
            return SMP_LOSSES[name](mode=mode, ignore_index=IGNORE_INDEX, **options)
        except TypeError as e:
            raise ValueError(f"model.loss_options.{name}: {e}") from None

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
        world: int = 1,
    ) -> torch.Tensor:
        """The loss of ``logits`` (B, K, H, W) against ``target`` (B, H, W) int64.

        With several processes give ``reduce_sum`` (a sum over processes) and ``world``: the cross-entropy is then
        this process's share of one mean over the global batch (its pixel losses over the labelled pixels of all
        processes, times ``world``: DDP's averaging of gradients then gives the gradient of that mean, as on one
        device; a mean per process, averaged, would weight the pixels of a process whose crops are mostly
        padding more). Hard-pixel mining keeps its per-process meaning.
        """
        total = logits.new_zeros(())
        labelled = (target != IGNORE_INDEX).any() if self.smp else None
        for name, weight in self.weights.items():
            if name == "cross_entropy":
                term = self._cross_entropy(logits, target, reduce_sum, world)
            elif name == "binary_cross_entropy":
                term = self._binary_cross_entropy(logits, target, reduce_sum, world)
            else:  # 0 when nothing is labelled (smp's means over no pixel are NaN), without a host sync
                # smp's Lovasz mixes float32 into its sums (torch.dot fails on float64 logits): computed in float32
                x = logits.float() if name == "lovasz" and logits.dtype == torch.float64 else logits
                # (.sum(): with no labelled pixel smp's Lovasz returns an empty tensor, not a number)
                term = torch.where(labelled, self.smp[name](x, target).sum().to(logits.dtype), 0.0)
            total = total + weight * term
        return total

    def _binary_cross_entropy(self, logits, target, reduce_sum, world) -> torch.Tensor:
        """One sigmoid per class: the mean over the labelled (pixel, class) pairs of the global batch (with
        ``reduce_sum``), each weighted by its class weight; targets smoothed to ``y (1 - e) + e / 2``."""
        labelled = target != IGNORE_INDEX
        truth = (target == 1).to(logits.dtype)
        if self.label_smoothing:
            truth = truth * (1 - self.label_smoothing) + self.label_smoothing / 2
        losses = F.binary_cross_entropy_with_logits(logits, truth, reduction="none") * labelled
        weight = labelled.to(logits.dtype)
        if self.class_weights is not None:
            per_class = self.class_weights.to(logits.dtype).view(1, -1, 1, 1)
            losses, weight = losses * per_class, weight * per_class
        if self.top_k < 100.0:
            k = max(1, int(losses.numel() * self.top_k / 100.0))
            return losses.flatten().topk(k).values.mean()
        mass = weight.sum()
        if reduce_sum is not None and world > 1:
            return losses.sum() * world / reduce_sum(mass).clamp(min=1e-12)
        return losses.sum() / mass.clamp(min=1e-12)

    def _cross_entropy(self, logits, target, reduce_sum, world) -> torch.Tensor:
        w = self.class_weights
        if self.top_k < 100.0 or reduce_sum is None or world == 1:
            return hard_pixel_cross_entropy(logits, target, self.top_k, w, self.label_smoothing)
        total = F.cross_entropy(
            logits, target, w, ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=self.label_smoothing
        )
        return total * world / reduce_sum(_mass(target, w, total.dtype)).clamp(min=1e-12)
