"""The thresholds of a sigmoid head chosen on a split (:mod:`segkit.evaluation.thresholds`) and written with the model
to a new checkpoint (key ``segkit_thresholds``) that eval, predict, export and Segmenter then use; the checkpoint
read is left as it is (``segkit eval --tune_thresholds FILE``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..head import Head
from ..io.torch_files import save_atomic
from .thresholds import ThresholdHistograms, best_binary_threshold, best_thresholds


class ThresholdTuning:
    """The threshold tuning of a binary or multi-label ``head`` (the checkpoint's model at its thresholds): the
    histograms :func:`~segkit.evaluation.evaluate` fills, the thresholds of highest IoU (:meth:`compute`, on
    every process: the histograms are summed across processes) and the new checkpoint at ``path``
    (:meth:`write`, which returns what ``--json`` records; :attr:`text` is what to print)."""

    def __init__(self, checkpoint: dict, head: Head, path: Path, device: torch.device | str = "cpu") -> None:
        if head.mode == "multiclass":
            raise ValueError(
                "the model takes the most probable class (a softmax head); thresholds are for sigmoid heads "
                "(data.mask_mode: multilabel, or model.head: sigmoid)"
            )
        self.checkpoint, self.head, self.path = checkpoint, head, path
        self.histograms = ThresholdHistograms(len(head.thresholds)).to(device)
        self.choice: tuple[list[float], list[float]] | None = None
        self.text = ""

    def compute(self) -> None:
        """The thresholds of highest IoU and the IoUs at them (a binary head: the IoUs of both classes)."""
        if self.head.mode == "binary":
            threshold, ious = best_binary_threshold(*self.histograms.compute())
            self.choice = [threshold], ious
        else:
            self.choice = best_thresholds(*self.histograms.compute())

    def write(self, names: list[str]) -> dict:
        """Writes the checkpoint with the chosen thresholds to :attr:`path`; sets :attr:`text`."""
        thresholds, ious = self.choice
        self.checkpoint["segkit_thresholds"] = thresholds
        save_atomic(self.checkpoint, self.path)
        mean = mean_iou(ious)
        if self.head.mode == "binary":
            self.text = (
                f"\nforeground ({names[1]}) threshold of highest mIoU on this split: {thresholds[0]:.4f} (was "
                f"{self.head.thresholds[0]:.4f}), written with the model to {self.path}\nIoU {names[0]} "
                f"{100 * ious[0]:.2f}, {names[1]} {100 * ious[1]:.2f}; mIoU at this threshold: {100 * mean:.2f}"
            )
            return {"checkpoint": str(self.path), "thresholds": {names[1]: thresholds[0]}, "mIoU": mean}
        width = max(14, *(len(n) for n in names))
        rows = "\n".join(f"{n:<{width}}  {t:9.2f}  {100 * i:7.2f}" for n, t, i in zip(names, thresholds, ious))
        self.text = (
            f"\nthresholds of highest IoU on this split (0.01 steps), written with the model to {self.path}\n"
            f"{'class':<{width}}  {'threshold':>9}  {'IoU':>7}\n{rows}\nmIoU at these thresholds: {100 * mean:.2f}"
        )
        return {"checkpoint": str(self.path), "thresholds": dict(zip(names, thresholds)), "mIoU": mean}


def mean_iou(ious: list[float]) -> float:
    """The mean of the classes' IoUs as segkit eval computes it (NaN for a class never present nor predicted)."""
    return float(torch.tensor(ious, dtype=torch.float64).nanmean())
