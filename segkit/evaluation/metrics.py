"""Segmentation metrics from counts accumulated over a whole split: one confusion matrix of a single-label head,
per-class counts of a multi-label one (:func:`head_counts`, :func:`head_scores`).

As the Pascal VOC and Cityscapes benchmarks do, IoU is computed per class from the counts summed over every
pixel of every image (and across processes), never averaged over batches or images. A class
absent from both the ground truth and the predictions has no IoU (NaN) and is left out of the mean.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from ..head import Head


class ConfusionMatrix(Metric):
    """(num_classes, num_classes) int64 matrix, rows = ground truth, columns = prediction.

    Pixels whose target is outside ``0..num_classes-1`` (the 255 ignore label) are not counted. A prediction
    outside ``0..num_classes-1`` on a labelled pixel (a prediction file holding an ignored Cityscapes id) is
    counted in ``void`` for its ground-truth class: a miss for that class and a hit for none, as the official
    Cityscapes scorer counts it. The update is one ``bincount`` on the device, with no host synchronisation;
    states are summed across processes.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("void", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """preds: (B, H, W) class indices or (B, K, H, W) logits; target: (B, H, W)."""
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=1)
        confmat, void = confusion_counts(preds, target, self.num_classes)
        self.confmat += confmat
        self.void += void

    def compute(self) -> torch.Tensor:
        return self.confmat


def confusion_counts(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (K, K) confusion counts and the (K,) void counts (see :class:`ConfusionMatrix`) of class indices
    ``preds`` against ``target`` (equal shapes), on their device.

    One ``bincount`` with no host synchronisation: k*k confusion cells, k void cells and one dropped bin, no
    boolean indexing.
    """
    if preds.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(preds.shape)} != target shape {tuple(target.shape)}")
    k = num_classes
    target, preds = target.reshape(-1).long(), preds.reshape(-1).long()
    labelled = (target >= 0) & (target < k)
    predicted = (preds >= 0) & (preds < k)
    index = torch.where(labelled & predicted, target * k + preds, torch.where(labelled, k * k + target, k * k + k))
    counts = torch.bincount(index, minlength=k * k + k + 1)
    return counts[: k * k].reshape(k, k), counts[k * k : k * k + k]


def segmentation_scores(confmat: torch.Tensor, void: torch.Tensor | None = None) -> dict[str, torch.Tensor | float]:
    """Per-class IoU and accuracy, mIoU, pixel accuracy, mean class accuracy and frequency-weighted IoU.

    ``void``: per ground-truth class, labelled pixels predicted outside the classes (see ConfusionMatrix).
    """
    cm = confmat.double()
    tp = cm.diag()
    gt = cm.sum(1)  # pixels of each class in the ground truth
    if void is not None:
        gt = gt + void.double()
    pred = cm.sum(0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    total = gt.sum()  # every labelled pixel, void predictions included
    freq = gt / total.clamp(min=1)
    return {
        "per_class_iou": iou,
        "per_class_acc": acc,
        "mIoU": float(iou.nanmean()) if (union > 0).any() else float("nan"),
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_acc": float(acc.nanmean()) if (gt > 0).any() else float("nan"),
        "fwIoU": float((freq[union > 0] * iou[union > 0]).sum()),
        "num_pixels": int(total),
    }


def format_iou_table(
    class_names: list[str] | tuple[str, ...], scores: dict, prefix: str = "val", heading: str = ""
) -> str:
    """A plain-text table of per-class IoU and accuracy (in %) followed by the summary metrics."""
    width = max(14, *(len(n) for n in class_names))
    lines = [heading or f"{prefix}: per-class IoU", f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}", "-" * (width + 18)]
    for name, iou, acc in zip(class_names, scores["per_class_iou"].tolist(), scores["per_class_acc"].tolist()):
        lines.append(f"{name:<{width}}  {100 * iou:7.2f}  {100 * acc:7.2f}")
    lines.append("-" * (width + 18))
    for key in ("mIoU", "pixel_acc", "mean_acc"):
        lines.append(f"{prefix + '/' + key:<{width}}  {100 * scores[key]:7.2f}")
    return "\n".join(lines)


class MultilabelCounts(Metric):
    """Overlapping labels: per class, the true positives, false positives, false negatives and true negatives of
    its binary decision (K, 4), over the pixels labelled for that class (255 in the class's target channel is not
    counted), summed over the split and across processes.

    Each class is a binary problem of its own, so its IoU is TP / (TP + FP + FN) of its own counts: the IoU of
    the class's predicted mask against its ground-truth mask, as in the single-label case, without a confusion
    between classes (a pixel may be both).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("counts", default=torch.zeros(num_classes, 4, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """preds: (B, K, H, W) booleans (or 0/1); target: (B, K, H, W) of 0, 1 and 255 (not labelled)."""
        if preds.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(preds.shape)} != target shape {tuple(target.shape)}")
        self.counts += multilabel_counts(preds, target)

    def compute(self) -> torch.Tensor:
        return self.counts


def multilabel_counts(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(K, 4) TP, FP, FN, TN per class of (B, K, H, W) binary ``preds`` against 0/1/255 ``target``."""
    k = preds.shape[1]
    labelled = target != 255
    positive, truth = preds.bool() & labelled, (target == 1) & labelled
    dims = (0, 2, 3)
    tp = (positive & truth).sum(dims)
    fp = (positive & ~truth).sum(dims)
    fn = (~positive & truth).sum(dims)
    tn = labelled.sum(dims) - tp - fp - fn
    return torch.stack([tp, fp, fn, tn], 1).long().reshape(k, 4)


def multilabel_scores(counts: torch.Tensor) -> dict[str, torch.Tensor | float]:
    """The keys of :func:`segmentation_scores` from (K, 4) counts: per-class IoU and accuracy (recall, the
    share of the class's pixels found), their means over the classes that occur, and pixel accuracy over every
    labelled (pixel, class) decision."""
    c = counts.double()
    tp, fp, fn, tn = c.unbind(1)
    union, positives = tp + fp + fn, tp + fn
    nan = torch.full_like(tp, float("nan"))
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
    acc = torch.where(positives > 0, tp / positives.clamp(min=1), nan)
    decisions = c.sum()
    freq = positives / positives.sum().clamp(min=1)
    return {
        "per_class_iou": iou,
        "per_class_acc": acc,
        "mIoU": float(iou.nanmean()) if (union > 0).any() else float("nan"),
        "pixel_acc": float((tp + tn).sum() / decisions) if decisions > 0 else float("nan"),
        "mean_acc": float(acc.nanmean()) if (positives > 0).any() else float("nan"),
        "fwIoU": float((freq[union > 0] * iou[union > 0]).sum()),
        "num_pixels": int(c[0].sum()) if len(c) else 0,  # pixels labelled for the first class
    }


def head_counts(head: Head, **kwargs) -> Metric:
    """What a head's decisions are counted in: a single-label head's (multiclass, binary) K x K confusion matrix;
    a multi-label head's per-class (K, 4) counts, since a pixel may belong to several classes and no confusion
    between classes is defined."""
    if head.mode == "multilabel":
        return MultilabelCounts(head.num_classes, **kwargs)
    return ConfusionMatrix(head.num_classes, **kwargs)


def head_scores(head: Head, counts: torch.Tensor, void: torch.Tensor | None = None) -> dict[str, torch.Tensor | float]:
    """The scores (:func:`segmentation_scores`' keys) of :func:`head_counts`' counts."""
    if head.mode == "multilabel":
        return multilabel_scores(counts)
    return segmentation_scores(counts, void)
