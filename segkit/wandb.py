"""Everything segkit does with Weights & Biases, in one place.

- :class:`WandbLogger`: Lightning's, falling back to offline mode without an account or a network. A run is
  written offline, to ``<save_dir>/wandb/offline-run-*``, when ``WANDB_MODE`` says so, when no API key is set
  up (``WANDB_API_KEY`` or ``wandb login``), or when the W&B server cannot be reached; segkit then prints once
  how to upload it later with ``wandb sync`` (:func:`finish_runs`, at the end of each command).
- :class:`WandbDashboard`, a callback that adds, when the trainer logs to W&B (on rank 0 only; it does nothing
  otherwise), after each validation:

  - ``val/iou_table``: per-class IoU and accuracy (``wandb.Table``) and ``val/iou_bar``, a bar chart of it;
  - ``val/confusion``: the confusion matrix normalized by ground-truth pixels (rows), as an image;
  - ``val/prediction/<image name>``: a fixed set of validation images (chosen by ``seed``), each with its
    ground-truth and predicted masks and the class names, for W&B's mask overlay and per-class toggles (a
    multi-label model's: one mask layer per class, :func:`mask_image`);
  - ``best/val_mIoU`` and ``best/step`` in the run summary.

  Scalars (``train/loss``, ``train/lr``, ``val/mIoU``, ``val/pixel_acc``, ``val/IoU/<class>``) are logged by
  the task itself, through any logger.
- :func:`log_eval`: the same panels for ``segkit eval``'s results, to a new run or the training run.

(``import wandb`` inside this module is the wandb package: imports are absolute.)
"""

from __future__ import annotations

import netrc
import os
import socket
from urllib.parse import urlparse

import cv2
import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info

from .data.base import IGNORE_INDEX
from .data.visualize import confusion_heatmap
from .evaluation.metrics import head_scores
from .head import Head
from .inference import label_maps

DEFAULT_BASE_URL = "https://api.wandb.ai"


def offline_reason(timeout: float = 3.0) -> str | None:
    """Why a W&B run has to be offline here (``None``: it can go online)."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return f"WANDB_MODE={mode}"
    url = urlparse(os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL))
    host = url.hostname or "api.wandb.ai"
    if not os.environ.get("WANDB_API_KEY"):
        try:
            has_key = netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
        except (FileNotFoundError, netrc.NetrcParseError):
            has_key = False
        if not has_key:
            return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
    try:
        socket.create_connection((host, url.port or (443 if url.scheme != "http" else 80)), timeout=timeout).close()
    except OSError:
        return f"{host} cannot be reached"
    return None


def sync_hint(run_dir: str) -> str:
    return f"W&B run written offline to {run_dir}; upload it with:  wandb sync {run_dir}"


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` that writes the run offline when W&B cannot be used online (see module doc).

    Args:
        project: W&B project.
        name: run name (W&B picks one when None).
        tags: run tags.
        save_dir: folder under which W&B writes ``wandb/`` (and Lightning the run's checkpoints).
        log_model: upload checkpoints as W&B model artifacts (``True``: at the end, ``"all"``: as they are
            written), with their score in the metadata. Offline, they are uploaded by ``wandb sync``.
        offline: force offline mode; default: decide as described above.
        **kwargs: passed to Lightning's ``WandbLogger`` and ``wandb.init``.
    """

    def __init__(
        self,
        project: str = "segkit",
        name: str | None = None,
        tags: list[str] | None = None,
        save_dir: str = ".",
        log_model: bool | str = False,
        offline: bool | None = None,
        **kwargs,
    ) -> None:
        reason = offline_reason() if offline is None else ("offline=True" if offline else None)
        if reason is not None and os.environ.get("WANDB_MODE", "").lower() != "disabled":
            kwargs["mode"] = "offline"  # wandb's own switch: unlike Lightning's `offline`, it allows log_model
            rank_zero_info(f"segkit: W&B offline ({reason}); the run will be written under {save_dir}/wandb")
        super().__init__(project=project, name=name, tags=tags, save_dir=save_dir, log_model=log_model, **kwargs)
        self.offline_reason = reason
        # Lightning passes anonymous=None, which wandb (0.19+) warns has no effect: leave it out
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        # wandb looks for the git repository from the run's folder, and warns when the folder does not exist yet
        os.makedirs(save_dir, exist_ok=True)

    def sync_hint(self) -> str | None:
        """How to upload the run, when it was written offline."""
        if self.offline_reason is None or self._experiment is None or not getattr(self._experiment, "dir", None):
            return None
        return sync_hint(os.path.dirname(os.path.normpath(self._experiment.dir)))

    def finish(self) -> None:
        """Ends the run, if one was started, printing how to upload it when it was written offline."""
        if self._experiment is None:
            return
        hint = self.sync_hint()
        if hint:
            print(hint, flush=True)
        self._experiment.finish()


def wandb_run(trainer: L.Trainer):
    """The W&B run the trainer logs to (through Lightning's WandbLogger or segkit's), or None."""
    for logger in trainer.loggers:
        if isinstance(logger, _LightningWandbLogger):
            return logger.experiment
    return None


