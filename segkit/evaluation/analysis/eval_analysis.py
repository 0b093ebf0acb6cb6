"""The measurements ``segkit eval`` runs beside its counts, chosen by its options, one image at a time.

A single-label head (multiclass, binary) is measured on its map of class indices. A multi-label head is measured
per class, as it is scored: class k's mask against the class's ground truth is a two-class problem (not k, k) of
its own, whose trimap and Boundary IoU are those of the class (its IoU within the band around the class's
outlines, its Boundary IoU) and whose calibration is that of the class's sigmoid p read as the probabilities
(1 - p, p). The means over the classes are the figures of the split, and calibration is counted once more over
all (pixel, class) decisions together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .boundaries import BoundaryIoU, TrimapScores
from .calibration import CalibrationError
from .per_image import PerImageScores


class EvalAnalysis:
    """Per-image scores (and the ``worst`` images' predictions), trimap mIoU at ``trimap_widths`` around the
    ``trimap_band``, Boundary IoU at ``boundary_ratio`` and calibration in ``calibration_bins`` bins; each one
    only when asked for. ``multilabel``: the predictions are a multi-label head's (K, H, W) decisions, measured
    per class (see the module doc).

    ``sync``: the processes score different images and their counts are summed (``torchrun``); without it each
    process scores every image (prediction files) and keeps its own counts.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        multilabel: bool = False,
        per_image: bool = False,
        worst: int = 0,
        trimap_widths: Sequence[int] = (),
        trimap_band: str = "void",
        boundary_ratio: float | None = None,
        calibration_bins: int | None = None,
        device: torch.device | str = "cpu",
        sync: bool = True,
    ) -> None:
        self.sync, self.multilabel = sync, multilabel
        kw = {"sync_on_compute": sync}
        self.per_image = PerImageScores(num_classes, worst, multilabel) if per_image or worst else None
        # the class counts of each label map measured: one map of K classes, or K maps of two
        maps = [2] * num_classes if multilabel else [num_classes]
        self.trimap = [TrimapScores(k, trimap_widths, trimap_band, **kw) for k in maps] if trimap_widths else []
        self.boundary = [BoundaryIoU(k, boundary_ratio, **kw) for k in maps] if boundary_ratio else []
        self.calibration = (
            [] if calibration_bins is None else [CalibrationError(k, calibration_bins, **kw) for k in maps]
        )
        # every (pixel, class) decision of a multi-label head in one set of bins
        self.pooled = CalibrationError(2, calibration_bins, **kw) if multilabel and self.calibration else None
        for metric in (*self.trimap, *self.boundary, *self.calibration, self.pooled):
            if metric is not None:
                metric.to(device)

    @property
    def needs_probs(self) -> bool:
        """Whether :meth:`update` needs the class probabilities (calibration), not only the labels."""
        return bool(self.calibration)

    @property
    def active(self) -> bool:
        return self.per_image is not None or any((self.trimap, self.boundary, self.calibration))

    def _maps(self, labels: torch.Tensor) -> list[torch.Tensor]:
        """The label maps measured: the (H, W) class indices, or each class's (H, W) 0/1 (255: not labelled)."""
        return [map_.to(torch.uint8) for map_ in labels] if self.multilabel else [labels]

    def update(
        self, index: int, name: str, pred: torch.Tensor, target: torch.Tensor, probs: torch.Tensor | None = None
    ) -> None:
        """One image: ``pred`` and ``target`` (H, W) class indices, or a multi-label head's (K, H, W) decisions and
        targets; ``probs`` (K, H, W) when calibration runs (or given to :meth:`calibrate` band by band instead)."""
        if self.per_image is not None:
            self.per_image.update(index, name, pred, target)
        if self.trimap or self.boundary:
            for i, (p, t) in enumerate(zip(self._maps(pred), self._maps(target))):
                p, t = p.cpu().numpy(), t.cpu().numpy()
                for metrics in (self.trimap, self.boundary):
                    if metrics:
                        metrics[i].update(p, t)
        if self.calibration and probs is not None:
            self.calibrate(probs, target)

    def calibrate(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        """Calibration counts of some of an image's pixels: ``probs`` (K, h, w), ``target`` (h, w), or a
        multi-label head's (K, h, w) sigmoids and targets."""
        if not self.multilabel:
            self.calibration[0].update(probs, target)
            return
        for metric, p, t in zip(self.calibration, probs, target):
            pair = torch.stack([1 - p, p])
            metric.update(pair, t)
            self.pooled.update(pair, t)

    def compute(self, class_names) -> dict:
        """The results (summed over processes when ``sync``), to be called on every process: ``trimap``,
        ``boundary_iou`` (per class by name), ``calibration``, and with ``multilabel`` each one's ``per_class``
        figures; per-image rows stay in :attr:`per_image`."""
        if self.per_image is not None and self.sync:
            self.per_image.gather()
        elif self.per_image is not None:
            self.per_image.rows.sort(key=lambda row: row.index)
        if self.multilabel:
            return self._per_class(class_names)
        results = {}
        if self.trimap:
            results["trimap"] = self.trimap[0].compute()
        if self.boundary:
            boundary = dict(self.boundary[0].compute())  # a copy: torchmetrics caches what compute returned
            boundary["per_class"] = _by_name(class_names, boundary["per_class"].tolist())
            results["boundary_iou"] = boundary
        if self.calibration:
            results["calibration"] = self.calibration[0].compute()
        return results

    def _per_class(self, class_names) -> dict:
        """A multi-label head's results: each class's figure (that of its two-class problem's class 1) and their
        mean over the classes that have one."""
        results = {}
        if self.trimap:
            first = self.trimap[0].compute()
            widths = [str(w) for w in first["widths"]]
            iou = torch.stack([metric.class_iou()[:, 1] for metric in self.trimap], 1)  # (widths, K)
            pixels = [sum(metric.compute()["pixels"][w] for metric in self.trimap) for w in widths]
            results["trimap"] = {
                **{k: first[k] for k in ("band", "band_description", "widths")},
                "mIoU": {w: _mean(row) for w, row in zip(widths, iou)},
                "pixels": dict(zip(widths, pixels)),  # (pixel, class) pairs in the classes' bands
                "per_class": {n: dict(zip(widths, _finite(column.tolist()))) for n, column in zip(class_names, iou.T)},
            }
        if self.boundary:
            iou = torch.stack([metric.compute()["per_class"][1] for metric in self.boundary])
            ratio = self.boundary[0].dilation_ratio
            results["boundary_iou"] = {
                "dilation_ratio": ratio,
                "mean": _mean(iou),
                "per_class": _by_name(class_names, iou.tolist()),
            }
        if self.calibration:
            per_class = [metric.compute() for metric in self.calibration]
            results["calibration"] = self.pooled.compute() | {
                "per_class": {n: {k: c[k] for k in ("ECE", "NLL", "pixels")} for n, c in zip(class_names, per_class)}
            }
        return results


def _mean(values: torch.Tensor) -> float | None:
    """The mean of the values that are not NaN (None when all are)."""
    return None if values.isnan().all() else float(values.nanmean())


def _finite(values: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def _by_name(class_names, values: list[float]) -> dict:
    return dict(zip(class_names, _finite(values)))
