"""``segkit export --verify``: what an exported file measures against its checkpoint, stored in the file.

Every image of a split is segmented by the file (as :class:`~segkit.inference.exported.ExportedModel` runs it)
and by the checkpoint's model with the same settings (:func:`~segkit.inference.predict_labels`); recorded are
the fraction of pixels where the two agree and the mIoU of each, with the metric code of ``segkit eval``. For
a multi-label model: of pixel-class pairs, each class decided at the model's thresholds.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from ..evaluation.metrics import head_counts, head_scores
from ..inference import InferenceSettings, predict_labels
from ..inference.exported import ExportedModel


def verify(
    model_file: Path,
    model: torch.nn.Module,
    dataset,
    *,
    settings: InferenceSettings,
    transform,
    split: str,
    threads: int | None = None,
) -> dict:
    """Scores ``model_file`` and ``model`` (the checkpoint's, eval mode) on ``dataset`` (images as stored);
    ``transform`` is the checkpoint model's evaluation transform."""
    exported = ExportedModel(model_file, threads=threads)
    multilabel = exported.multilabel
    ours, theirs = head_counts(exported.head), head_counts(exported.head)
    agree = total = 0
    for index in tqdm(range(len(dataset)), desc="verify", dynamic_ncols=True):
        image, truth = dataset.load(index)
        got = torch.from_numpy(exported.labels([image])[0]).long()
        x = transform(image=image)["image"][None]
        want = predict_labels(model, x, **settings.options())[0].long()  # a multi-label model's (K, H, W) decisions
        gt = torch.from_numpy(truth).permute(2, 0, 1) if multilabel else torch.from_numpy(truth)  # masks as stored
        agree += int((got == want).sum())
        total += got.numel()
        ours.update(got[None], gt[None])
        theirs.update(want[None], gt[None])
    head = exported.head
    return {
        "split": split,
        "num_images": len(dataset),
        "pixel_agreement": agree / max(total, 1),
        "mIoU": head_scores(head, ours.compute())["mIoU"],
        "checkpoint_mIoU": head_scores(head, theirs.compute())["mIoU"],
        "date": datetime.date.today().isoformat(),
    }
