"""What ``segkit eval`` writes for a reader: the per-image CSV, the plots and the worst images' panels."""

from __future__ import annotations

import re
from pathlib import Path

from . import plots
from .per_image import PerImageScores


def write_plots(folder: Path, confmat, scores: dict, class_names, results: dict) -> dict[str, Path]:
    """``confusion_matrix.png`` (not for a multi-label head: ``confmat`` None, no confusion between its classes is
    defined), ``per_class_iou.png``, and ``trimap.png`` and ``reliability.png`` when those were measured;
    returns {plot name: file}."""
    written = {}
    if confmat is not None:
        figure = plots.confusion_figure(confmat, class_names)
        written["confusion_matrix"] = plots.save(figure, folder / "confusion_matrix.png")
    figure = plots.iou_figure(scores["per_class_iou"].tolist(), class_names, scores["mIoU"])
    written["per_class_iou"] = plots.save(figure, folder / "per_class_iou.png")
    if "trimap" in results:
        written["trimap"] = plots.save(plots.trimap_figure(results["trimap"], scores["mIoU"]), folder / "trimap.png")
    if "calibration" in results:
        figure = plots.reliability_figure(results["calibration"])
        written["reliability"] = plots.save(figure, folder / "reliability.png")
    return written


def write_worst(folder: Path, per_image: PerImageScores, dataset, palette, class_names) -> list[dict]:
    """One panel per worst image, ``worst/<rank>_<name>.png`` (worst first); returns their rows for the JSON."""
    rows = []
    for rank, (row, pred) in enumerate(per_image.worst(), 1):
        image, truth = dataset.load(row.index)
        if per_image.multilabel:
            truth = truth.transpose(2, 0, 1)  # (H, W, K) masks as the (K, H, W) decisions
        if getattr(dataset, "display", None) is not None:
            image = dataset.display(image)  # the RGB picture of other bands
        title = f"#{rank} {row.name}: mIoU {100 * row.miou:.1f}%, pixel accuracy {100 * row.pixel_accuracy:.1f}%"
        path = folder / "worst" / f"{rank:02d}_{safe_name(row.name)}.png"
        plots.save(plots.image_panel(image, truth, pred, palette, class_names, title), path)
        rows.append(
            {
                "rank": rank,
                "image": row.name,
                "mIoU": row.miou,
                "pixel_accuracy": row.pixel_accuracy,
                "panel": str(path),
            }
        )
    return rows


def safe_name(name: str) -> str:
    """A sample name (``sub/folder/name`` for nested folder data sets) as one file name."""
    return re.sub(r"[^\w.-]+", "_", name)