def finish_runs(trainer: L.Trainer) -> None:
    """Ends the W&B run of a command (saying how to upload it when it was written offline), so that a later
    command in the same process starts its own."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.finish()


def iou_table(class_names, scores: dict):
    """A ``wandb.Table`` (class, IoU, accuracy; NaN for classes absent from ground truth and prediction)."""
    import wandb

    rows = [
        [name, float(iou), float(acc)]
        for name, iou, acc in zip(class_names, scores["per_class_iou"].tolist(), scores["per_class_acc"].tolist())
    ]
    return wandb.Table(columns=["class", "IoU", "accuracy"], data=rows)


MULTILABEL_AGREEMENT = {1: "predicted, labelled", 2: "predicted only", 3: "labelled only", IGNORE_INDEX: "ignored"}


def mask_image(
    image: np.ndarray, truth: np.ndarray | None, pred: np.ndarray, class_names, caption: str, max_side: int = 640
):
    """A ``wandb.Image`` of one prediction, for every head, downsized so that its longer side is at most
    ``max_side``. A single-label model's ``pred`` (H, W) and ``truth`` are two mask layers of class indices (255:
    "ignored"). A multi-label model's ``pred`` (K, H, W) booleans against ``truth`` (H, W, K) of 0, 1 and 255 is
    one layer per class (toggled apart in W&B): 1 where the class is predicted and labelled present, 2 predicted
    only, 3 labelled only, 255 where the class is not labelled."""
    import wandb

    if pred.ndim == 3:
        layers = {
            name: (_agreement(truth[..., k], pred[k]), MULTILABEL_AGREEMENT) for k, name in enumerate(class_names)
        }
    else:
        labels = {i: name for i, name in enumerate(class_names)} | {IGNORE_INDEX: "ignored"}
        layers = {"prediction": (pred, labels)} | ({} if truth is None else {"ground_truth": (truth, labels)})
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        layers = {n: (cv2.resize(m, size, interpolation=cv2.INTER_NEAREST), names) for n, (m, names) in layers.items()}
    masks = {n: {"mask_data": m, "class_labels": names} for n, (m, names) in layers.items()}
    return wandb.Image(image, masks=masks, caption=caption)


def _agreement(label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """One class's layer: 1 predicted and labelled, 2 predicted only, 3 labelled only, 255 not labelled."""
    agreement = np.where(pred, np.where(label == 1, 1, 2), np.where(label == 1, 3, 0)).astype(np.uint8)
    agreement[label == IGNORE_INDEX] = IGNORE_INDEX
    return agreement


