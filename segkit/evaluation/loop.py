"""Scoring a model, or a folder of prediction files, on a split the way the benchmarks do.

One set of int64 counts over every pixel of the split, labels at full resolution (never resized): the confusion
matrix of a single-label head, the per-class counts of a multi-label one. Under ``torchrun`` each process scores
its own images and the counts are summed. Prediction files are named, encoded and read back as the config's
DataModule declares (``datamodule.prediction_files``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import distributed
from ..data.predictions import PredictionFiles
from ..data.sampling import eval_sampler
from ..data.visualize import confusion_heatmap, save_overlay
from ..head import Head
from ..io.disk import written_whole
from .analysis import EvalAnalysis
from .metrics import ConfusionMatrix, head_counts, head_scores
from .thresholds import ThresholdHistograms, tuned_probabilities

# prediction files and the confusion matrix hold one class per pixel
UNSCORED_MULTILABEL = (
    "prediction files and the confusion matrix hold one class per pixel; a multi-label model's pixels may have "
    "several, and it is scored per class (IoU of each class's mask)"
)


def evaluate(
    predictor,
    dataset,
    *,
    head: Head,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    save_predictions: Path | None = None,
    files: PredictionFiles | None = None,
    palette: np.ndarray | str = "voc",
    analysis: EvalAnalysis | None = None,
    histograms: ThresholdHistograms | None = None,
) -> torch.Tensor:
    """The counts of ``predictor``'s decisions on ``dataset``, one image at a time: the (K, K) confusion matrix of
    a single-label ``head`` (multiclass, binary), the (K, 4) per-class counts of a multi-label one
    (:func:`~segkit.evaluation.metrics.head_counts`).

    ``predictor``: a :class:`CheckpointPredictor` (it tiles images above its memory budget, and says so) or an
    :class:`ExportedPredictor`; the dataset gives what it takes (raw pixels, or normalized ones for a
    :class:`CheckpointPredictor` without a transform). With ``save_predictions``, each prediction is written
    there as ``files`` declares, with a colour overlay. ``analysis`` sees every image's prediction (and its class
    probabilities when it needs them; a multi-label head's per class); ``histograms`` (the threshold tuning of a
    sigmoid head, :mod:`segkit.evaluation.thresholds`) the probabilities its thresholds act on, at every labelled
    pixel. Under ``torchrun`` each process takes its own images (no image twice, none dropped) and the counts are
    summed across processes.
    """
    if head.mode == "multilabel" and save_predictions is not None:
        raise ValueError(UNSCORED_MULTILABEL)
    if analysis is not None and analysis.multilabel != (head.mode == "multilabel"):
        kind = "multi-label decisions" if analysis.multilabel else "single-label maps"
        raise ValueError(f"the analysis measures {kind}; the model's head is {head.mode}")
    metric = head_counts(head).to(device)
    loader = DataLoader(dataset, batch_size=1, num_workers=num_workers, sampler=eval_sampler(dataset))
    if save_predictions is not None:
        save_predictions.mkdir(parents=True, exist_ok=True)
        files = files or PredictionFiles()
    with_probs = (analysis is not None and analysis.needs_probs) or histograms is not None
    order = list(loader.sampler)  # dataset indices of this process's images
    bar = tqdm(loader, desc="eval", dynamic_ncols=True, disable=not distributed.is_main())
    for index, batch in zip(order, bar):
        image, mask = batch["image"], batch["mask"].to(device)  # the predictor takes the image where it needs it
        seen = partial(_see_probs, head, analysis, histograms, mask[0]) if with_probs else None
        # (H, W) class indices, or a multi-label head's (K, H, W) decisions
        pred = predictor.predict(image, seen, name=batch["name"][0], say=bar.write).to(device)
        metric.update(pred[None], mask)
        if analysis is not None:
            analysis.update(index, batch["name"][0], pred, mask[0])
        if save_predictions is not None:
            labels = pred.cpu().numpy()
            files.write(save_predictions, batch["name"][0], labels)
            save_overlay(
                save_predictions / f"{batch['name'][0]}_overlay.jpg", _picture(dataset, index), labels, palette
            )
    return metric.compute().cpu()  # summed over processes


def _picture(dataset, index: int) -> np.ndarray:
    """The RGB picture of a dataset's image (:meth:`SegmentationDataset.picture`, or the image itself)."""
    return dataset.picture(index) if hasattr(dataset, "picture") else dataset.load(index)[0]


def _see_probs(
    head: Head,
    analysis: EvalAnalysis | None,
    histograms: ThresholdHistograms | None,
    mask: torch.Tensor,
    y0: int,
    probs: torch.Tensor,
) -> None:
    """An image's (or a band's, from row ``y0``) class probabilities, for the analysis and the histograms."""
    mask = mask[..., y0 : y0 + probs.shape[1], :]
    if analysis is not None and analysis.needs_probs:
        analysis.calibrate(probs, mask)
    if histograms is not None:
        histograms.update(*tuned_probabilities(head, probs.to(mask.device), mask))


def score_predictions(
    dataset, folder: Path, num_classes: int, files: PredictionFiles, analysis: EvalAnalysis | None = None
) -> ConfusionMatrix:
    """Scores the prediction files in ``folder`` against the split's ground truth (no model).

    Every process scores all files (reading PNGs is cheap), so the matrix is not summed across processes (nor
    are ``analysis``'s counts: build it with ``sync=False``).
    """
    metric = ConfusionMatrix(num_classes, sync_on_compute=False)
    for index, path in enumerate(tqdm(files.match(dataset.ids, folder), desc="score")):
        _, gt = dataset.load(index)
        pred = files.read(path, num_classes)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {path} is {pred.shape}, its ground truth is {gt.shape}")
        pred, gt = torch.from_numpy(pred), torch.from_numpy(gt)
        metric.update(pred, gt)
        if analysis is not None:
            analysis.update(index, dataset.samples[index].name, pred, gt)
    return metric


def scores_json(
    head: Head,
    counts: torch.Tensor,
    class_names: list[str] | tuple[str, ...],
    settings: dict,
    void: torch.Tensor | None = None,
) -> dict:
    """The scores of :func:`evaluate`'s counts as ``segkit eval --json`` writes them, with ``settings``."""
    s = head_scores(head, counts, void)
    return {
        "mIoU": s["mIoU"],
        "per_class_iou": {n: (None if np.isnan(v) else v) for n, v in zip(class_names, s["per_class_iou"].tolist())},
        "pixel_accuracy": s["pixel_acc"],
        "mean_accuracy": s["mean_acc"],
        "fwIoU": s["fwIoU"],
        **settings,
    }


def save_confusion(confmat: torch.Tensor, prefix: Path) -> None:
    """``<prefix>.npy`` (raw counts) and ``<prefix>.png`` (rows normalized by ground-truth pixels, 16 px cells)."""
    written_whole(f"{prefix}.npy", lambda: np.save(f"{prefix}.npy", confmat.numpy()))
    heatmap = Image.fromarray(confusion_heatmap(confmat))
    written_whole(f"{prefix}.png", lambda: heatmap.save(f"{prefix}.png"))  # PIL raises what cv2.imwrite hides
