"""Scoring a model of overlapping labels (``mask_mode: multilabel``), and choosing its per-class thresholds.

Each class is its own binary problem: a pixel is predicted to belong to class k where the class's probability
(one sigmoid per class, averaged over the test-time scales and flips) is above its threshold. The per-class
counts (:class:`~segkit.metrics.MultilabelCounts`) are summed over the split and across processes.

Thresholds are tuned as a classifier's are, on held-out data: per class, a histogram of the probabilities of
the pixels labelled present and of those labelled absent (100 bins), summed over the split (and processes),
gives the counts at every threshold 0.01, 0.02, ..., 0.99 at once; each class takes the one of highest IoU
(ties: the one nearest 0.5). Tune them on the validation split, and report the test split's scores with them.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from torchmetrics import Metric
from tqdm import tqdm

from . import distributed
from .data.sampling import eval_sampler
from .metrics import MultilabelCounts

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


def evaluate_multilabel(
    predictor,
    dataset,
    thresholds: list[float],
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    histograms: ThresholdHistograms | None = None,
) -> torch.Tensor:
    """The (K, 4) counts of ``predictor`` (a :class:`~segkit.evaluation.CheckpointPredictor` of a multi-label
    model) on ``dataset`` at ``thresholds``, one image at a time (band by band when the predictor tiles it);
    ``histograms`` also sees every labelled probability, for :func:`best_thresholds`."""
    k = len(thresholds)
    metric = MultilabelCounts(k).to(device)
    cut = torch.tensor(thresholds, device=device).view(-1, 1, 1)
    loader = DataLoader(dataset, batch_size=1, num_workers=num_workers, sampler=eval_sampler(dataset))
    bar = tqdm(loader, desc="eval", dynamic_ncols=True, disable=not distributed.is_main())
    for batch in bar:
        mask = batch["mask"][0].to(device)  # (K, H, W)

        def on_probs(y0: int, probs: torch.Tensor, mask=mask) -> None:
            probs = probs.to(device)
            target = mask[:, y0 : y0 + probs.shape[1]]
            metric.update((probs > cut)[None], target[None])
            if histograms is not None:
                histograms.update(probs, target)

        predictor.predict(batch["image"], on_probs, name=batch["name"][0], say=bar.write)
    return metric.compute().cpu()
