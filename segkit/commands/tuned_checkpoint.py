"""``segkit eval --tune_thresholds FILE``: the thresholds chosen on the split (:mod:`segkit.thresholds`) printed
and written with the model to a new checkpoint FILE (key ``segkit_thresholds``); the checkpoint read is left
as it is."""

from __future__ import annotations

from pathlib import Path

import torch

from ..io.torch_files import save_atomic
from ..thresholds import ThresholdHistograms, best_binary_threshold


def check_new(p, path: str | None) -> Path | None:
    """``--tune_thresholds`` as a Path, refused before any work when the file exists."""
    if path is None:
        return None
    if Path(path).exists():
        p.error(f"--tune_thresholds {path} exists: segkit writes a new checkpoint and replaces nothing")
    return Path(path)


def write_multilabel(
    checkpoint: dict, path: Path, names: list[str], thresholds: list[float], ious: list[float]
) -> dict:
    """Prints each class's tuned threshold with its IoU and writes the checkpoint with them to ``path``."""
    width = max(14, *(len(n) for n in names))
    rows = "\n".join(f"{n:<{width}}  {t:9.2f}  {100 * i:7.2f}" for n, t, i in zip(names, thresholds, ious))
    checkpoint["segkit_thresholds"] = thresholds
    save_atomic(checkpoint, path)
    mean = _mean_iou(ious)
    print(
        f"\nthresholds of highest IoU on this split (0.01 steps), written with the model to {path}\n"
        f"{'class':<{width}}  {'threshold':>9}  {'IoU':>7}\n{rows}\nmIoU at these thresholds: {100 * mean:.2f}"
    )
    return {"checkpoint": str(path), "thresholds": dict(zip(names, thresholds)), "mIoU": mean}


def write_binary(
    checkpoint: dict, path: Path, names: list[str], loaded: float, chosen: float, ious
) -> tuple[dict, str]:
    """Writes the checkpoint with a binary model's new foreground threshold ``chosen`` (replacing ``loaded``, the
    checkpoint's) to ``path``; returns what to record and what to print."""
    threshold = chosen
    checkpoint["segkit_thresholds"] = [threshold]
    save_atomic(checkpoint, path)
    mean = _mean_iou(ious)
    text = (
        f"\nforeground ({names[1]}) threshold of highest mIoU on this split: {threshold:.4f} (was {loaded:.4f}), "
        f"written with the model to {path}\nIoU {names[0]} {100 * ious[0]:.2f}, {names[1]} {100 * ious[1]:.2f}; "
        f"mIoU at this threshold: {100 * mean:.2f}"
    )
    return {"checkpoint": str(path), "thresholds": {names[1]: threshold}, "mIoU": mean}, text


def _mean_iou(ious: list[float]) -> float:
    """The mean of the classes' IoUs as segkit eval computes it (NaN for a class never present nor predicted)."""
    return float(torch.tensor(ious, dtype=torch.float64).nanmean())


class BinaryTuning:
    """A binary model's ``--tune_thresholds``: the histograms :func:`~segkit.evaluation.evaluate` fills, the
    threshold of highest mIoU (:meth:`compute`, on every process) and the new checkpoint (:meth:`write`)."""

    def __init__(self, checkpoint: dict, loaded: float, path: Path, device: torch.device | str) -> None:
        self.checkpoint, self.loaded, self.path = checkpoint, loaded, path
        self.histograms = ThresholdHistograms(1).to(device)
        self.choice: tuple[float, list[float]] | None = None
        self.text = ""

    def compute(self) -> None:
        self.choice = best_binary_threshold(*self.histograms.compute())  # summed across processes

    def write(self, names: list[str]) -> dict:
        result, self.text = write_binary(self.checkpoint, self.path, names, self.loaded, *self.choice)
        return result
