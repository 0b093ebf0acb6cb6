"""Calibration of the class probabilities: are the pixels predicted with probability p right a fraction p of the
time?

Expected calibration error (Guo et al., ICML 2017): the labelled pixels are put in ``num_bins`` equal-width bins
of their top probability (bin m holds ((m-1)/M, m/M]), and ECE = sum over bins of |accuracy - mean confidence|
weighted by the bin's share of pixels. torchmetrics' ``MulticlassCalibrationError`` computes the same sum but
closes its bins on the left and gives a top probability of exactly 1.0 (frequent in float32 softmax) a bin of
its own; segkit keeps the paper's bins. The negative log-likelihood is the mean of -log p(true class) over the
labelled pixels (probabilities that underflow to 0 in float32 count as the smallest positive float32).
Probabilities are those the predictions come from: averaged over scales and flips when those are used.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric


class CalibrationError(Metric):
    """Per-bin pixel counts, confidence sums and correct counts, and the log-likelihood sum, over a split."""

    full_state_update = False

    def __init__(self, num_classes: int, num_bins: int = 15, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_bins < 1:
            raise ValueError(f"calibration bins must be at least 1, got {num_bins}")
        self.num_classes, self.num_bins = num_classes, num_bins
        self.add_state("count", default=torch.zeros(num_bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("correct", default=torch.zeros(num_bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("confidence", default=torch.zeros(num_bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("nll", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        """probs: (K, H, W) class probabilities of one image; target: (H, W) class indices (others ignored)."""
        target = target.reshape(-1).long()
        probs = probs.reshape(self.num_classes, -1)
        labelled = (target >= 0) & (target < self.num_classes)
        probs, target = probs[:, labelled], target[labelled]
        top, pred = probs.max(0)
        edges = torch.arange(1, self.num_bins, device=probs.device, dtype=torch.float64) / self.num_bins
        bins = torch.bucketize(top.double(), edges)  # right-closed bins: ((m-1)/M, m/M]
        self.count += torch.bincount(bins, minlength=self.num_bins)
        self.correct += torch.bincount(bins, weights=(pred == target).double(), minlength=self.num_bins).long()
        self.confidence += torch.bincount(bins, weights=top.double(), minlength=self.num_bins)
        truth = probs.gather(0, target[None])[0].clamp(min=torch.finfo(probs.dtype).tiny)
        self.nll -= truth.double().log().sum()

    def compute(self) -> dict:
        """``ECE``, ``NLL`` and per bin its ``count``, mean ``confidence`` and ``accuracy`` (None when empty)."""
        count = self.count.double().cpu()
        total = count.sum()
        accuracy = self.correct.double().cpu() / count.clamp(min=1)
        confidence = self.confidence.cpu() / count.clamp(min=1)
        ece = float(((accuracy - confidence).abs() * count).sum() / total) if total > 0 else math.nan
        empty = count == 0
        return {
            "bins": self.num_bins,
            "ECE": ece,
            "NLL": float(self.nll.cpu() / total) if total > 0 else math.nan,
            "pixels": int(total),
            "reliability": {
                "upper_edge": [(m + 1) / self.num_bins for m in range(self.num_bins)],
                "count": self.count.cpu().tolist(),
                "confidence": [None if e else v for e, v in zip(empty.tolist(), confidence.tolist())],
                "accuracy": [None if e else v for e, v in zip(empty.tolist(), accuracy.tolist())],
            },
        }
