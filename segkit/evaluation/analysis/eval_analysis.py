"""The measurements ``segkit eval`` runs beside its confusion matrix, chosen by its options, one image at a time."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .boundaries import BoundaryIoU, TrimapScores
from .calibration import CalibrationError
from .per_image import PerImageScores


class EvalAnalysis:
    """Per-image scores (and the ``worst`` images' predictions), trimap mIoU at ``trimap_widths`` around the
    ``trimap_band``, Boundary IoU at ``boundary_ratio`` and calibration in ``calibration_bins`` bins; each one
    only when asked for.

    ``sync``: the processes score different images and their counts are summed (``torchrun``); without it each
    process scores every image (prediction files) and keeps its own counts.
    """

    def __init__(
        self,
        num_classes: int,
        per_image: bool = False,
        worst: int = 0,
        trimap_widths: Sequence[int] = (),
        trimap_band: str = "void",
        boundary_ratio: float | None = None,
        calibration_bins: int | None = None,
        device: torch.device | str = "cpu",
        sync: bool = True,
    ) -> None:
        self.sync = sync
        kw = {"sync_on_compute": sync}
        self.per_image = PerImageScores(num_classes, worst) if per_image or worst else None
        self.trimap = TrimapScores(num_classes, trimap_widths, trimap_band, **kw) if trimap_widths else None
        self.boundary = BoundaryIoU(num_classes, boundary_ratio, **kw) if boundary_ratio else None
        self.calibration = None if calibration_bins is None else CalibrationError(num_classes, calibration_bins, **kw)
        for metric in (self.trimap, self.boundary, self.calibration):
            if metric is not None:
                metric.to(device)

    @property
    def needs_probs(self) -> bool:
        """Whether :meth:`update` needs the class probabilities (calibration), not only the labels."""
        return self.calibration is not None

    @property
    def active(self) -> bool:
        return any(m is not None for m in (self.per_image, self.trimap, self.boundary, self.calibration))

    def update(
        self, index: int, name: str, pred: torch.Tensor, target: torch.Tensor, probs: torch.Tensor | None = None
    ) -> None:
        """One image: ``pred`` and ``target`` (H, W) class indices, ``probs`` (K, H, W) when calibration runs
        (or given to :meth:`calibrate` band by band instead)."""
        if self.per_image is not None:
            self.per_image.update(index, name, pred, target)
        if self.trimap is not None or self.boundary is not None:
            pred_np, target_np = pred.cpu().numpy(), target.cpu().numpy()
            for metric in (self.trimap, self.boundary):
                if metric is not None:
                    metric.update(pred_np, target_np)
        if self.calibration is not None and probs is not None:
            self.calibration.update(probs, target)

    def calibrate(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        """Calibration counts of some of an image's pixels: ``probs`` (K, h, w), ``target`` (h, w)."""
        self.calibration.update(probs, target)

    def compute(self, class_names) -> dict:
        """The results (summed over processes when ``sync``), to be called on every process: ``trimap``,
        ``boundary_iou`` (per class by name), ``calibration``; per-image rows stay in :attr:`per_image`."""
        if self.per_image is not None and self.sync:
            self.per_image.gather()
        elif self.per_image is not None:
            self.per_image.rows.sort(key=lambda row: row.index)
        results = {}
        if self.trimap is not None:
            results["trimap"] = self.trimap.compute()
        if self.boundary is not None:
            boundary = dict(self.boundary.compute())  # a copy: torchmetrics caches what compute returned
            per_class = boundary["per_class"].tolist()
            boundary["per_class"] = {n: (None if v != v else v) for n, v in zip(class_names, per_class)}
            results["boundary_iou"] = boundary
        if self.calibration is not None:
            results["calibration"] = self.calibration.compute()
        return results
