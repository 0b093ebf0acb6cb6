"""The pictures of ``segkit eval``: confusion matrix, per-class IoU, trimap curve, reliability diagram, and one
panel per image (image | ground truth | prediction | errors). Matplotlib figures drawn without pyplot (no
global state, no display), saved as PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ...data.base import IGNORE_INDEX
from ...data.visualize import colorize, multilabel_overlay
from ...io.disk import written_whole

# the error map's colours: right, wrong, and pixels without ground truth (void)
ERROR_COLOURS = {"correct": (46, 160, 67), "wrong": (220, 38, 38), "ignored (void)": (200, 200, 200)}


def save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written_whole(path, lambda: fig.savefig(path, dpi=110, bbox_inches="tight"))
    return path


def confusion_figure(confmat: np.ndarray, class_names) -> Figure:
    """Rows (ground truth) normalized to sum to 1: the fraction of each class's pixels predicted as each class."""
    cm = np.asarray(confmat, np.float64)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(class_names)
    side = min(4 + 0.32 * k, 30)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    image = ax.imshow(rows, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    ax.set_title("Confusion matrix (each row: where that class's pixels went)")
    if k <= 25:
        for t, p in zip(*np.nonzero(rows >= 0.01)):
            ax.text(
                p,
                t,
                f"{100 * rows[t, p]:.0f}",
                ha="center",
                va="center",
                fontsize=7 if k <= 12 else 5,
                color="black" if rows[t, p] > 0.6 else "white",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row's pixels")
    return fig


def iou_figure(per_class_iou, class_names, miou: float) -> Figure:
    """Horizontal bars of per-class IoU (%), the mIoU as a line; classes without pixels marked as absent."""
    iou = np.array([math.nan if v is None else v for v in per_class_iou], np.float64) * 100
    k = len(class_names)
    fig = Figure(figsize=(7, max(3, 0.24 * k + 1)))
    ax = fig.add_subplot()
    y = np.arange(k)
    ax.barh(y, np.nan_to_num(iou), color="#3b7dd8")
    for i, v in enumerate(iou):
        ax.text((0 if math.isnan(v) else v) + 1, i, "absent" if math.isnan(v) else f"{v:.1f}", va="center", fontsize=7)
    ax.axvline(100 * miou, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y, class_names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel("IoU (%)")
    ax.set_title(f"Per-class IoU (dashed: mIoU {100 * miou:.2f})")
    return fig


def trimap_figure(trimap: dict, miou: float) -> Figure:
    """mIoU within the band against the band's width (the DeepLabV3+ paper's Fig. 5), the whole image's mIoU as
    a line."""
    widths = trimap["widths"]
    values = [100 * v if v is not None else math.nan for v in (trimap["mIoU"][str(w)] for w in widths)]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(widths, values, marker="o", color="#d8573b", label="within the band")
    for w, v in zip(widths, values):
        ax.annotate(f"{v:.1f}", (w, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.axhline(100 * miou, color="black", linestyle="--", linewidth=1, label=f"whole image {100 * miou:.2f}")
    ax.set_xlabel("trimap width (pixels)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"Trimap mIoU: band around the {trimap['band_description']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def reliability_figure(calibration: dict) -> Figure:
    """Accuracy against confidence per bin (perfect calibration on the diagonal), and the share of pixels in each
    bin below."""
    r = calibration["reliability"]
    m = calibration["bins"]
    centres = (np.arange(m) + 0.5) / m
    accuracy = np.array([math.nan if a is None else a for a in r["accuracy"]])
    confidence = np.array([math.nan if c is None else c for c in r["confidence"]])
    share = np.asarray(r["count"], np.float64) / max(sum(r["count"]), 1)
    fig = Figure(figsize=(5.5, 6.5))
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.bar(centres, np.nan_to_num(accuracy), width=1 / m, edgecolor="black", color="#3b7dd8", label="accuracy")
    top.bar(
        centres,
        np.nan_to_num(confidence - accuracy),
        bottom=np.nan_to_num(accuracy),
        width=1 / m,
        color="#d8573b",
        alpha=0.45,
        edgecolor="#d8573b",
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"Reliability: ECE {100 * calibration['ECE']:.2f}%, NLL {calibration['NLL']:.3f}")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, share, width=1 / m, edgecolor="black", color="gray")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (top class probability)")
    bottom.set_ylabel("share of pixels")
    bottom.set_xlim(0, 1)
    return fig


def error_map(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: correct, wrong and ignored pixels in :data:`ERROR_COLOURS`. A multi-label head's (K, H, W)
    pixel is wrong where one of its labelled classes is, ignored where none is labelled."""
    correct, wrong, ignored = (np.array(c, np.uint8) for c in ERROR_COLOURS.values())
    labelled = truth != IGNORE_INDEX
    if truth.ndim == 3:
        right = ((pred.astype(np.uint8) == truth) | ~labelled).all(0)
        labelled = labelled.any(0)
    else:
        right = pred == truth
    out = np.where(right[..., None], correct, wrong)
    return np.where(~labelled[..., None], ignored, out).astype(np.uint8)


def image_panel(image, truth, pred, palette, class_names, title: str) -> Figure:
    """image | ground truth | prediction | errors, side by side, with the legend of the classes present.
    ``truth`` and ``pred``: (H, W) class indices, or a multi-label head's (K, H, W) targets (0, 1, 255) and
    decisions, drawn as the image blended with the mean colour of the classes present at each pixel."""
    palette = colorize(np.arange(256)[None], palette)[0]  # (256, 3), from a name too
    h, w = truth.shape[-2:]
    if truth.ndim == 3:
        pictures = tuple(multilabel_overlay(image, m, palette) for m in (truth == 1, pred.astype(bool)))
        present = [k for k in range(len(truth)) if (truth[k] == 1).any() or pred[k].any()]
    else:
        pictures = (colorize(truth, palette), colorize(pred, palette))
        present = sorted(set(np.unique(truth).tolist()) | set(np.unique(pred).tolist()))
    fig = Figure(figsize=(4 * 3.2, 3.2 * h / w + 0.8))
    axes = fig.subplots(1, 4)
    tiles = (image, *pictures, error_map(truth, pred))
    for ax, tile, name in zip(axes, tiles, ("image", "ground truth", "prediction", "errors")):
        ax.imshow(tile, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    handles = [Patch(color=palette[c] / 255, label=class_names[c]) for c in present if c < len(class_names)]
    handles += [Patch(color=np.array(c) / 255, label=n) for n, c in ERROR_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(bottom=0.1, top=0.9, wspace=0.03)
    return fig
