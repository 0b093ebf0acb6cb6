"""`segkit eval`: score a checkpoint, a file of ``segkit export`` or a folder of prediction PNGs on a split, the way
the benchmarks do.

    segkit eval --config voc.yaml --ckpt_path best.ckpt --data.root /data/voc \\
        --output_stride 8 --scales 0.5 0.75 1.0 1.25 1.5 1.75 --flip --json results.json
    segkit eval --config voc.yaml --model_file deeplab-int8.onnx --data.root /data/voc
    segkit eval --config cityscapes.yaml --data.root /data/cityscapes --predictions preds/

How the split is scored is :mod:`segkit.evaluation`. An exported file (ONNX, INT8 ONNX, TorchScript) is scored
with the test-time settings baked into it, by the metric code that scores checkpoints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .analysis_options import add_analysis_options, analysis_lines, eval_analysis, write_analysis
from .options import (
    add_inference_options,
    add_memory_options,
    config_datamodule,
    inference_settings,
    memory_budget,
    model_parser,
    run_device,
    wants_help,
)


def parser(help_only: bool = False):
    p = model_parser(
        "segkit eval",
        "Score a checkpoint, an exported model file or prediction files on a split.",
        ckpt_required=False,
        help_only=help_only,
    )
    p.add_argument(
        "--model_file", type=str | None, default=None, help="score this file of segkit export (ONNX or TorchScript)"
    )
    p.add_argument(
        "--predictions", type=str | None, default=None, help="score this folder of prediction PNGs instead of a model"
    )
    p.add_argument("--split", default="val", help="split to score")
    add_inference_options(p)
    add_memory_options(p, max_pixels=False)
    p.add_argument("--json", type=str | None, default=None, help="write the scores and settings here")
    p.add_argument("--confusion", type=str | None, default=None, help="write <prefix>.npy and <prefix>.png")
    p.add_argument("--save_predictions", type=str | None, default=None, help="folder for prediction PNGs")
    p.add_argument(
        "--wandb_project", type=str | None, default=None, help="log the results to a new W&B run in this project"
    )
    p.add_argument(
        "--wandb_run_id",
        type=str | None,
        default=None,
        help="log the results to this existing W&B run (e.g. the training run)",
    )
    p.add_argument("--wandb_images", type=int, default=8, help="sample predictions logged to W&B")
    p.add_argument(
        "--tune_thresholds",
        type=str | None,
        default=None,
        help="sigmoid models (multilabel, or model.head: sigmoid): choose the thresholds of highest IoU on this "
        "split and write the checkpoint with them to this new file",
    )
    add_analysis_options(p)
    return p


def main(args: list[str]) -> None:
    p = parser(help_only=wants_help(args))
    cfg = p.parse_args(args)
    # imported once the options are read: --help answers without PyTorch
    from .. import distributed
    from ..evaluation import evaluate, score_predictions, scores_json
    from ..head import Head

    cfg.device = run_device(cfg)
    device = distributed.init_from_env(cfg.device)  # started by torchrun: join the process group
    datamodule = config_datamodule(p, cfg)
    if distributed.is_main():
        datamodule.prepare_data()
    distributed.barrier()
    tuned = check_sources(p, cfg, datamodule)
    files, void, predictor, tuning = datamodule.prediction_files, None, None, None
    analysis = eval_analysis(p, cfg, datamodule, device)
    dataset = datamodule.split_dataset(cfg.split)  # raw pixels: the model file or the predictor normalizes them
    if cfg.predictions is not None:
        head = Head("multiclass", datamodule.num_classes)  # files of class indices: counted as any one-label map
        metric = score_predictions(dataset, Path(cfg.predictions), datamodule.num_classes, files, analysis)
        counts, void = metric.compute(), metric.void
        settings = {"num_images": len(dataset), "split": cfg.split, "predictions": str(cfg.predictions)}
        heading = f"{cfg.split}: {len(dataset)} prediction files from {cfg.predictions}"
    else:
        if cfg.model_file is not None:
            predictor, settings, head = exported_source(p, cfg, datamodule)
        else:
            predictor, settings, head, tuning = checkpoint_source(p, cfg, datamodule, device, tuned)
        counts = evaluate(
            predictor,
            dataset,
            head=head,
            device=device,
            num_workers=datamodule.num_workers,
            save_predictions=Path(cfg.save_predictions) if cfg.save_predictions else None,
            files=files,
            palette=datamodule.palette,
            analysis=analysis if analysis.active else None,
            histograms=tuning.histograms if tuning is not None else None,
        )
        heading = model_heading(cfg, len(dataset), settings, head, datamodule.class_names)
        settings = {"num_images": len(dataset), "split": cfg.split, **settings}
        if head.thresholds is not None:
            names = datamodule.class_names[-len(head.thresholds) :]  # a binary head's: the foreground's
            settings["thresholds"] = dict(zip(names, head.thresholds))
    world = distributed.rank_and_world()[1]
    if world > 1:
        settings["processes"] = world
    found = analysis.compute(datamodule.class_names) if analysis.active else {}  # every process: sums
    if tuning is not None:
        tuning.compute()  # every process: sums
    if distributed.is_main():
        result = scores_json(head, counts, datamodule.class_names, settings, void) | found
        if tuning is not None:
            result["tuned"] = tuning.write(list(datamodule.class_names))
        outputs = write_analysis(cfg, analysis, result, head, counts, void, dataset, datamodule)
        report(head, counts, void, datamodule.class_names, result, heading, cfg)
        if tuning is not None:
            print(tuning.text)
        if cfg.wandb_project or cfg.wandb_run_id:
            log_wandb(cfg, datamodule, dataset, predictor, head, counts, void, settings, result, outputs)
    distributed.leave()
    sys.exit(0)


def check_sources(p, cfg, datamodule) -> Path | None:
    """One of --ckpt_path, --model_file and --predictions; ``--tune_thresholds`` (a new file) with a checkpoint;
    for a multi-label data set only what scores overlapping labels."""
    from ..evaluation.loop import UNSCORED_MULTILABEL

    sources = [o for o in ("ckpt_path", "model_file", "predictions") if cfg[o] is not None]
    if len(sources) != 1:
        p.error(
            "give one of --ckpt_path (score a checkpoint), --model_file (score an exported file) or --predictions "
            "(score prediction files)"
        )
    if datamodule.multilabel:
        unscored = [f"--{o}" for o in ("predictions", "save_predictions", "confusion") if cfg[o]]
        if unscored:
            p.error(f"{' '.join(unscored)}: {UNSCORED_MULTILABEL}")
    if cfg.tune_thresholds is None:
        return None
    if Path(cfg.tune_thresholds).exists():
        p.error(f"--tune_thresholds {cfg.tune_thresholds} exists: segkit writes a new checkpoint and replaces nothing")
    if cfg.ckpt_path is None:
        p.error("--tune_thresholds tunes a checkpoint's model: give its --ckpt_path")
    return Path(cfg.tune_thresholds)


def model_heading(cfg, num_images: int, settings: dict, head, class_names) -> str:
    thresholds = ""
    if head.mode == "multilabel":
        thresholds = ", multi-label, thresholds " + ", ".join(
            f"{n} {t:.2f}" for n, t in zip(class_names, head.thresholds)
        )
    elif head.mode == "binary":
        thresholds = f", foreground threshold {head.thresholds[0]:.4f}"
    return (
        f"{cfg.split}: {num_images} images, scales {settings['scales']}, flip {settings['flip']}, output "
        f"stride {settings['output_stride']}"
        + (f", padded to {settings['pad_to']}" if settings["pad_to"] else "")
        + thresholds
        + (f", {cfg.model_file}" if cfg.model_file else "")
    )


def log_wandb(cfg, datamodule, dataset, predictor, head, counts, void, settings: dict, result: dict, outputs) -> None:
    """The results (and sample predictions) to the W&B run of ``--wandb_project`` or ``--wandb_run_id``."""
    from ..wandb import eval_samples, log_eval

    files = None if cfg.predictions is None else (datamodule.prediction_files, Path(cfg.predictions))
    samples = eval_samples(dataset, cfg.wandb_images, predictor=predictor, files=files)
    log_eval(
        cfg.wandb_project,
        cfg.wandb_run_id,
        head=head,
        counts=counts,
        void=void,
        class_names=datamodule.class_names,
        settings=settings,
        result=result,
        samples=samples,
        outputs=outputs,
    )


def exported_source(p, cfg, datamodule):
    """The ``--model_file``'s predictor (an :class:`~segkit.evaluation.ExportedPredictor`), the settings baked
    into it and its head."""
    from ..evaluation import ExportedPredictor

    model = exported_model(p, cfg, datamodule)
    if (model.head.mode == "multilabel") != datamodule.multilabel:
        kinds = ("a single-label", "a multi-label")
        p.error(
            f"--model_file {cfg.model_file} is {kinds[model.head.mode == 'multilabel']} model; the config's data "
            f"set is {kinds[datamodule.multilabel][2:]}"
        )
    baked = model.settings
    settings = {k: baked[k] for k in ("scales", "flip", "output_stride", "pad_to")}
    source = {"model_file": str(cfg.model_file), "form": model.form, "quantization": model.meta["quantization"]}
    return ExportedPredictor(model), settings | source, model.head


def exported_model(p, cfg, datamodule):
    """The ``--model_file``, checked against the config's data set; test-time options are the file's own."""
    from ..inference.exported import ExportedModel, ModelFileError

    defaults = {"scales": [1.0], "flip": False, "window": None, "pad_to": None, "output_stride": None}
    changed = [f"--{k}" for k, v in defaults.items() if cfg[k] != v]
    if changed:
        p.error(f"{' '.join(changed)}: an exported file runs with the settings baked into it; export it with them")
    model = ExportedModel(cfg.model_file, cfg.device)
    names, ours = model.meta["class_names"], list(datamodule.class_names)
    if names != ours:
        raise ModelFileError(
            f"{cfg.model_file} predicts {len(names)} classes ({', '.join(names[:4])}...), the config's data set "
            f"has {len(ours)} ({', '.join(ours[:4])}...): use the config the model was trained with"
        )
    return model


def checkpoint_source(p, cfg, datamodule, device, tuned: Path | None):
    """The ``--ckpt_path``'s predictor (batch norm folded: the same function, faster, docs/benchmarks.md), its
    settings, its head and with ``tuned`` its threshold tuning (:class:`~segkit.evaluation.ThresholdTuning`)."""
    from ..evaluation import CheckpointPredictor, ThresholdTuning
    from ..head import Head
    from ..inference.memory import default_budget
    from ..inference.predict import checkpoint_model
    from ..io.torch_files import read_checkpoint

    checkpoint = read_checkpoint(cfg.ckpt_path)
    model = checkpoint_model(checkpoint, cfg.ckpt_path, datamodule.num_classes, cfg.output_stride).to(device)
    head = Head.of(model)
    tuning = None
    if tuned is not None:
        try:
            tuning = ThresholdTuning(checkpoint, head, tuned, device)
        except ValueError as error:
            p.error(f"--tune_thresholds: {error}")
    budget = memory_budget(p, cfg) or default_budget(device)
    # each image is normalized by the predictor, whole or window by window when tiled
    settings = inference_settings(p, cfg)
    predictor = CheckpointPredictor(model, settings, memory_budget=budget, transform=datamodule.eval_transform())
    settings = {"scales": list(cfg.scales), "flip": cfg.flip, "output_stride": model.output_stride}
    settings |= {"pad_to": cfg.pad_to, "window": cfg.window, "checkpoint": str(cfg.ckpt_path)}
    return predictor, settings, head, tuning


def report(head, counts, void, class_names, result: dict, heading: str, cfg) -> None:
    """The IoU table, fwIoU and what the analysis options measured on stdout; the JSON and the confusion
    matrix files when asked for."""
    from ..evaluation import head_scores, save_confusion
    from ..evaluation.metrics import format_iou_table
    from ..io.disk import written_whole

    print(format_iou_table(class_names, head_scores(head, counts, void), cfg.split, heading))
    print(f"{cfg.split}/fwIoU {100 * result['fwIoU']:>9.2f}")
    for line in analysis_lines(result, cfg.split):
        print(line)
    if cfg.json:
        Path(cfg.json).parent.mkdir(parents=True, exist_ok=True)
        written_whole(cfg.json, lambda: Path(cfg.json).write_text(json.dumps(result, indent=1)))
    if cfg.confusion:
        save_confusion(counts, Path(cfg.confusion))
