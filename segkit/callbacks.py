"""The W&B dashboard of a segkit run: what a segmentation researcher looks at after each validation.

:class:`WandbDashboard` adds, when the trainer logs to W&B (on rank 0 only; it does nothing otherwise):

- ``val/iou_table``: per-class IoU and accuracy (``wandb.Table``) and ``val/iou_bar``, a bar chart of it;
- ``val/confusion``: the confusion matrix normalized by ground-truth pixels (rows), as an image;
- ``val/prediction/<image name>``: a fixed set of validation images (chosen by ``seed``), each with its
  ground-truth and predicted masks and the class names, for W&B's mask overlay and per-class toggles;
- ``best/val_mIoU`` and ``best/step`` in the run summary.

Scalars (``train/loss``, ``train/lr``, ``val/mIoU``, ``val/pixel_acc``, ``val/IoU/<class>``) are logged by
the task itself, through any logger.
"""
from __future__ import annotations

import cv2
import lightning as L
import numpy as np
import torch

from .data.base import IGNORE_INDEX
from .data.visualize import confusion_heatmap


def wandb_run(trainer: L.Trainer):
    """The W&B run the trainer logs to, or None."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger.experiment
    return None


def iou_table(class_names, scores: dict):
    """A ``wandb.Table`` (class, IoU, accuracy; NaN for classes absent from ground truth and prediction)."""
    import wandb

    rows = [[name, float(iou), float(acc)] for name, iou, acc in
            zip(class_names, scores["per_class_iou"].tolist(), scores["per_class_acc"].tolist())]
    return wandb.Table(columns=["class", "IoU", "accuracy"], data=rows)


def mask_image(image: np.ndarray, truth: np.ndarray | None, pred: np.ndarray, class_names, caption: str,
               max_side: int = 640):
    """A ``wandb.Image`` with ground-truth and prediction masks (class labels, 255 as "ignored"), downsized so
    that its longer side is at most ``max_side``."""
    import wandb

    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        pred = cv2.resize(pred, size, interpolation=cv2.INTER_NEAREST)
        truth = None if truth is None else cv2.resize(truth, size, interpolation=cv2.INTER_NEAREST)
    labels = {i: name for i, name in enumerate(class_names)} | {IGNORE_INDEX: "ignored"}
    masks = {"prediction": {"mask_data": pred, "class_labels": labels}}
    if truth is not None:
        masks["ground_truth"] = {"mask_data": truth, "class_labels": labels}
    return wandb.Image(image, masks=masks, caption=caption)


def sample_indices(length: int, num: int, seed: int) -> list[int]:
    """``num`` image indices out of ``length``, the same for a seed on every call."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(length, size=min(num, length), replace=False).tolist())


@torch.no_grad()
def predict_samples(predict, dataset, indices, device) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """(image, ground truth, prediction, name) of dataset images: raw files, the dataset's eval transform, and
    ``predict`` mapping a (1, 3, H, W) batch to (1, K, H, W) class scores (a model in eval mode, or multi-scale)."""
    out = []
    for i in indices:
        image, truth = dataset.load(i)
        x = dataset.transform(image=image, mask=truth)["image"] if dataset.transform else torch.from_numpy(image)
        scores = predict(x[None].to(device))
        pred = scores.argmax(1)[0, :image.shape[0], :image.shape[1]].to(torch.uint8).cpu().numpy()
        out.append((image, truth, pred, dataset.samples[i].name))
    return out


class WandbDashboard(L.Callback):
    """Per-validation tables, charts, confusion matrix and sample predictions for W&B (see module doc).

    Args:
        num_images: validation images logged with their masks after each validation.
        seed: chooses those images (the same ones every validation and every run with this seed).
    """

    def __init__(self, num_images: int = 8, seed: int = 0) -> None:
        self.num_images, self.seed = num_images, seed
        self.best: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run = wandb_run(trainer) if trainer.is_global_zero else None
        if run is not None:
            run.define_metric("val/mIoU", summary="max")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or getattr(pl_module, "last_val", None) is None:
            return
        run = wandb_run(trainer)
        if run is None:
            return
        import wandb

        confmat, scores = pl_module.last_val
        names = pl_module.class_names
        table = iou_table(names, scores)
        log = {
            "val/iou_table": table,
            "val/iou_bar": wandb.plot.bar(table, "class", "IoU", title="Per-class IoU"),
            "val/confusion": wandb.Image(confusion_heatmap(confmat), caption="rows: ground truth, normalized"),
        }
        dataset = trainer.datamodule.val_set if trainer.datamodule is not None else None
        if self.num_images and dataset is not None:
            indices = sample_indices(len(dataset), self.num_images, self.seed)
            training = pl_module.training
            pl_module.eval()
            samples = predict_samples(pl_module, dataset, indices, pl_module.device)
            pl_module.train(training)
            for img, gt, pr, name in samples:  # one panel per image (W&B lays out lists of equal-size images)
                log[f"val/prediction/{name}"] = mask_image(img, gt, pr, names, name)
        run.log(log | {"trainer/global_step": trainer.global_step})
        miou = float(scores["mIoU"])
        if self.best is None or miou > self.best:
            self.best = miou
            run.summary["best/val_mIoU"] = miou
            run.summary["best/step"] = trainer.global_step