def sample_indices(length: int, num: int, seed: int) -> list[int]:
    """``num`` image indices out of ``length``, the same for a seed on every call."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(length, size=min(num, length), replace=False).tolist())


@torch.no_grad()
def predict_samples(
    predict, dataset, indices, device, head: Head
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """(picture, ground truth, prediction, name) of dataset images: raw files, the dataset's eval transform, and
    ``predict`` mapping a (1, C, H, W) batch to (1, K, H, W) class probabilities (a model in eval mode, or
    multi-scale); the picture is RGB (the dataset's ``display`` bands of other images). The prediction is
    ``head``'s decision: a class map, or a multi-label model's (K, H, W) booleans at its thresholds."""
    display = getattr(dataset, "display", None)
    out = []
    for i in indices:
        image, truth = dataset.load(i)
        x = dataset.transform(image=image, mask=truth)["image"] if dataset.transform else torch.from_numpy(image)
        scores = predict(x[None].to(device))
        pred = label_maps(head, scores, [image.shape[:2]])[0].cpu().numpy()
        out.append((display(image) if display else image, truth, pred, dataset.samples[i].name))
    return out


def eval_samples(dataset, count: int, *, predictor=None, files=None) -> list:
    """(picture, ground truth, prediction, name) of ``count`` images of ``dataset`` chosen by seed 0 for ``segkit
    eval``'s run: predicted by its ``predictor`` (an :class:`~segkit.evaluation.ExportedPredictor` or
    :class:`~segkit.evaluation.CheckpointPredictor`), or read from prediction files (``files``: the data set's
    :class:`~segkit.data.predictions.PredictionFiles` and their folder); the picture is RGB (the dataset's
    display bands of other images)."""
    display = getattr(dataset, "display", None) or (lambda image: image)
    indices = sample_indices(len(dataset), count, 0)
    if predictor is None:
        prediction_files, folder = files
        paths = prediction_files.match(dataset.ids, folder)
        loaded = [dataset.load(i) for i in indices]
        return [
            (display(image), truth, prediction_files.read(paths[i], dataset.num_classes), dataset.samples[i].name)
            for i, (image, truth) in zip(indices, loaded)
        ]
    samples = []
    for i in indices:
        image, truth = dataset.load(i)
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None]  # as the raw dataset gives them
        samples.append((display(image), truth, predictor.predict(pixels).cpu().numpy(), dataset.samples[i].name))
    return samples


def panels(prefix: str, confmat: torch.Tensor, scores: dict, class_names, samples: list) -> dict:
    """The per-class IoU table and bar chart, the confusion matrix and the sample predictions, as
    ``<prefix>/iou_table``, ``<prefix>/iou_bar``, ``<prefix>/confusion`` and ``<prefix>/prediction/<name>``."""
    import wandb

    table = iou_table(class_names, scores)
    log = {
        f"{prefix}/iou_table": table,
        f"{prefix}/iou_bar": wandb.plot.bar(table, "class", "IoU", title="Per-class IoU"),
    }
    if confmat is not None:  # overlapping labels have per-class counts, no confusion between classes
        log[f"{prefix}/confusion"] = wandb.Image(confusion_heatmap(confmat), caption="rows: ground truth, normalized")
    for image, truth, pred, name in samples:  # one panel per image (W&B lays out lists of equal-size images)
        log[f"{prefix}/prediction/{name}"] = mask_image(image, truth, pred, class_names, name)
    return log


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
        confmat, scores = pl_module.last_val
        dataset = trainer.datamodule.val_set if trainer.datamodule is not None else None
        samples = []
        multilabel = pl_module.hparams.get("multilabel", False)
        if multilabel:  # per-class counts: no confusion between classes
            confmat = None
        if self.num_images and dataset is not None:
            indices = sample_indices(len(dataset), self.num_images, self.seed)
            training = pl_module.training
            pl_module.eval()
            head = pl_module.head
            predict = lambda x: head.probabilities(pl_module(x))  # noqa: E731
            samples = predict_samples(predict, dataset, indices, pl_module.device, head)
            pl_module.train(training)
        log = panels("val", confmat, scores, pl_module.class_names, samples)
        run.log(log | {"trainer/global_step": trainer.global_step})
        miou = float(scores["mIoU"])
        if self.best is None or miou > self.best:
            self.best = miou
            run.summary["best/val_mIoU"] = miou
            run.summary["best/step"] = trainer.global_step


def analysis_panels(prefix: str, outputs: dict) -> dict:
    """The plot files as ``<prefix>/plots/<name>`` images, the worst images as the table ``<prefix>/worst``
    (rank, image, mIoU, pixel accuracy, panel)."""
    import wandb

    log = {f"{prefix}/plots/{name}": wandb.Image(str(path)) for name, path in outputs.get("plots", {}).items()}
    if outputs.get("worst"):
        columns = ["rank", "image", "mIoU", "pixel_accuracy", "panel"]
        rows = [
            [r["rank"], r["image"], r["mIoU"], r["pixel_accuracy"], wandb.Image(r["panel"])] for r in outputs["worst"]
        ]
        log[f"{prefix}/worst"] = wandb.Table(columns=columns, data=rows)
    return log


def analysis_summary(prefix: str, result: dict) -> dict:
    """The analysis's numbers for the run summary: trimap mIoU per width, mean Boundary IoU, ECE and NLL."""
    summary = {}
    if "trimap" in result:
        summary |= {f"{prefix}/trimap_mIoU/{w}px": v for w, v in result["trimap"]["mIoU"].items()}
    if "boundary_iou" in result:
        summary[f"{prefix}/boundary_IoU"] = result["boundary_iou"]["mean"]
    if "calibration" in result:
        summary[f"{prefix}/ECE"] = result["calibration"]["ECE"]
        summary[f"{prefix}/NLL"] = result["calibration"]["NLL"]
    return summary


def log_eval(
    project: str | None,
    run_id: str | None,
    *,
    head: Head,
    counts: torch.Tensor,
    void: torch.Tensor | None,
    class_names,
    settings: dict,
    result: dict,
    samples: list,
    outputs: dict | None = None,
) -> None:
    """``segkit eval``'s results (``eval/...``: table, chart, confusion matrix, sample predictions, scores in the
    summary) to a new run in ``project`` or to the existing run ``run_id`` (e.g. the training run), for every
    head: ``counts`` are :func:`~segkit.evaluation.evaluate`'s (a multi-label model's per-class counts have no
    confusion matrix; its samples show one mask layer per class). ``outputs``: the analysis's plot files
    (``eval/plots/<name>``) and worst images (the table ``eval/worst``)."""
    import wandb

    reason = offline_reason()
    run = wandb.init(
        project=project,
        id=run_id,
        resume="allow" if run_id else None,
        job_type="eval",
        mode="offline" if reason else None,
        config={"eval": settings},
    )
    confmat = None if head.mode == "multilabel" else counts
    run.log(panels("eval", confmat, head_scores(head, counts, void), class_names, samples))
    if outputs:
        run.log(analysis_panels("eval", outputs))
    run.summary.update({f"eval/{k}": result[k] for k in ("mIoU", "pixel_accuracy", "mean_accuracy", "fwIoU")})
    run.summary.update(analysis_summary("eval", result))
    run.summary.update({f"eval/IoU/{k}": v for k, v in result["per_class_iou"].items()})
    run_dir = os.path.dirname(os.path.normpath(run.dir))
    run.finish()
    print(sync_hint(run_dir) if reason else f"logged to W&B run {run.id} ({project or 'existing run'})")
