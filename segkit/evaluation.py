"""Scoring a model, or a folder of prediction files, on a split the way the benchmarks do.

One int64 confusion matrix over every pixel of the split, labels at full resolution (never resized). Under
``torchrun`` each process scores its own images and the matrices are summed. Prediction files are named,
encoded and read back as the config's DataModule declares (``datamodule.prediction_files``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from .analysis import EvalAnalysis
from .data.predictions import PredictionFiles
from .data.sampling import eval_sampler
from .data.visualize import confusion_heatmap, save_overlay
from .head import Head
from .inference import label_maps, predict_probs
from .inference.memory import MemoryPlan, ModelFootprint
from .inference.tiled import tiled_labels
from .io.disk import written_whole
from .metrics import ConfusionMatrix, segmentation_scores
from .thresholds import ThresholdHistograms, binary_target


def evaluate(
    predictor,
    dataset,
    num_classes: int,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    save_predictions: Path | None = None,
    files: PredictionFiles | None = None,
    palette: np.ndarray | str = "voc",
    analysis: EvalAnalysis | None = None,
    histograms: ThresholdHistograms | None = None,
) -> torch.Tensor:
    """The (K, K) confusion matrix of ``predictor`` on ``dataset``, one image at a time.

    ``predictor``: a :class:`CheckpointPredictor` (it tiles images above its memory budget, and says so) or an
    :class:`ExportedPredictor`; the dataset gives what it takes (raw uint8 pixels, or normalized ones for a
    :class:`CheckpointPredictor` without a transform). With ``save_predictions``,
    each prediction is written there as ``files`` declares, with a colour overlay. ``analysis`` sees every
    image's prediction (and its class probabilities when it needs them); ``histograms`` (a binary model's
    threshold tuning, :mod:`segkit.thresholds`) the foreground probability of every labelled pixel. Under
    ``torchrun`` each process takes its own images (no image twice, none dropped) and the matrices are summed
    across processes.
    """
    metric = ConfusionMatrix(num_classes).to(device)
    loader = DataLoader(dataset, batch_size=1, num_workers=num_workers, sampler=eval_sampler(dataset))
    if save_predictions is not None:
        save_predictions.mkdir(parents=True, exist_ok=True)
        files = files or PredictionFiles()
    with_probs = (analysis is not None and analysis.needs_probs) or histograms is not None
    order = list(loader.sampler)  # dataset indices of this process's images
    bar = tqdm(loader, desc="eval", dynamic_ncols=True, disable=not distributed.is_main())
    for index, batch in zip(order, bar):
        image, mask = batch["image"], batch["mask"].to(device)  # the predictor takes the image where it needs it
        seen = partial(_see_probs, analysis, histograms, mask[0]) if with_probs else None
        pred = predictor.predict(image, seen, name=batch["name"][0], say=bar.write).to(device)  # (H, W)
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
    analysis: EvalAnalysis | None, histograms: ThresholdHistograms | None, mask: torch.Tensor, y0: int, probs
) -> None:
    """An image's (or a band's, from row ``y0``) class probabilities, for the analysis and the histograms."""
    mask = mask[y0 : y0 + probs.shape[1]]
    if analysis is not None and analysis.needs_probs:
        analysis.calibrate(probs, mask)
    if histograms is not None:
        histograms.update(probs[1:].to(mask.device), binary_target(mask))


class CheckpointPredictor:
    """A checkpoint's model (eval mode, on the device) with test-time augmentation ``settings`` (keyword
    arguments of :func:`segkit.inference.predict_probs`) on a (1, 3, H, W) batch: raw uint8 pixels that
    ``transform`` (the eval transform) normalizes, or without one a batch already normalized.

    With a ``memory_budget`` (bytes), an image whose probabilities would need more is predicted band by band
    (:mod:`segkit.inference.tiled`, in ``settings["window"]`` or 513 px windows)."""

    def __init__(
        self,
        model: torch.nn.Module,
        settings: dict | None = None,
        memory_budget: int | None = None,
        transform=None,
    ) -> None:
        self.model, self.settings, self.transform = model.eval(), settings or {}, transform
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.plan = None
        if memory_budget is not None:
            self.plan = MemoryPlan(ModelFootprint.measure(self.model), self.settings, memory_budget)

    def _normalized(self, pixels: torch.Tensor) -> torch.Tensor:
        """A raw (1, 3, h, w) uint8 batch through ``transform`` (on the CPU, where the loader gives it); a batch
        already normalized as it is; either on the model's device."""
        if self.transform is None:
            return pixels.to(self.device)
        image = np.ascontiguousarray(pixels[0].permute(1, 2, 0).cpu().numpy())
        return self.transform(image=image)["image"][None].to(self.device)

    def predict(self, image: torch.Tensor, on_probs=None, name: str = "image", say=print) -> torch.Tensor:
        """(H, W) class indices; ``on_probs(y0, probs)`` sees the (K, rows, W) probabilities of the rows from
        ``y0`` (all rows at once, or band by band when the image is tiled)."""
        h, w = image.shape[-2:]
        if self.plan is None or not self.plan.tiled(h, w):
            probs = predict_probs(self.model, self._normalized(image), **self.settings)[0]
            if on_probs is not None:
                on_probs(0, probs)
            return label_maps(Head.of(self.model), probs[None])[0]
        refusal = self.plan.refusal(name, h, w)
        if refusal is not None:
            raise ValueError(refusal)
        say(self.plan.describe(name, h, w))
        hook = None if on_probs is None else (lambda y0, rows, probs: on_probs(y0, probs))
        read = lambda y0, y1, x0, x1: self._normalized(image[..., y0:y1, x0:x1])  # noqa: E731
        return tiled_labels(self.model, read, h, w, **self.plan.tile_options, on_rows=hook)


class ExportedPredictor:
    """An :class:`~segkit.inference.exported.ExportedModel` on a batch of one raw (1, 3, H, W) uint8 image."""

    def __init__(self, exported) -> None:
        self.exported = exported

    def predict(self, image: torch.Tensor, on_probs=None, name: str = "image", say=print) -> torch.Tensor:
        """(H, W) class indices; ``on_probs(0, probs)`` sees the (K, H, W) probabilities when given."""
        if on_probs is None:
            return self.labels(image)
        probs = self.probs(image)
        on_probs(0, probs)
        return label_maps(self.exported.head, probs[None])[0]

    def labels(self, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.exported.labels([_pixels(image)])[0]).to(image.device)

    def probs(self, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.exported.probs([_pixels(image)])[0]).to(image.device)


def _pixels(image: torch.Tensor) -> np.ndarray:
    return image[0].permute(1, 2, 0).cpu().numpy()


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
    confmat: torch.Tensor, class_names: list[str] | tuple[str, ...], settings: dict, void: torch.Tensor | None = None
) -> dict:
    s = segmentation_scores(confmat, void)
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
