"""``segkit eval``'s analysis options: where a model fails (docs/analysis.md). Their parser arguments, the
:class:`~segkit.evaluation.analysis.EvalAnalysis` they ask for (with one-line errors), and the files and lines
they give."""

from __future__ import annotations

from pathlib import Path


def add_analysis_options(p) -> None:
    """Where the model fails (docs/evaluation.md, "Where a model fails")."""
    from jsonargparse import ActionYesNo

    p.add_argument(
        "--output_dir",
        type=str | None,
        default=None,
        help="write the plots (confusion matrix, per-class IoU, trimap, reliability) and the --worst panels here",
    )
    p.add_argument("--per_image", type=str | None, default=None, help="write one CSV row of scores per image here")
    p.add_argument("--worst", type=int, default=0, help="save panels of the K images with the lowest mIoU")
    p.add_argument(
        "--trimap", type=int, nargs="+", default=None, help="mIoU within bands of these widths (pixels), e.g. 2 5 10"
    )
    p.add_argument(
        "--trimap_band",
        type=str | None,
        default=None,
        help="void (around the ground truth's void outlines) or boundaries (around class boundaries); "
        "default: void for data sets with void outlines (VOC), else boundaries",
    )
    p.add_argument("--boundary_iou", action=ActionYesNo, default=False, help="Boundary IoU per class and mean")
    p.add_argument("--boundary_ratio", type=float, default=0.02, help="Boundary IoU width: this x the image diagonal")
    p.add_argument("--calibration", action=ActionYesNo, default=False, help="expected calibration error, NLL")
    p.add_argument("--calibration_bins", type=int, default=15, help="equal-width confidence bins of the ECE")


def eval_analysis(p, cfg, datamodule, device):
    """The :class:`~segkit.evaluation.analysis.EvalAnalysis` that the options ask for; their errors in one line."""
    from ..evaluation.analysis import EvalAnalysis
    from ..evaluation.analysis.boundaries import BANDS

    if cfg.worst < 0:
        p.error(f"--worst must be 0 or more, got {cfg.worst}")
    if cfg.worst and not cfg.output_dir:
        p.error("--worst needs --output_dir, the folder for the panels of the worst images")
    if cfg.calibration and cfg.predictions is not None:
        p.error("--calibration needs class probabilities: give --ckpt_path or --model_file, not --predictions")
    band = cfg.trimap_band or ("void" if datamodule.void_outlines else "boundaries")
    if band not in BANDS:
        p.error(f"--trimap_band must be one of {', '.join(BANDS)}, got {band!r}")
    if cfg.trimap is not None and any(w < 1 for w in cfg.trimap):
        p.error(f"--trimap widths must be positive pixel counts, got {' '.join(map(str, cfg.trimap))}")
    if cfg.boundary_iou and not 0 < cfg.boundary_ratio < 1:
        p.error(f"--boundary_ratio must be in (0, 1), got {cfg.boundary_ratio}")
    if cfg.calibration and cfg.calibration_bins < 1:
        p.error(f"--calibration_bins must be at least 1, got {cfg.calibration_bins}")
    if cfg.output_dir and Path(cfg.output_dir).is_dir() and any(Path(cfg.output_dir).iterdir()):
        p.error(f"--output_dir {cfg.output_dir} is not empty: choose a new folder (nothing in it is replaced)")
    return EvalAnalysis(
        datamodule.num_classes,
        multilabel=datamodule.multilabel,
        per_image=cfg.per_image is not None,
        worst=cfg.worst,
        trimap_widths=cfg.trimap or (),
        trimap_band=band,
        boundary_ratio=cfg.boundary_ratio if cfg.boundary_iou else None,
        calibration_bins=cfg.calibration_bins if cfg.calibration else None,
        device=device,
        sync=cfg.predictions is None,
    )


def write_analysis(cfg, analysis, result: dict, head, counts, void, dataset, datamodule) -> dict:
    """The per-image CSV, the plots and the worst panels that the options ask for; their paths go into
    ``result`` (the JSON). ``counts``: ``head``'s counts. Returns {plot name: file} and the worst images' rows,
    for W&B."""
    from ..evaluation.analysis.report import write_plots, write_worst
    from ..evaluation.metrics import head_scores
    from ..io.disk import written_whole

    outputs = {}
    if cfg.per_image:
        csv_file = Path(cfg.per_image)
        written_whole(csv_file, lambda: analysis.per_image.write_csv(csv_file, datamodule.class_names))
        result["per_image_csv"] = str(cfg.per_image)
    if cfg.output_dir:
        folder = Path(cfg.output_dir)
        confmat = None if head.mode == "multilabel" else counts
        plots = write_plots(folder, confmat, head_scores(head, counts, void), datamodule.class_names, result)
        result["plots"] = {name: str(path) for name, path in plots.items()}
        outputs["plots"] = plots
    if cfg.worst:
        worst = write_worst(
            Path(cfg.output_dir), analysis.per_image, dataset, datamodule.palette, datamodule.class_names
        )
        result["worst"] = outputs["worst"] = worst
    return outputs


def analysis_lines(result: dict, split: str) -> list[str]:
    """One line per analysis measurement (percentages; "-" where nothing was there to measure)."""

    def pct(value) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    lines = []
    if "trimap" in result:
        t = result["trimap"]
        widths = ", ".join(f"{w} px {pct(t['mIoU'][str(w)])}" for w in t["widths"])
        lines.append(f"{split}/trimap mIoU (band around the {t['band_description']}): {widths}")
    if "boundary_iou" in result:
        b = result["boundary_iou"]
        lines.append(f"{split}/boundary IoU (dilation {b['dilation_ratio']} x diagonal): mean {pct(b['mean'])}")
    if "calibration" in result:
        c = result["calibration"]
        lines.append(f"{split}/calibration: ECE {pct(c['ECE'])}% ({c['bins']} bins), NLL {c['NLL']:.4f}")
    if "per_image_csv" in result:
        lines.append(f"per-image scores: {result['per_image_csv']}")
    for row in result.get("worst", []):
        lines.append(f"worst #{row['rank']}: {row['image']} mIoU {pct(row['mIoU'])} -> {row['panel']}")
    if "plots" in result:
        lines.append(f"plots: {', '.join(result['plots'].values())}")
    return lines
