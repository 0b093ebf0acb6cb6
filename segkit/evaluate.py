"""`segkit eval`: score a checkpoint, or a folder of prediction PNGs, on a split the way the benchmarks do.

    segkit eval --config configs/voc.yaml --ckpt_path best.ckpt --data.root /data/voc \\
        --output_stride 8 --scales 0.5 0.75 1.0 1.25 1.5 1.75 --flip --json results.json
    segkit eval --config configs/cityscapes.yaml --data.root /data/cityscapes --predictions preds/

One int64 confusion matrix over every pixel of the split, labels at full resolution (never resized).
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .data.base import IGNORE_INDEX, check_values, read_label_png
from .data.cityscapes import LABEL_ID_TO_TRAIN_ID, NUM_LABEL_IDS, train_ids_to_label_ids
from .data.datamodule import CityscapesDataModule, eval_sampler
from .data.visualize import confusion_heatmap, overlay
from .inference import predict_probs
from .metrics import ConfusionMatrix, format_iou_table, segmentation_scores


def evaluate(
    model: torch.nn.Module,
    dataset,
    num_classes: int,
    scales: list[float] | tuple[float, ...] = (1.0,),
    flip: bool = False,
    window: int | None = None,
    overlap: float = 1 / 3,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    save_predictions: Path | None = None,
    label_ids: bool = False,
    palette: str = "voc",
) -> torch.Tensor:
    """The (K, K) confusion matrix of ``model`` on ``dataset`` (eval transform), one image at a time.

    Under ``torchrun`` each process takes its own images (no image twice, none dropped) and the matrices are
    summed across processes.
    """
    model = model.to(device).eval()
    metric = ConfusionMatrix(num_classes).to(device)
    loader = DataLoader(dataset, batch_size=1, num_workers=num_workers, sampler=eval_sampler(dataset))
    if save_predictions is not None:
        save_predictions.mkdir(parents=True, exist_ok=True)
    order = list(loader.sampler)  # dataset indices of this process's images
    for index, batch in zip(order, tqdm(loader, desc="eval", dynamic_ncols=True, disable=not _is_main())):
        image, mask = batch["image"].to(device), batch["mask"].to(device)
        pred = predict_probs(model, image, scales, flip, window, overlap).argmax(1)  # (1, H, W)
        metric.update(pred, mask)
        if save_predictions is not None:
            _save(save_predictions, batch["name"][0], pred[0].to(torch.uint8).cpu().numpy(), dataset, index,
                  label_ids, palette)
    return metric.compute().cpu()  # summed over processes


def _is_main() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _save(folder: Path, name: str, pred: np.ndarray, dataset, index: int, label_ids: bool, palette: str) -> None:
    """Class-index PNG (Cityscapes: label ids, as the official server takes them) and a colour overlay."""
    if label_ids:
        cv2.imwrite(str(folder / f"{name}_labelIds.png"), train_ids_to_label_ids(pred))
    else:
        cv2.imwrite(str(folder / f"{name}.png"), pred)
    image, _ = dataset.load(index)
    cv2.imwrite(str(folder / f"{name}_overlay.jpg"), cv2.cvtColor(overlay(image, pred, palette), cv2.COLOR_RGB2BGR))


def _prediction_key(path: Path, cityscapes: bool) -> str:
    if cityscapes:  # <city>_<seq>_<frame>, whatever suffix the file carries
        match = re.match(r"(.+?_\d{6}_\d{6})", path.stem)
        return match.group(1) if match else path.stem
    return path.stem


def match_predictions(dataset, folder: Path, cityscapes: bool) -> list[Path]:
    """The prediction file of every sample, in dataset order; raises naming missing, extra or doubled files."""
    if not folder.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {folder}")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.png")):
        found.setdefault(_prediction_key(path, cityscapes), []).append(path)
    names = dataset.ids
    missing = [n for n in names if n not in found]
    extra = sorted(str(p) for key, paths in found.items() if key not in set(names) for p in paths)
    doubled = sorted(str(p) for paths in found.values() if len(paths) > 1 for p in paths)
    problems = []
    if missing:
        problems.append(f"{len(missing)} images have no prediction in {folder}: {missing[:10]}")
    if extra:
        problems.append(f"{len(extra)} prediction files match no image of the split: {extra[:10]}")
    if doubled:
        problems.append(f"several prediction files for one image: {doubled[:10]}")
    if problems:
        raise ValueError("; ".join(problems))
    return [found[n][0] for n in names]


def read_prediction(path: Path, num_classes: int, cityscapes: bool) -> np.ndarray:
    """Class indices (255 = void) from a class-index/palette PNG, or a Cityscapes ``*_labelIds.png``."""
    pred = read_label_png(path)
    if cityscapes and path.name.endswith("_labelIds.png"):
        check_values(pred, np.arange(NUM_LABEL_IDS), path)
        return LABEL_ID_TO_TRAIN_ID[pred]  # ignored ids become void: a miss for the true class
    check_values(pred, np.r_[np.arange(num_classes), IGNORE_INDEX], path)
    return pred


def score_predictions(dataset, folder: Path, num_classes: int, cityscapes: bool) -> ConfusionMatrix:
    """Scores the prediction files in ``folder`` against the split's ground truth (no model).

    Every process scores all files (reading PNGs is cheap), so the matrix is not summed across processes.
    """
    metric = ConfusionMatrix(num_classes, sync_on_compute=False)
    for index, path in enumerate(tqdm(match_predictions(dataset, folder, cityscapes), desc="score")):
        _, gt = dataset.load(index)
        pred = read_prediction(path, num_classes, cityscapes)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {path} is {pred.shape}, its ground truth is {gt.shape}")
        metric.update(torch.from_numpy(pred), torch.from_numpy(gt))
    return metric


def scores_json(confmat: torch.Tensor, class_names: list[str] | tuple[str, ...], settings: dict,
                void: torch.Tensor | None = None) -> dict:
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
    np.save(f"{prefix}.npy", confmat.numpy())
    cv2.imwrite(f"{prefix}.png", cv2.cvtColor(confusion_heatmap(confmat), cv2.COLOR_RGB2BGR))


def main(args: list[str]) -> None:
    from jsonargparse import ActionYesNo

    from .data.check import config_datamodule, data_config_parser
    from .predict import load_inference_model

    parser = data_config_parser("segkit eval", "Score a checkpoint or prediction files on a split.", ignore=())
    parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint written by segkit fit")
    parser.add_argument("--predictions", type=str | None, default=None,
                        help="score this folder of prediction PNGs instead of a model")
    parser.add_argument("--split", default="val", help="split to score")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="input scales, e.g. 0.5 0.75 1.0 1.25")
    parser.add_argument("--flip", action=ActionYesNo, default=False, help="add left-right flipped inputs")
    parser.add_argument("--output_stride", type=int | None, default=None, help="evaluate at this output stride")
    parser.add_argument("--window", type=int | None, default=None, help="sliding-window size for large inputs")
    parser.add_argument("--overlap", type=float, default=1 / 3, help="sliding-window overlap")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=str | None, default=None, help="write the scores and settings here")
    parser.add_argument("--confusion", type=str | None, default=None, help="write <prefix>.npy and <prefix>.png")
    parser.add_argument("--save_predictions", type=str | None, default=None, help="folder for prediction PNGs")
    parser.add_argument("--wandb_project", type=str | None, default=None,
                        help="log the results to a new W&B run in this project")
    parser.add_argument("--wandb_run_id", type=str | None, default=None,
                        help="log the results to this existing W&B run (e.g. the training run)")
    parser.add_argument("--wandb_images", type=int, default=8, help="sample predictions logged to W&B")
    cfg = parser.parse_args(args)
    device = cfg.device
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():  # started by torchrun
        nccl = device.startswith("cuda")
        dist.init_process_group("nccl" if nccl else "gloo")
        if nccl:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
    datamodule = config_datamodule(parser, cfg)
    if _is_main():
        datamodule.prepare_data()
    if dist.is_initialized():
        dist.barrier()

    if (cfg.ckpt_path is None) == (cfg.predictions is None):
        parser.error("give either --ckpt_path (score a model) or --predictions (score prediction files)")
    from .data.transforms import eval_transform

    cityscapes = isinstance(datamodule, CityscapesDataModule)
    void, model = None, None
    if cfg.predictions is not None:
        dataset = datamodule.make_split(cfg.split)
        metric = score_predictions(dataset, Path(cfg.predictions), datamodule.num_classes, cityscapes)
        confmat, void = metric.compute(), metric.void
        settings = {"num_images": len(dataset), "split": cfg.split, "predictions": str(cfg.predictions)}
        heading = f"{cfg.split}: {len(dataset)} prediction files from {cfg.predictions}"
    else:
        # batch norm folded into the convolutions: the same function, faster (docs/benchmarks.md)
        model = load_inference_model(cfg.ckpt_path, datamodule.num_classes, cfg.output_stride)
        dataset = datamodule.make_split(cfg.split, eval_transform(datamodule.mean, datamodule.std))
        confmat = evaluate(
            model, dataset, datamodule.num_classes, cfg.scales, cfg.flip, cfg.window, cfg.overlap, device,
            datamodule.num_workers, Path(cfg.save_predictions) if cfg.save_predictions else None,
            label_ids=cityscapes, palette="cityscapes" if cityscapes else "voc",
        )
        settings = {"num_images": len(dataset), "split": cfg.split, "scales": list(cfg.scales), "flip": cfg.flip,
                    "output_stride": model.output_stride, "window": cfg.window, "checkpoint": str(cfg.ckpt_path)}
        heading = (f"{cfg.split}: {len(dataset)} images, scales {list(cfg.scales)}, flip {cfg.flip}, "
                   f"output stride {model.output_stride}")
    if dist.is_initialized():
        settings["processes"] = dist.get_world_size()
    if _is_main():
        _report(confmat, void, datamodule.class_names, settings, heading, cfg)
        if cfg.wandb_project or cfg.wandb_run_id:
            samples = _samples(cfg, dataset, model, datamodule, cityscapes, device)
            _log_wandb(cfg, confmat, void, datamodule.class_names, settings, samples)
    if dist.is_initialized():
        dist.destroy_process_group()
    sys.exit(0)


def _samples(cfg, dataset, model, datamodule, cityscapes: bool, device) -> list:
    """(image, ground truth, prediction, name) of ``cfg.wandb_images`` images chosen by seed 0: predicted with
    the evaluation's settings, or read from the prediction files."""
    from .callbacks import predict_samples, sample_indices

    indices = sample_indices(len(dataset), cfg.wandb_images, 0)
    if model is None:
        files = match_predictions(dataset, Path(cfg.predictions), cityscapes)
        return [(*dataset.load(i), read_prediction(files[i], datamodule.num_classes, cityscapes),
                 dataset.samples[i].name) for i in indices]
    model = model.to(device).eval()
    return predict_samples(lambda x: predict_probs(model, x, cfg.scales, cfg.flip, cfg.window, cfg.overlap),
                           dataset, indices, device)


