"""Decision thresholds of sigmoid outputs, chosen on held-out data as a classifier's are.

A model of overlapping labels predicts class k where the class's probability is above its threshold; a binary
model (``model.head: sigmoid``, one output for two classes) predicts the foreground where its probability is
above one threshold. Both are 0.5 after training; ``segkit eval --tune_thresholds FILE`` chooses them on a
split and writes them with the model to a new checkpoint (key ``segkit_thresholds``), which eval, predict,
export and :class:`~segkit.inference.Segmenter` then use.

Per class, a histogram of the probabilities of the pixels labelled present and of those labelled absent
(100 bins), summed over the split (and processes), gives the counts at every threshold 0.01, 0.02, ..., 0.99
at once: a multi-label class takes the threshold of its highest IoU, a binary model the one of highest mIoU
over its two classes (what ``segkit eval`` reports); ties go to the threshold nearest 0.5. Tune on the
validation split, and report the test split's scores with the tuned checkpoint.

A binary model's threshold ``t`` is applied by shifting its logit by ``-logit(t)`` when the model is loaded
for inference (:func:`fold_binary_threshold`): its probability ``p'`` of the foreground is then relative to
the threshold (``p' > 0.5`` exactly where ``p > t``), so every path that takes the most probable of the two
classes (eval, predict, tiling, video, the exported graph) decides at ``t`` without knowing of it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchmetrics import Metric

BINS = 100


class ThresholdHistograms(Metric):
    """Per class, histograms (K, BINS) of the probabilities of labelled pixels that hold the class (``present``)
    and that do not (``absent``); summed across processes."""

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        zeros = torch.zeros(num_classes, BINS, dtype=torch.long)
        self.add_state("present", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("absent", default=zeros.clone(), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        """probs: (K, H, W) in [0, 1]; target: (K, H, W) of 0, 1 and 255."""
        k = probs.shape[0]
        bins = (probs.clamp(0, 1) * BINS).long().clamp(max=BINS - 1) + BINS * torch.arange(k, device=probs.device).view(
            -1, 1, 1
        )
        for state, value in ((self.present, 1), (self.absent, 0)):
            chosen = bins[target == value]
            state += torch.bincount(chosen, minlength=k * BINS).view(k, BINS)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.present, self.absent


def best_thresholds(present: torch.Tensor, absent: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per class, the threshold among 0.01..0.99 of highest IoU (ties: nearest 0.5), and that IoU (NaN for a
    class never present nor predicted)."""
    # predicted at threshold t = e / BINS: probabilities in bins e..BINS-1
    above_present = present.flip(1).cumsum(1).flip(1).double()  # [:, e]: present pixels in bins >= e
    above_absent = absent.flip(1).cumsum(1).flip(1).double()
    positives = present.sum(1, keepdim=True).double()
    edges = torch.arange(1, BINS)
    tp, fp = above_present[:, edges], above_absent[:, edges]
    union = positives + fp  # tp + fp + fn
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    thresholds, scores = [], []
    for row in iou:
        if torch.isnan(row).all():
            thresholds.append(0.5)
            scores.append(float("nan"))
            continue
        best = row.nan_to_num(-1).max()
        ties = torch.nonzero(row == best).flatten()
        choice = ties[(edges[ties].double() / BINS - 0.5).abs().argmin()]
        thresholds.append(float(edges[choice]) / BINS)
        scores.append(float(best))
    return thresholds, scores


def best_binary_threshold(present: torch.Tensor, absent: torch.Tensor) -> tuple[float, list[float]]:
    """The foreground threshold among 0.01..0.99 of highest mIoU over the two classes (ties: nearest 0.5), and
    the two IoUs (background, foreground) there; ``present``/``absent``: (1, BINS) histograms of the foreground
    probability of pixels labelled foreground / background."""
    above_present = present[0].flip(0).cumsum(0).flip(0).double()
    above_absent = absent[0].flip(0).cumsum(0).flip(0).double()
    positives, negatives = present[0].sum().double(), absent[0].sum().double()
    edges = torch.arange(1, BINS)
    tp, fp = above_present[edges], above_absent[edges]
    fn, tn = positives - tp, negatives - fp
    ious = torch.stack([_iou(tn, fn + fp), _iou(tp, fp + fn)])  # (2, BINS - 1): background, foreground
    miou = ious.nanmean(0).nan_to_num(-1)
    ties = torch.nonzero(miou == miou.max()).flatten()
    choice = ties[(edges[ties].double() / BINS - 0.5).abs().argmin()]
    return float(edges[choice]) / BINS, ious[:, choice].tolist()


def _iou(hits: torch.Tensor, misses: torch.Tensor) -> torch.Tensor:
    union = hits + misses
    return torch.where(union > 0, hits / union.clamp(min=1), torch.full_like(hits, float("nan")))


def binary_target(mask: torch.Tensor) -> torch.Tensor:
    """A 2-class mask (H, W) of 0, 1 and the ignore value as the (1, H, W) 0/1/255 target of the foreground
    (:class:`ThresholdHistograms`): any value other than 0 and 1 is ignored."""
    target = torch.full_like(mask, 255)
    target[mask == 0], target[mask == 1] = 0, 1
    return target[None]


@torch.no_grad()
def fold_binary_threshold(model: nn.Module, threshold: float) -> nn.Module:
    """Shifts the one logit of a binary ``model`` by ``-logit(threshold)`` (its classifier's bias), so that its
    probability ``p'`` crosses 0.5 where the unshifted one crosses ``threshold``; returns ``model``."""
    if not 0 < threshold < 1:
        raise ValueError(f"a binary model's threshold lies strictly between 0 and 1, got {threshold}")
    if threshold != 0.5:
        model.decoder.classifier.bias -= math.log(threshold / (1 - threshold))
    return model
