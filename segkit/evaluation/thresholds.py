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

The decision (:meth:`segkit.head.Head.decide`) predicts a class where its probability ``p > t``, ``t`` the
threshold as float32. A probability's bin is the number of those float32 thresholds strictly below it, so
``p > t_e`` exactly when its bin is ``e`` or above: the counts at each threshold, and so the scores reported
with the tuned thresholds, are those that deciding at them gives, pixel for pixel, whatever the CPU's floats.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from ..head import Head, threshold_tensor

BINS = 100
EDGES = [e / BINS for e in range(1, BINS)]  # the thresholds 0.01 .. 0.99 that tuning chooses among


def threshold_bins(probs: torch.Tensor) -> torch.Tensor:
    """Each probability's bin: how many of the thresholds :data:`EDGES` (float32, as decisions compare) lie
    strictly below it, 0..BINS-1; a probability is above threshold ``EDGES[e - 1]`` exactly when its bin >= e."""
    return torch.searchsorted(threshold_tensor(EDGES, probs), probs.contiguous(), right=False)


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
        bins = threshold_bins(probs) + BINS * torch.arange(k, device=probs.device).view(-1, 1, 1)
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


def tuned_probabilities(head: Head, probs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What a sigmoid head's thresholds act on, as :meth:`ThresholdHistograms.update` takes it: a binary head's
    (1, H, W) foreground probabilities against its 0/1 ground truth (:func:`binary_target`), a multi-label head's
    (K, H, W) probabilities against its (K, H, W) masks."""
    if head.mode == "binary":
        return probs[1:], binary_target(mask)
    if head.mode == "multilabel":
        return probs, mask
    raise ValueError("a multiclass head takes the most probable class: it has no thresholds to tune")
