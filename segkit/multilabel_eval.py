"""Scoring a model of overlapping labels (``mask_mode: multilabel``) at its per-class thresholds.

Each class is its own binary problem: a pixel is predicted to belong to class k where the class's probability
(one sigmoid per class, averaged over the test-time scales and flips) is above its threshold. The per-class
counts (:class:`~segkit.metrics.MultilabelCounts`) are summed over the split and across processes.

With a :class:`~segkit.thresholds.ThresholdHistograms` it also sees every labelled probability, from which
:func:`~segkit.thresholds.best_thresholds` chooses the thresholds (:mod:`segkit.thresholds`).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from .data.sampling import eval_sampler
from .evaluation import ExportedPredictor
from .head import Head
from .metrics import MultilabelCounts
from .thresholds import ThresholdHistograms


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
    ``histograms`` also sees every labelled probability, for :func:`best_thresholds`. An
    :class:`~segkit.evaluation.ExportedPredictor` gives its file's own decisions (its thresholds are in it)."""
    k = len(thresholds)
    metric = MultilabelCounts(k).to(device)
    head = Head("multilabel", k, thresholds)
    loader = DataLoader(dataset, batch_size=1, num_workers=num_workers, sampler=eval_sampler(dataset))
    bar = tqdm(loader, desc="eval", dynamic_ncols=True, disable=not distributed.is_main())
    for batch in bar:
        mask = batch["mask"][0].to(device)  # (K, H, W)
        if isinstance(predictor, ExportedPredictor):
            metric.update(predictor.labels(batch["image"]).to(device)[None].bool(), mask[None])
            continue

        def on_probs(y0: int, probs: torch.Tensor, mask=mask) -> None:
            probs = probs.to(device)
            target = mask[:, y0 : y0 + probs.shape[1]]
            metric.update(head.decide(probs[None]), target[None])
            if histograms is not None:
                histograms.update(probs, target)

        predictor.predict(batch["image"], on_probs, name=batch["name"][0], say=bar.write)
    return metric.compute().cpu()
