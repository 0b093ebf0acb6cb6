"""Accuracy near object boundaries: the DeepLabV3+ paper's trimap mIoU and Boundary IoU (Cheng et al., 2021).

**Trimap** (Chen et al., 2018, Sec. 4.1 and Fig. 5, after Kohli et al., 2009): the mIoU of the pixels within a
band of width ``w`` around the object boundaries. On Pascal VOC the annotators marked every object boundary
with a band of void (255) pixels; the trimap of width ``w`` is the morphological dilation of the void mask by
a disk of radius ``w``, without the void pixels themselves: the labelled pixels whose Euclidean distance to the
nearest void pixel is at most ``w``. A data set without void outlines (Cityscapes, ADE20K, folders) gets the
same band around the boundaries between two labelled classes of the ground truth: a pixel touching such a
boundary (a 4-neighbour of another class) is at distance 1, as a pixel touching a void pixel is; the band of
width ``w`` holds ``w`` pixels on each side either way. One confusion matrix per width, summed over the split.

**Boundary IoU** (Cheng, Girshick, Dollar, Berg, Kirillov, CVPR 2021; boundary-iou-api ``mask_to_boundary``):
for a class, the pixels of its ground-truth region within distance ``d`` of the region's contour (and the same
for its predicted region) are compared by IoU; ``d`` is ``dilation_ratio`` of the image diagonal, rounded, at
least 1, and distances are chessboard distances (the official code erodes ``d`` times with a 3 x 3 square; the
image border counts as contour). Intersections and unions are summed over the split as for mIoU, and only
labelled pixels count, as for mIoU (the paper's binary masks have no void). For a thin structure the whole
region is boundary and Boundary IoU equals mask IoU; for large regions it weighs the boundary pixels that mask
IoU drowns in the interior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torchmetrics import Metric

from ...data.base import IGNORE_INDEX
from ..metrics import confusion_counts, segmentation_scores

BANDS = {"void": "void outlines of the ground truth", "boundaries": "class boundaries of the ground truth"}


def void_distance(target: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W) float32 Euclidean distance of each pixel to the nearest void pixel (0 on void pixels, inf in an
    image without any)."""
    keep = (target != ignore_index).astype(np.uint8)
    if keep.all():
        return np.full(target.shape, np.inf, np.float32)
    return cv2.distanceTransform(keep, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def boundary_distance(target: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) float32 distance to the boundaries between two labelled classes: 1 on a pixel with a 4-neighbour
    of another labelled class, 1 + the Euclidean distance to the nearest such pixel elsewhere (inf in an image
    with one class)."""
    t = target.astype(np.int32)
    labelled = t < num_classes
    touches = np.zeros(t.shape, bool)
    for a, b in ((np.s_[1:, :], np.s_[:-1, :]), (np.s_[:, 1:], np.s_[:, :-1])):
        edge = (t[a] != t[b]) & labelled[a] & labelled[b]
        touches[a] |= edge
        touches[b] |= edge
    if not touches.any():
        return np.full(t.shape, np.inf, np.float32)
    return cv2.distanceTransform((~touches).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) + 1


class TrimapScores(Metric):
    """One (K, K) confusion matrix (and void counts, as :class:`~segkit.evaluation.metrics.ConfusionMatrix`) per band
    width, over the labelled pixels within that distance of the band's seeds (``band``: "void" or
    "boundaries", see the module doc)."""

    full_state_update = False

    def __init__(self, num_classes: int, widths: Sequence[int], band: str = "void", **kwargs) -> None:
        super().__init__(**kwargs)
        if band not in BANDS:
            raise ValueError(f"trimap band must be one of {', '.join(BANDS)}, got {band!r}")
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"trimap widths must be positive integers (pixels), got {list(widths)}")
        self.num_classes, self.widths, self.band = num_classes, sorted(set(widths)), band
        k, n = num_classes, len(self.widths)
        self.add_state("confmat", default=torch.zeros(n, k, k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("void", default=torch.zeros(n, k, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """pred, target: (H, W) class indices of one image (numpy)."""
        if self.band == "void":
            distance = void_distance(target)
        else:
            distance = boundary_distance(target, self.num_classes)
        labelled = target < self.num_classes
        pred, target = torch.from_numpy(np.asarray(pred)), torch.from_numpy(np.asarray(target))
        for i, width in enumerate(self.widths):
            band = torch.from_numpy(labelled & (distance <= width))
            confmat, void = confusion_counts(pred[band], target[band], self.num_classes)
            self.confmat[i] += confmat.to(self.device)
            self.void[i] += void.to(self.device)

    def compute(self) -> dict:
        """``band``, ``widths``, and per width its ``mIoU`` and the number of ``pixels`` in the band."""
        scores = [segmentation_scores(cm.cpu(), void.cpu()) for cm, void in zip(self.confmat, self.void)]
        return {
            "band": self.band,
            "band_description": BANDS[self.band],
            "widths": self.widths,
            "mIoU": {str(w): _finite(s["mIoU"]) for w, s in zip(self.widths, scores)},
            "pixels": {str(w): s["num_pixels"] for w, s in zip(self.widths, scores)},
        }

    def class_iou(self) -> torch.Tensor:
        """(widths, K) IoU of each class within each band (NaN for a class without pixels there), from the counts
        summed over processes as :meth:`compute` sums them."""
        with self.sync_context(should_sync=self.sync_on_compute):
            scores = [segmentation_scores(cm.cpu(), void.cpu()) for cm, void in zip(self.confmat, self.void)]
        return torch.stack([s["per_class_iou"] for s in scores])


def boundary_width(height: int, width: int, dilation_ratio: float) -> int:
    """The official ``dilation``: ``dilation_ratio`` of the image diagonal, rounded, at least 1 pixel."""
    return max(1, int(round(dilation_ratio * math.sqrt(height**2 + width**2))))


def class_boundaries(labels: np.ndarray, distance: int) -> np.ndarray:
    """(H, W) bool: the pixels within chessboard ``distance`` of the contour of their own label's region, i.e.
    whose (2 d + 1)-square neighbourhood holds another label or reaches past the image border. For each label
    ``c`` this equals the official ``mask_to_boundary(labels == c)`` on the pixels labelled ``c`` (one max and
    one min filter for every label at once instead of one erosion per label)."""
    padded = cv2.copyMakeBorder(labels.astype(np.int16), *[distance] * 4, cv2.BORDER_CONSTANT, value=-1)
    kernel = np.ones((2 * distance + 1, 2 * distance + 1), np.uint8)
    high = cv2.dilate(padded, kernel, borderType=cv2.BORDER_REPLICATE)
    low = cv2.erode(padded, kernel, borderType=cv2.BORDER_REPLICATE)
    inner = np.s_[distance:-distance, distance:-distance]
    return high[inner] != low[inner]


class BoundaryIoU(Metric):
    """Per-class boundary intersection and union counts summed over a split (see the module doc)."""

    full_state_update = False

    def __init__(self, num_classes: int, dilation_ratio: float = 0.02, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 < dilation_ratio < 1:
            raise ValueError(f"the Boundary IoU dilation ratio must be in (0, 1), got {dilation_ratio}")
        self.num_classes, self.dilation_ratio = num_classes, dilation_ratio
        for name in ("truth", "predicted", "intersection"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """pred, target: (H, W) class indices of one image (numpy)."""
        k = self.num_classes
        d = boundary_width(*target.shape, self.dilation_ratio)
        labelled = target < k
        truth = class_boundaries(target, d) & labelled
        predicted = class_boundaries(pred, d) & labelled & (pred < k)
        both = truth & predicted & (pred == target)
        for name, where, values in (
            ("truth", truth, target),
            ("predicted", predicted, pred),
            ("intersection", both, target),
        ):
            counts = np.bincount(values[where].astype(np.int64), minlength=k)
            getattr(self, name).add_(torch.from_numpy(counts).to(self.device))

    def compute(self) -> dict:
        """``per_class`` Boundary IoU (NaN for a class without boundary pixels in truth or prediction) and its
        ``mean`` over the classes that have some."""
        union = self.truth + self.predicted - self.intersection
        ratio = self.intersection.double() / union.clamp(min=1).double()
        iou = torch.where(union > 0, ratio, torch.full_like(ratio, math.nan)).cpu()
        return {
            "dilation_ratio": self.dilation_ratio,
            "mean": _finite(float(iou.nanmean())) if (union > 0).any() else None,
            "per_class": iou,
        }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
