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
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from .base import IGNORE_INDEX, write_label_png
from .cityscapes import CITYSCAPES_LABELS, NUM_LABEL_IDS, CityscapesDataModule
from .palette import voc_palette
from .voc import VOCDataModule

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


def _write_set(root: Path, params: dict, folders: tuple[str, ...], write) -> None:
    """Writes a synthetic set once: under the folder's lock (:func:`_generating`), a set written with the same
    ``params`` is reused and segkit's own older one replaced (:func:`_prepare`). ``write(tmp, rng)`` fills a
    temporary folder with ``folders`` (``rng`` seeded with ``params["seed"]``), which are then moved into
    ``root`` whole; last comes the marker file, with ``params`` and what ``write`` returned."""
    with _generating(root):
        if _prepare(root, params, folders):
            return
        tmp = root / "synthetic.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        extra = write(tmp, np.random.default_rng(params["seed"]))
        for folder in folders:
            (tmp / folder).rename(root / folder)
        tmp.rmdir()
        (root / MARKER).write_text(json.dumps({"params": params, **extra}, indent=1))


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


def make_synthetic_voc(
    root: str | Path,
    num_train: int = 300,
    num_val: int = 60,
    size_range: tuple[int, int] = (96, 160),
    seed: int = 0,
) -> Path:
    """Writes (or reuses, :func:`_write_set`) the synthetic set under ``root/VOCdevkit/VOC2012``; returns that
    folder."""
    params = {
        "num_train": num_train,
        "num_val": num_val,
        "size_range": list(size_range),
        "seed": seed,
        "classes": list(SYNTHETIC_CLASSES),
        "version": 2,
    }

    def write(tmp: Path, rng: np.random.Generator) -> dict:
        out = tmp / "VOCdevkit" / "VOC2012"
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        for split, count in (("train", num_train), ("val", num_val)):
            names = []
            for i in range(count):
                name = f"synth_{split}_{i:05d}"
                image, mask = render_sample(rng, size_range)
                _write_jpeg(out / "JPEGImages" / f"{name}.jpg", image)
                write_label_png(out / "SegmentationClass" / f"{name}.png", mask, voc_palette())
                names.append(name)
            (out / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
        return {}

    _write_set(Path(root), params, ("VOCdevkit",), write)
    return Path(root) / "VOCdevkit" / "VOC2012"


# Official colours by label id; the ids whose colour is black get greys so that every id is visible.
_CS_COLOURS = np.array([c if any(c) else (20 * i + 10,) * 3 for _, i, _, c in CITYSCAPES_LABELS], np.float64)


def _render_city(rng: np.random.Generator, h: int, id_cycle: list[int]) -> np.ndarray:
    """A (h, 2h) label-id map: sky, buildings and road bands, then shapes with ids from ``id_cycle``."""
    w = 2 * h
    label = np.full((h, w), 11, np.uint8)  # building
    label[: int(h * rng.uniform(0.15, 0.35))] = 23  # sky
    label[int(h * rng.uniform(0.6, 0.75)) :] = 7  # road
    for _ in range(12):
        label_id = id_cycle.pop() if id_cycle else int(rng.integers(NUM_LABEL_IDS))
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        x1, y1 = x0 + int(rng.integers(6, w // 4)), y0 + int(rng.integers(6, h // 3))
        if rng.random() < 0.5:
            cv2.rectangle(label, (x0, y0), (x1, y1), label_id, -1)
        else:
            cv2.ellipse(
                label, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0, 360, label_id, -1
            )
    return label


def make_synthetic_cityscapes(
    root: str | Path, num_train: int = 24, num_val: int = 8, height: int = 128, seed: int = 0
) -> Path:
    """Writes (or reuses, :func:`_write_set`) a synthetic set in the Cityscapes layout under ``root``; returns ``root``.

    Images are 2:1 (height x 2*height) RGB PNGs coloured by the official label colours plus noise; labels
    are ``*_gtFine_labelIds.png`` using all 34 label ids, the ignored ones included (every 34 consecutive
    shapes take each id once). ``segkit_synthetic.json`` records the raw label-id pixel counts per split.
    """
    params = {
        "num_train": num_train,
        "num_val": num_val,
        "height": height,
        "seed": seed,
        "layout": "cityscapes",
        "version": 1,
    }

    def write(tmp: Path, rng: np.random.Generator) -> dict:
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
                image = np.clip(_CS_COLOURS[label] + rng.normal(0, 12, size=(*label.shape, 3)), 0, 255)
                for folder in ("leftImg8bit", "gtFine"):
                    (tmp / folder / split / city).mkdir(parents=True, exist_ok=True)
                image_file = tmp / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
                cv2.imwrite(str(image_file), cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2BGR))
                cv2.imwrite(str(tmp / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"), label)
                hist += np.bincount(label.ravel(), minlength=256)
            counts[split] = hist[:NUM_LABEL_IDS].tolist()
        return {"label_id_pixel_counts": counts}

    root = Path(root)
    _write_set(root, params, ("leftImg8bit", "gtFine"), write)
    return root


def make_synthetic_folder(
    root: str | Path, num_images: int = 240, size_range: tuple[int, int] = (96, 160), seed: int = 0
) -> Path:
    """Writes (or reuses, :func:`_write_set`) a two-class set in a plain folder layout, as a data set of one's own
    often comes: ``images/part_{a,b}/img_NNNN.jpg`` and ``masks/part_{a,b}/img_NNNN.png``, the masks 0
    (background) and 255 (object: any of the patterned shapes of the VOC-layout set, whatever its pattern), no
    validation folder.
    Returns ``root``."""
    params = {"num_images": num_images, "size_range": list(size_range), "seed": seed, "layout": "folder", "version": 1}

    def write(tmp: Path, rng: np.random.Generator) -> dict:
        for i in range(num_images):
            image, label = render_sample(rng, size_range)
            part = f"part_{'ab'[i % 2]}"
            for folder in ("images", "masks"):
                (tmp / folder / part).mkdir(parents=True, exist_ok=True)
            _write_jpeg(tmp / "images" / part / f"img_{i:04d}.jpg", image)
            cv2.imwrite(str(tmp / "masks" / part / f"img_{i:04d}.png"), np.where(label > 0, 255, 0).astype(np.uint8))
        return {}

    root = Path(root)
    _write_set(root, params, ("images", "masks"), write)
    return root


MULTIBAND_CLASSES = ("soil", "water", "vegetation")
# mean reflectance of each class in the red, green, blue and near-infrared bands, in 12-bit sensor counts:
# soil and vegetation look alike in red, green and blue and differ in the near-infrared alone
_BAND_SIGNATURES = np.array([[1800, 1500, 1200, 2000], [400, 600, 900, 200], [1800, 1500, 1200, 3600]], np.float64)


def make_synthetic_multiband(
    root: str | Path, num_images: int = 160, size_range: tuple[int, int] = (96, 128), seed: int = 0
) -> Path:
    """Writes (or reuses) a 4-band 16-bit set as aerial imagery comes: ``images/tile_NNNN.tif`` (red, green,
    blue, near-infrared; planar GeoTIFF-style TIFFs of 12-bit counts in uint16) and ``masks/tile_NNNN.png``
    (class indices 0-2: soil, water, vegetation), no validation folder.

    Vegetation has the red, green and blue of soil and differs only in the near-infrared band, so a model
    that reads RGB alone cannot find it, and one that reads the four bands can. Each tile has a random gain
    (0.8-1.2, lighting) and per-pixel noise. Returns ``root``."""
    import tifffile

    params = {
        "num_images": num_images,
        "size_range": list(size_range),
        "seed": seed,
        "layout": "multiband",
        "version": 1,
    }

    def write(tmp: Path, rng: np.random.Generator) -> dict:
        for folder in ("images", "masks"):
            (tmp / folder).mkdir(parents=True)
        for i in range(num_images):
            h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
            label = np.zeros((h, w), np.uint8)
            for _ in range(int(rng.integers(2, 5))):
                label[_shape_mask(h, w, rng)] = rng.integers(1, 3)
            image = _BAND_SIGNATURES[label] * rng.uniform(0.8, 1.2) + rng.normal(0, 150, (h, w, 4))
            image = np.clip(image, 0, 4095).astype(np.uint16).transpose(2, 0, 1)  # (bands, H, W): planar
            tifffile.imwrite(
                tmp / "images" / f"tile_{i:04d}.tif", image, photometric="minisblack", planarconfig="separate"
            )
            write_label_png(tmp / "masks" / f"tile_{i:04d}.png", label)
        return {}

    root = Path(root)
    _write_set(root, params, ("images", "masks"), write)
    return root


def geotiff_tags(x0: float, y0: float, pixel: float, epsg: int = 32633, nodata: int | None = 0) -> list[tuple]:
    """tifffile ``extratags`` that georeference an image: its top-left corner at (``x0``, ``y0``) metres of the
    projected CRS ``epsg`` (UTM zone 33N by default), square pixels of ``pixel`` metres, and GDAL's nodata value."""
    keys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg)  # projected, pixel is area, the CRS
    tags = [
        (33550, "d", 3, (pixel, pixel, 0.0), True),  # ModelPixelScale
        (33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), True),  # ModelTiepoint: pixel (0, 0) at (x0, y0)
        (34735, "H", len(keys), keys, True),  # GeoKeyDirectory
    ]
    return tags + ([(42113, "s", 0, str(nodata), True)] if nodata is not None else [])  # GDAL_NODATA


def make_synthetic_geo(
    root: str | Path, num_images: int = 160, size_range: tuple[int, int] = (96, 128), seed: int = 0
) -> Path:
    """Writes (or reuses) the multi-band set of :func:`make_synthetic_multiband` as georeferenced scenes come:
        ``images/tile_NNNN.tif`` GeoTIFFs (UTM zone 33N, 10 m pixels, tiles side by side along a row of the grid,
        GDAL_NODATA 0) of which every third has a nodata border (0 in every band) of 8-24 columns on its left, the
        masks ``masks/tile_NNNN.png`` (class indices 0-2: soil, water, vegetation; labelled under the border too, as
        masks cut from a map are), and two scenes of 640 x 768 to predict, ``scenes/scene_N.tif`` (a nodata border of 48
    columns), with their masks ``scene_masks/scene_N.png``. Returns ``root``."""
    import tifffile

    params = {"num_images": num_images, "size_range": list(size_range), "seed": seed, "layout": "geo", "version": 2}

    def scene(rng: np.random.Generator, h: int, w: int, shapes: int) -> tuple[np.ndarray, np.ndarray]:
        label = np.zeros((h, w), np.uint8)
        for _ in range(shapes):
            label[_shape_mask(h, w, rng)] = rng.integers(1, 3)
        image = _BAND_SIGNATURES[label] * rng.uniform(0.8, 1.2) + rng.normal(0, 150, (h, w, 4))
        return np.clip(image, 1, 4095).astype(np.uint16), label  # 0 is nodata: no measured pixel holds it

    def write_geotiff(path: Path, image: np.ndarray, x0: float) -> None:
        planar = image.transpose(2, 0, 1)  # (bands, H, W)
        extratags = geotiff_tags(x0, 4_500_000.0, 10.0)
        tifffile.imwrite(path, planar, photometric="minisblack", planarconfig="separate", extratags=extratags)

    def write(tmp: Path, rng: np.random.Generator) -> dict:
        for folder in ("images", "masks", "scenes", "scene_masks"):
            (tmp / folder).mkdir(parents=True)
        x0 = 500_000.0
        for i in range(num_images):
            h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
            image, label = scene(rng, h, w, int(rng.integers(2, 5)))
            if i % 3 == 0:
                image[:, : int(rng.integers(8, 25))] = 0
            write_geotiff(tmp / "images" / f"tile_{i:04d}.tif", image, x0)
            write_label_png(tmp / "masks" / f"tile_{i:04d}.png", label)
            x0 += 10.0 * w
        for n in range(2):  # 5 x 6 blocks of 128 px, each drawn as a tile is
            blocks = [[scene(rng, 128, 128, int(rng.integers(2, 5))) for _ in range(6)] for _ in range(5)]
            image = np.concatenate([np.concatenate([b[0] for b in row], 1) for row in blocks], 0)
            label = np.concatenate([np.concatenate([b[1] for b in row], 1) for row in blocks], 0)
            image[:, :48] = 0
            write_geotiff(tmp / "scenes" / f"scene_{n}.tif", image, x0)
            write_label_png(tmp / "scene_masks" / f"scene_{n}.png", label)
            x0 += 10.0 * 768
        return {}

    root = Path(root)
    _write_set(root, params, ("images", "masks", "scenes", "scene_masks"), write)
    return root


MULTILABEL_CLASSES = ("building", "road", "flooded")


def make_synthetic_multilabel(
    root: str | Path, num_images: int = 200, size_range: tuple[int, int] = (96, 128), seed: int = 0
) -> Path:
    """Writes (or reuses) a set of overlapping labels as ``mask_mode: multilabel`` reads them:
    ``images/img_NNNN.jpg`` and one folder of 0/255 masks per class, ``masks/<class>/img_NNNN.png``.

    Buildings are checkerboard rectangles, roads striped bands, and flood water a bluish rippled region laid
    over both: a flooded road pixel is "road" and "flooded" at once, and its stripes show through the water.
    Returns ``root``."""
    params = {"num_images": num_images, "size_range": list(size_range), "seed": seed, "layout": "multilabel"}

    def write(tmp: Path, rng: np.random.Generator) -> dict:
        (tmp / "images").mkdir(parents=True)
        for name in MULTILABEL_CLASSES:
            (tmp / "masks" / name).mkdir(parents=True)
        for i in range(num_images):
            h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
            image = rng.integers(60, 200, size=3) + rng.normal(0, 18, size=(h, w, 3))
            masks = np.zeros((3, h, w), bool)
            for _ in range(int(rng.integers(1, 3))):  # buildings: checkerboard rectangles
                y, x = int(rng.integers(0, h - 24)), int(rng.integers(0, w - 24))
                masks[0, y : y + int(rng.integers(16, 40)), x : x + int(rng.integers(16, 40))] = True
            pattern = _pattern(3, h, w, 8, rng)[..., None]
            image = np.where(masks[0][..., None], np.where(pattern == 1, 230.0, 40.0), image)
            width = int(rng.integers(10, 18))  # a road: a horizontal or vertical striped band
            at = int(rng.integers(0, (h if rng.integers(2) else w) - width))
            if rng.integers(2):
                masks[1, at : at + width] = True
                stripes = _pattern(2, h, w, 10, rng)[..., None]
            else:
                masks[1][:, at : at + width] = True
                stripes = _pattern(1, h, w, 10, rng)[..., None]
            road = np.where(stripes == 1, 200.0, 90.0) + np.zeros(3)
            image = np.where(masks[1][..., None] & ~masks[0][..., None], road, image)
            masks[1] &= ~masks[0]
            if rng.uniform() < 0.8:  # flood water over part of the scene
                masks[2] = _shape_mask(h, w, rng) | _shape_mask(h, w, rng)
                ripple = 25 * np.sin(np.mgrid[0:h, 0:w][0] / 2.0 + rng.uniform(0, 6))[..., None]
                water = 0.5 * image + 0.5 * np.array([30.0, 90.0, 200.0]) + ripple
                image = np.where(masks[2][..., None], water, image)
            _write_jpeg(tmp / "images" / f"img_{i:04d}.jpg", np.clip(image, 0, 255).astype(np.uint8))
            for name, mask in zip(MULTILABEL_CLASSES, masks):
                cv2.imwrite(str(tmp / "masks" / name / f"img_{i:04d}.png"), mask.astype(np.uint8) * 255)
        return {}

    root = Path(root)
    _write_set(root, params, ("images", "masks"), write)
    return root


class SyntheticVOCDataModule(VOCDataModule):
    """The synthetic pattern data set (see :mod:`segkit.data.synthetic`), written under ``root`` on first use.

    Args:
        num_train: training images.
        num_val: validation images.
        size_range: min and max image side in pixels.
        seed: generator seed; the same seed writes the same files.
        **kwargs: the VOCDataModule arguments.
    """

    class_names = SYNTHETIC_CLASSES

    def __init__(
        self,
        root: str = "data/synthetic_voc",
        num_train: int = 300,
        num_val: int = 60,
        size_range: tuple[int, int] = (96, 160),
        seed: int = 0,
        batch_size: int = 8,
        crop_size: int = 96,
        val_batch_size: int = 8,
        num_workers: int = min(2, os.cpu_count() or 1),
        **kwargs,
    ) -> None:
        super().__init__(
            root=root,
            augmented=False,
            batch_size=batch_size,
            crop_size=crop_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            **kwargs,
        )
        self.num_train, self.num_val = num_train, num_val
        self.size_range = tuple(size_range)
        self.seed = seed

    def prepare_data(self) -> None:
        make_synthetic_voc(self.root, self.num_train, self.num_val, self.size_range, self.seed)


class SyntheticCityscapesDataModule(CityscapesDataModule):
    """The synthetic Cityscapes-layout set (:func:`segkit.data.synthetic.make_synthetic_cityscapes`),
    written under ``root`` on first use.

    Args:
        num_train: training images.
        num_val: validation images.
        height: image height; images are 2:1 as Cityscapes.
        seed: generator seed; the same seed writes the same files.
        **kwargs: the CityscapesDataModule arguments.
    """

    def __init__(
        self,
        root: str = "data/synthetic_cityscapes",
        num_train: int = 24,
        num_val: int = 8,
        height: int = 128,
        seed: int = 0,
        batch_size: int = 4,
        crop_size: int = 128,
        val_batch_size: int = 2,
        num_workers: int = min(2, os.cpu_count() or 1),
        **kwargs,
    ) -> None:
        super().__init__(
            root=root,
            coarse=False,
            batch_size=batch_size,
            crop_size=crop_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            **kwargs,
        )
        self.num_train = num_train
        self.num_val = num_val
        self.height = height
        self.seed = seed

    def prepare_data(self) -> None:
        make_synthetic_cityscapes(self.root, self.num_train, self.num_val, self.height, self.seed)
