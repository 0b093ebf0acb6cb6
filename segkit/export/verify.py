"""``segkit export --verify``: what an exported file measures against its checkpoint, stored in the file.

Every image of a split is segmented by the file (as :class:`~segkit.inference.exported.ExportedModel` runs it)
and by the checkpoint's model with the same settings (:func:`~segkit.inference.predict_labels`); recorded are
the fraction of pixels where the two agree and the mIoU of each, with the metric code of ``segkit eval``.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.transforms import eval_transform
from ..inference import predict_labels
from ..inference.exported import ExportedModel
from ..metrics import ConfusionMatrix, segmentation_scores


def verify(
    model_file: Path, model: torch.nn.Module, dataset, settings: dict, mean, std, split: str, threads: int | None = None
) -> dict:
    """Scores ``model_file`` and ``model`` (the checkpoint's, eval mode) on ``dataset`` (raw images)."""
    exported = ExportedModel(model_file, threads=threads)
    transform = eval_transform(mean, std)
    num_classes = exported.num_classes
    ours, theirs = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    agree = total = 0
    for index in tqdm(range(len(dataset)), desc="verify", dynamic_ncols=True):
        image, truth = dataset.load(index)
        got = torch.from_numpy(exported.labels([image])[0]).long()
        x = transform(image=image)["image"][None]
        want = predict_labels(model, x, **settings)[0].long()
        agree += int((got == want).sum())
        total += got.numel()
        gt = torch.from_numpy(truth)[None]
        ours.update(got[None], gt)
        theirs.update(want[None], gt)
    return {
        "split": split,
        "num_images": len(dataset),
        "pixel_agreement": agree / max(total, 1),
        "mIoU": segmentation_scores(ours.compute())["mIoU"],
        "checkpoint_mIoU": segmentation_scores(theirs.compute())["mIoU"],
        "date": datetime.date.today().isoformat(),
    }
