"""``segkit eval`` of a model of overlapping labels (``mask_mode: multilabel``): per-class IoU at the checkpoint's
thresholds, and with ``--tune_thresholds FILE`` the thresholds of highest IoU on this split, written with the
model to a new checkpoint FILE that eval, predict, export and Segmenter then use; an exported file
(``--model_file``) is scored at the thresholds in its graph (:mod:`segkit.multilabel_eval`,
:mod:`segkit.thresholds`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import distributed
from ..evaluation import CheckpointPredictor, ExportedPredictor
from ..inference.memory import default_budget
from ..inference.predict import checkpoint_model
from ..io.disk import written_whole
from ..io.torch_files import read_checkpoint
from ..metrics import format_iou_table, multilabel_scores
from ..multilabel_eval import evaluate_multilabel
from ..thresholds import ThresholdHistograms, best_thresholds
from .model_file import exported_model
from .options import inference_settings, memory_budget
from .tuned_checkpoint import check_new, write_multilabel

ANALYSIS_OPTIONS = ("per_image", "worst", "trimap", "boundary_iou", "calibration", "output_dir")


def run(p, cfg, datamodule, device) -> None:
    """Scores ``cfg.ckpt_path`` (or the exported ``cfg.model_file``) on ``cfg.split`` (and tunes thresholds);
    exits."""
    unsupported = [f"--{o}" for o in ("predictions", "save_predictions", "confusion") if cfg[o]]
    unsupported += [f"--{o}" for o in ANALYSIS_OPTIONS if cfg[o]]
    unsupported += ["--wandb_project/--wandb_run_id"] if cfg.wandb_project or cfg.wandb_run_id else []
    if unsupported or (cfg.ckpt_path is None) == (cfg.model_file is None):
        p.error(
            f"{' '.join(unsupported) or 'one of --ckpt_path and --model_file'}: a multilabel model is scored from "
            "its --ckpt_path (with --json and --tune_thresholds) or its exported --model_file (with --json); the "
            "other outputs are for single-label masks"
        )
    tuned = check_new(p, cfg.tune_thresholds)
    if tuned is not None and cfg.model_file is not None:
        p.error("--tune_thresholds tunes a checkpoint's model: give its --ckpt_path")
    dataset = datamodule.split_dataset(cfg.split)
    if cfg.model_file is not None:
        exported = exported_model(p, cfg, datamodule)
        if not exported.multilabel:
            p.error(f"--model_file {cfg.model_file} is a single-label model; the config's data set is multilabel")
        predictor, thresholds = ExportedPredictor(exported), exported.thresholds or [0.5] * datamodule.num_classes
    else:
        checkpoint = read_checkpoint(cfg.ckpt_path)
        model = checkpoint_model(checkpoint, cfg.ckpt_path, datamodule.num_classes, cfg.output_stride).to(device)
        thresholds = model.thresholds
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
        }
        result |= {"model_file": str(cfg.model_file)} if cfg.model_file else {"checkpoint": str(cfg.ckpt_path)}
        if tuning is not None:
            result["tuned"] = write_multilabel(checkpoint, tuned, names, *tuning)
        if cfg.json:
            written_whole(cfg.json, lambda: Path(cfg.json).write_text(json.dumps(result, indent=1)))
    distributed.leave()
    sys.exit(0)


def _plain(values: list[float]) -> list[float | None]:
    return [None if v != v else v for v in values]