def _log_wandb(cfg, confmat, void, class_names, settings: dict, samples: list) -> None:
    """Table, bar chart, confusion matrix, sample predictions and scores (``eval/...``) to a new or existing run."""
    import wandb

    from .callbacks import iou_table, mask_image
    from .loggers import offline_reason, sync_hint

    reason = offline_reason()
    run = wandb.init(project=cfg.wandb_project, id=cfg.wandb_run_id, resume="allow" if cfg.wandb_run_id else None,
                     job_type="eval", mode="offline" if reason else None, config={"eval": settings})
    scores = segmentation_scores(confmat, void)
    table = iou_table(class_names, scores)
    log = {"eval/iou_table": table, "eval/iou_bar": wandb.plot.bar(table, "class", "IoU", title="Per-class IoU"),
           "eval/confusion": wandb.Image(confusion_heatmap(confmat), caption="rows: ground truth, normalized")}
    for image, truth, pred, name in samples:
        log[f"eval/prediction/{name}"] = mask_image(image, truth, pred, class_names, name)
    run.log(log)
    result = scores_json(confmat, class_names, settings, void)
    run.summary.update({f"eval/{k}": result[k] for k in ("mIoU", "pixel_accuracy", "mean_accuracy", "fwIoU")})
    run.summary.update({f"eval/IoU/{k}": v for k, v in result["per_class_iou"].items()})
    run_dir = os.path.dirname(os.path.normpath(run.dir))
    run.finish()
    print(sync_hint(run_dir) if reason else f"logged to W&B run {run.id} ({cfg.wandb_project or 'existing run'})")


def _report(confmat, void, class_names, settings: dict, heading: str, cfg) -> None:
    result = scores_json(confmat, class_names, settings, void)
    print(format_iou_table(class_names, segmentation_scores(confmat, void), cfg.split, heading))
    print(f"{cfg.split}/fwIoU {100 * result['fwIoU']:>9.2f}")
    if cfg.json:
        Path(cfg.json).write_text(json.dumps(result, indent=1))
    if cfg.confusion:
        save_confusion(confmat, Path(cfg.confusion))
