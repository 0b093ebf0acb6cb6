"""Synthetic segmentation data sets in the Pascal VOC and Cityscapes layouts, deterministic from a seed.

VOC layout:

Objects (ellipses, rectangles, triangles) are filled with a pattern that *is* their class: horizontal
stripes, vertical stripes, a checkerboard or diagonal stripes, each in two random colours, on a noisy
background of random colour. Colour says nothing about the class, so a per-pixel colour classifier fails
(nearest class-mean RGB scores far below 0.5 mIoU) while a network that sees the neighbourhood of a pixel
learns the classes in minutes on a CPU. Object borders are marked 255 (ignored), as in VOC.
"""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from .cityscapes import CITYSCAPES_LABELS, NUM_LABEL_IDS
from .base import IGNORE_INDEX, write_label_png
from .voc import voc_palette

SYNTHETIC_CLASSES = ("background", "horizontal_stripes", "vertical_stripes", "checkerboard", "diagonal_stripes")
MARKER = "segkit_synthetic.json"


def _pattern(kind: int, h: int, w: int, period: int, rng: np.random.Generator) -> np.ndarray:
    """Binary (h, w) pattern of class ``kind`` (1..4) with the given period and a random phase."""
    y, x = np.mgrid[0:h, 0:w]
    y, x = y + rng.integers(period), x + rng.integers(period)
    half = period // 2
    if kind == 1:
        return (y // half) % 2
    if kind == 2:
        return (x // half) % 2
    if kind == 3:  # squares of a full period: finer ones blur into diagonal stripes at low scales
        return ((y // period) + (x // period)) % 2
    return ((x + y) // half) % 2


def _random_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    while True:
        a, b = rng.integers(0, 256, size=(2, 3))
        if np.abs(a - b).sum() >= 120:  # enough contrast for the pattern to be visible
            return a, b


def _shape_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    ry, rx = (rng.uniform(0.15, 0.35, size=2) * min(h, w)).astype(int)
    shape = rng.integers(3)
    if shape == 0:
        cv2.ellipse(mask, (cx, cy), (int(rx), int(ry)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif shape == 1:
        cv2.rectangle(mask, (cx - rx, cy - ry), (cx + rx, cy + ry), 1, -1)
    else:
        pts = np.stack([cx + rng.uniform(-1.4, 1.4, 3) * rx, cy + rng.uniform(-1.4, 1.4, 3) * ry], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask.astype(bool)


def render_sample(
    rng: np.random.Generator, size_range: tuple[int, int], num_classes: int = len(SYNTHETIC_CLASSES)
) -> tuple[np.ndarray, np.ndarray]:
    """One (image (H, W, 3) uint8, mask (H, W) uint8) pair; mask values 0..num_classes-1 and 255 on borders."""
    h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
    image = rng.integers(0, 256, size=3) + rng.normal(0, 18, size=(h, w, 3))
    label = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        region = _shape_mask(h, w, rng)
        core = cv2.erode(region.astype(np.uint8), np.ones((9, 9), np.uint8))
        if core.sum() < max(64, 0.3 * region.sum()):  # too small or too thin to show its pattern
            continue
        cls = int(rng.integers(1, num_classes))
        fg, bg = _random_colours(rng)
        pat = _pattern(cls, h, w, int(rng.integers(8, 15)), rng)[..., None]
        texture = np.where(pat == 1, fg, bg) + rng.normal(0, 8, size=(h, w, 3))
        image[region] = texture[region]
        label[region] = cls
    kernel = np.ones((3, 3), np.uint8)
    border = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
    label[border] = IGNORE_INDEX
    return np.clip(image, 0, 255).astype(np.uint8), label


def _prepare(root: Path, params: dict, folders: tuple[str, ...]) -> bool:
    """True when a set with these parameters is already there; otherwise clears segkit's own older set.

    Folders that segkit did not write (no marker file) are never touched.
    """
    marker = root / MARKER
    if marker.is_file():
        if json.loads(marker.read_text()).get("params") == params and all((root / f).is_dir() for f in folders):
            return True
        for f in folders:
            shutil.rmtree(root / f, ignore_errors=True)
        marker.unlink()
    elif any((root / f).exists() for f in folders):
        raise FileExistsError(
            f"{root} holds {', '.join(f for f in folders if (root / f).exists())} not written by segkit's synthetic "
            f"generator; point data.root at an empty or new folder"
        )
    return False


@contextmanager
def _generating(root: Path):
    """One generator at a time per folder: a second run started at the same moment waits, then finds the set
    written (POSIX file lock; elsewhere no lock)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(root / ".segkit_synthetic.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def make_synthetic_voc(root: str | Path, *args, **kwargs) -> Path:
    """:func:`_make_synthetic_voc` under the folder's generation lock."""
    with _generating(Path(root)):
        return _make_synthetic_voc(root, *args, **kwargs)


def _make_synthetic_voc(
    root: str | Path,
    num_train: int = 300,
    num_val: int = 60,
    size_range: tuple[int, int] = (96, 160),
    seed: int = 0,
) -> Path:
    """Writes (or reuses) the synthetic set under ``root/VOCdevkit/VOC2012``; returns that folder.

    A marker file records the parameters: an existing set with the same parameters is reused, a set written
    by segkit with other parameters is replaced, and a ``VOCdevkit`` that segkit did not write is never touched.
    """
    root = Path(root)
    params = {"num_train": num_train, "num_val": num_val, "size_range": list(size_range), "seed": seed,
              "classes": list(SYNTHETIC_CLASSES), "version": 2}
    voc_dir = root / "VOCdevkit" / "VOC2012"
    if _prepare(root, params, ("VOCdevkit",)):
        return voc_dir
    tmp = root / "VOCdevkit.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    out = tmp / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {"train": num_train, "val": num_val}
    for split, count in splits.items():
        names = []
        for i in range(count):
            name = f"synth_{split}_{i:05d}"
            image, mask = render_sample(rng, size_range)
            cv2.imwrite(str(out / "JPEGImages" / f"{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            write_label_png(out / "SegmentationClass" / f"{name}.png", mask, voc_palette())
            names.append(name)
        (out / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    tmp.rename(root / "VOCdevkit")
    (root / MARKER).write_text(json.dumps({"params": params}, indent=1))
    return voc_dir


# Official colours by label id; the ids whose colour is black get greys so that every id is visible.
_CS_COLOURS = np.array([c if any(c) else (20 * i + 10,) * 3 for _, i, _, c in CITYSCAPES_LABELS], np.float64)


def _render_city(rng: np.random.Generator, h: int, id_cycle: list[int]) -> np.ndarray:
    """A (h, 2h) label-id map: sky, buildings and road bands, then shapes with ids from ``id_cycle``."""
    w = 2 * h
    label = np.full((h, w), 11, np.uint8)  # building
    label[: int(h * rng.uniform(0.15, 0.35))] = 23  # sky
    label[int(h * rng.uniform(0.6, 0.75)):] = 7  # road
    for _ in range(12):
        label_id = id_cycle.pop() if id_cycle else int(rng.integers(NUM_LABEL_IDS))
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        x1, y1 = x0 + int(rng.integers(6, w // 4)), y0 + int(rng.integers(6, h // 3))
        if rng.random() < 0.5:
            cv2.rectangle(label, (x0, y0), (x1, y1), label_id, -1)
        else:
            cv2.ellipse(label, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0, 360, label_id, -1)
    return label


def make_synthetic_cityscapes(root: str | Path, *args, **kwargs) -> Path:
    """:func:`_make_synthetic_cityscapes` under the folder's generation lock."""
    with _generating(Path(root)):
        return _make_synthetic_cityscapes(root, *args, **kwargs)


def _make_synthetic_cityscapes(
    root: str | Path, num_train: int = 24, num_val: int = 8, height: int = 128, seed: int = 0
) -> Path:
    """Writes (or reuses) a synthetic set in the Cityscapes layout under ``root``; returns ``root``.

    Images are 2:1 (height x 2*height) RGB PNGs coloured by the official label colours plus noise; labels
    are ``*_gtFine_labelIds.png`` using all 34 label ids, the ignored ones included (every 34 consecutive
    shapes take each id once). ``segkit_synthetic.json`` records the raw label-id pixel counts per split.
    """
    root = Path(root)
    params = {"num_train": num_train, "num_val": num_val, "height": height, "seed": seed, "layout": "cityscapes",
              "version": 1}
    folders = ("leftImg8bit", "gtFine")
    if _prepare(root, params, folders):
        return root
    tmp = root / "cityscapes.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    counts: dict[str, list[int]] = {}
    id_cycle: list[int] = []
    for split, count, cities in (("train", num_train, ("aachen", "bochum")), ("val", num_val, ("frankfurt",))):
        hist = np.zeros(256, np.int64)
        for i in range(count):
            if len(id_cycle) < 12:
                id_cycle = [int(v) for v in rng.permutation(NUM_LABEL_IDS)] + id_cycle
            city = cities[i % len(cities)]
            stem = f"{city}_{i:06d}_{19 + i:06d}"
            label = _render_city(rng, height, id_cycle)
            image = _CS_COLOURS[label] + rng.normal(0, 12, size=(*label.shape, 3))
            for folder, name, array in (("leftImg8bit", f"{stem}_leftImg8bit.png", np.clip(image, 0, 255).astype(np.uint8)),
                                        ("gtFine", f"{stem}_gtFine_labelIds.png", label)):
                out = tmp / folder / split / city
                out.mkdir(parents=True, exist_ok=True)
                arr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
                cv2.imwrite(str(out / name), arr)
            hist += np.bincount(label.ravel(), minlength=256)
        counts[split] = hist[:NUM_LABEL_IDS].tolist()
    for folder in folders:
        (tmp / folder).rename(root / folder)
    tmp.rmdir()
    (root / MARKER).write_text(json.dumps({"params": params, "label_id_pixel_counts": counts}, indent=1))
    return root


def make_synthetic_folder(root: str | Path, *args, **kwargs) -> Path:
    """:func:`_make_synthetic_folder` under the folder's generation lock."""
    with _generating(Path(root)):
        return _make_synthetic_folder(root, *args, **kwargs)


def _make_synthetic_folder(root: str | Path, num_images: int = 240, size_range: tuple[int, int] = (96, 160),
                           seed: int = 0) -> Path:
    """Writes (or reuses) a two-class set in a plain folder layout, as a data set of one's own often comes:
    ``images/part_{a,b}/img_NNNN.jpg`` and ``masks/part_{a,b}/img_NNNN.png``, the masks 0 (background) and 255
    (object: any of the patterned shapes of the VOC-layout set, whatever its pattern), no validation folder.
    Returns ``root``."""
    root = Path(root)
    params = {"num_images": num_images, "size_range": list(size_range), "seed": seed, "layout": "folder",
              "version": 1}
    folders = ("images", "masks")
    if _prepare(root, params, folders):
        return root
    tmp = root / "folder.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        image, label = render_sample(rng, size_range)
        part = f"part_{'ab'[i % 2]}"
        for folder in folders:
            (tmp / folder / part).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp / "images" / part / f"img_{i:04d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(tmp / "masks" / part / f"img_{i:04d}.png"), np.where(label > 0, 255, 0).astype(np.uint8))
    for folder in folders:
        (tmp / folder).rename(root / folder)
    tmp.rmdir()
    (root / MARKER).write_text(json.dumps({"params": params}, indent=1))
    return root


def main(args: list[str]) -> None:
    """``segkit data synthetic [--root DIR]``: the folder-layout demo set (demo_folder.yaml)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="segkit data synthetic", description="Write the two-class demo set in a plain "
                            "folder layout: images/part_{a,b}/*.jpg and masks/part_{a,b}/*.png (0/255).")
    parser.add_argument("--root", default="data/synthetic_folder", help="the folder to write it in")
    parser.add_argument("--num_images", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    cfg = parser.parse_args(args)
    root = make_synthetic_folder(cfg.root, cfg.num_images, seed=cfg.seed)
    print(f"{cfg.num_images} images and their 0/255 masks in {root / 'images'} and {root / 'masks'}")
