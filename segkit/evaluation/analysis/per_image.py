"""Per-image scores: each image's own intersection and union counts per class, kept so that any per-image or
per-class figure can be recomputed from them (their sums over the images are the split's counts, exactly). A
multi-label head's class counts are those of its mask against the class's ground truth (true positives, and
true positives, false positives and false negatives), its labelled and correct counts its (pixel, class)
decisions, as :func:`~segkit.evaluation.metrics.multilabel_scores` counts them over the split.

mmsegmentation and the benchmarks report one confusion matrix over the split; a model improver also asks which
images fail. An image's mIoU is the mean IoU over the classes present in its ground truth or its prediction (on
its labelled pixels); an image without labelled pixels has none (NaN), and is never among the worst.
"""

from __future__ import annotations

import csv
import heapq
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ... import distributed
from ..metrics import confusion_counts, multilabel_counts


@dataclass
class ImageScores:
    """One image's counts: ``intersection`` and ``union`` per class (int64), ``labelled`` and ``correct`` pixels."""

    index: int
    name: str
    labelled: int
    correct: int
    intersection: np.ndarray
    union: np.ndarray

    @property
    def pixel_accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else math.nan

    @property
    def miou(self) -> float:
        present = self.union > 0
        return float((self.intersection[present] / self.union[present]).mean()) if present.any() else math.nan


def image_scores(
    index: int, name: str, pred: torch.Tensor, target: torch.Tensor, num_classes: int, multilabel: bool = False
) -> ImageScores:
    """The counts of one (H, W) prediction against its (H, W) ground truth, as the split's confusion matrix
    counts them (ignored pixels left out; a prediction outside the classes is a miss for the true class); with
    ``multilabel``, of (K, H, W) decisions against (K, H, W) targets of 0, 1 and 255, as the split's per-class
    counts count them."""
    if multilabel:
        tp, fp, fn, tn = multilabel_counts(pred[None], target[None]).cpu().numpy().T
        return ImageScores(
            index=index,
            name=name,
            labelled=int((tp + fp + fn + tn).sum()),
            correct=int((tp + tn).sum()),
            intersection=tp,
            union=tp + fp + fn,
        )
    confmat, void = confusion_counts(pred, target, num_classes)
    confmat, void = confmat.cpu().numpy(), void.cpu().numpy()
    tp = np.diag(confmat)
    gt = confmat.sum(1) + void
    return ImageScores(
        index=index,
        name=name,
        labelled=int(gt.sum()),
        correct=int(tp.sum()),
        intersection=tp,
        union=gt + confmat.sum(0) - tp,
    )


class PerImageScores:
    """The rows of every image of a split, and the predictions of the ``keep`` worst ones (lowest image mIoU,
    ties broken by the image's position in the split, so that the choice is the same on any number of
    processes). ``multilabel``: the predictions are a multi-label head's (K, H, W) decisions."""

    def __init__(self, num_classes: int, keep: int = 0, multilabel: bool = False) -> None:
        self.num_classes, self.keep, self.multilabel = num_classes, keep, multilabel
        self.rows: list[ImageScores] = []
        self._worst: list[tuple[float, int, np.ndarray]] = []  # heap of (-mIoU, -index, prediction)

    def update(self, index: int, name: str, pred: torch.Tensor, target: torch.Tensor) -> ImageScores:
        row = image_scores(index, name, pred, target, self.num_classes, self.multilabel)
        self.rows.append(row)
        if self.keep and not math.isnan(row.miou):
            item = (-row.miou, -index, pred.cpu().numpy())
            if len(self._worst) < self.keep:
                heapq.heappush(self._worst, item)
            elif item[:2] > self._worst[0][:2]:
                heapq.heapreplace(self._worst, item)
        return row

    def gather(self) -> None:
        """Every process's rows and worst candidates, on every process, in the split's order (a no-op in one
        process)."""
        if distributed.running():
            parts = [None] * distributed.rank_and_world()[1]
            torch.distributed.all_gather_object(parts, (self.rows, self._worst))
            self.rows = [row for rows, _ in parts for row in rows]
            self._worst = [item for _, items in parts for item in items]
        self.rows.sort(key=lambda row: row.index)

    def worst(self) -> list[tuple[ImageScores, np.ndarray]]:
        """The ``keep`` worst images, worst first: (their scores, their prediction)."""
        by_index = {row.index: row for row in self.rows}
        chosen = sorted(self._worst, key=lambda item: (-item[0], -item[1]))[: self.keep]
        return [(by_index[-index], pred) for _, index, pred in chosen]

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Intersection and union per class, summed over the images."""
        intersection = np.zeros(self.num_classes, np.int64)
        union = np.zeros(self.num_classes, np.int64)
        for row in self.rows:
            intersection += row.intersection
            union += row.union
        return intersection, union

    def write_csv(self, path: Path, class_names) -> None:
        """One row per image: name, labelled pixels, pixel accuracy, mIoU, then ``intersection/<class>`` and
        ``union/<class>`` for every class (integers). A multi-label head's labelled pixels are its labelled
        (pixel, class) decisions, its pixel accuracy the share of them that are right."""
        header = ["image", "labelled_pixels", "pixel_accuracy", "mIoU"]
        header += [f"intersection/{n}" for n in class_names] + [f"union/{n}" for n in class_names]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for row in self.rows:
                scores = [_number(row.pixel_accuracy), _number(row.miou)]
                writer.writerow([row.name, row.labelled, *scores, *row.intersection.tolist(), *row.union.tolist()])


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"
