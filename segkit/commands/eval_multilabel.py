"""``segkit eval`` of a model of overlapping labels (``mask_mode: multilabel``): per-class IoU at the checkpoint's
thresholds, and with ``--tune_thresholds FILE`` the thresholds of highest IoU on this split, written with the
model to a new checkpoint FILE that eval, predict and Segmenter then use (:mod:`segkit.multilabel_eval`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import distributed
from ..evaluation import CheckpointPredictor
from ..inference.memory import default_budget
from ..inference.predict import checkpoint_model
from ..io.disk import written_whole
from ..io.torch_files import read_checkpoint, save_atomic
from ..metrics import format_iou_table, multilabel_scores
from ..multilabel_eval import ThresholdHistograms, best_thresholds, evaluate_multilabel
from .options import inference_settings, memory_budget

ANALYSIS_OPTIONS = ("per_image", "worst", "trimap", "boundary_iou", "calibration", "output_dir")


def run(p, cfg, datamodule, device) -> None:
    """Scores ``cfg.ckpt_path`` on ``cfg.split`` (and tunes thresholds); exits."""
    unsupported = [f"--{o}" for o in ("model_file", "predictions", "save_predictions", "confusion") if cfg[o]]
    unsupported += [f"--{o}" for o in ANALYSIS_OPTIONS if cfg[o]]
    unsupported += ["--wandb_project/--wandb_run_id"] if cfg.wandb_project or cfg.wandb_run_id else []
    if unsupported or cfg.ckpt_path is None:
        p.error(
            f"{' '.join(unsupported) or 'no --ckpt_path'}: a multilabel model is scored from its --ckpt_path, "
            "with --json and --tune_thresholds (the other outputs are for single-label masks)"
        )
    tuned = Path(cfg.tune_thresholds) if cfg.tune_thresholds else None
    if tuned is not None and tuned.exists():
        p.error(f"--tune_thresholds {tuned} exists: segkit writes a new checkpoint and replaces nothing")
    checkpoint = read_checkpoint(cfg.ckpt_path)
    model = checkpoint_model(checkpoint, cfg.ckpt_path, datamodule.num_classes, cfg.output_stride).to(device)
    thresholds = list(checkpoint.get("segkit_thresholds") or [0.5] * datamodule.num_classes)
    dataset = datamodule.split_dataset(cfg.split)
    budget = memory_budget(p, cfg) or default_budget(device)
    predictor = CheckpointPredictor(model, inference_settings(cfg), budget, datamodule.eval_transform())
    histograms = ThresholdHistograms(datamodule.num_classes).to(device) if tuned is not None else None
    counts = evaluate_multilabel(predictor, dataset, thresholds, device, datamodule.num_workers, histograms)
    tuning = best_thresholds(*histograms.compute()) if histograms is not None else None
    if distributed.is_main():
        names = list(datamodule.class_names)
        scores = multilabel_scores(counts)
        heading = (
            f"{cfg.split}: {len(dataset)} images, multi-label, thresholds "
            f"{', '.join(f'{n} {t:.2f}' for n, t in zip(names, thresholds))}"
        )
        print(format_iou_table(names, scores, cfg.split, heading))
        result = {
            "mIoU": scores["mIoU"],
            "per_class_iou": dict(zip(names, _plain(scores["per_class_iou"].tolist()))),
            "thresholds": dict(zip(names, thresholds)),
            "num_images": len(dataset),
            "split": cfg.split,
            "checkpoint": str(cfg.ckpt_path),
        }
        if tuning is not None:
            result["tuned"] = _write_tuned(checkpoint, tuned, names, *tuning)
        if cfg.json:
            written_whole(cfg.json, lambda: Path(cfg.json).write_text(json.dumps(result, indent=1)))
    distributed.leave()
    sys.exit(0)


def _write_tuned(checkpoint: dict, path: Path, names: list[str], thresholds: list[float], ious: list[float]) -> dict:
    """Prints the tuned thresholds with their IoU and writes the checkpoint with them to ``path``."""
    width = max(14, *(len(n) for n in names))
    rows = "\n".join(f"{n:<{width}}  {t:9.2f}  {100 * i:7.2f}" for n, t, i in zip(names, thresholds, ious))
    checkpoint["segkit_thresholds"] = thresholds
    save_atomic(checkpoint, path)
    valid = [i for i in ious if i == i]
    mean = sum(valid) / len(valid) if valid else float("nan")
    print(
        f"\nthresholds of highest IoU on this split (0.01 steps), written with the model to {path}\n"
        f"{'class':<{width}}  {'threshold':>9}  {'IoU':>7}\n{rows}\nmIoU at these thresholds: {100 * mean:.2f}"
    )
    return {"checkpoint": str(path), "thresholds": dict(zip(names, thresholds)), "mIoU": mean}


def _plain(values: list[float]) -> list[float | None]:
    return [None if v != v else v for v in values]
