"""Data loading of 4-band 16-bit images against the RGB pipeline: images per second of one DataLoader worker.

    python tools/benchmark_bands.py --json bands.json        # 40 images of 512 x 512, crop 512, 3 rounds
    python tools/benchmark_bands.py --quick                  # 6 images of 128 x 128 (tests)

The same scenes (smooth noise and shapes, 12-bit counts) are written as RGB JPEG (quality 95, the VOC-style
pipeline), RGB PNG, and 4-band (red, green, blue, near-infrared) 16-bit TIFFs, band-planar as GeoTIFFs usually
are, uncompressed and zlib-compressed (deflate; LZW needs the imagecodecs package), each with a class-index
PNG mask. Each set is read through :class:`segkit.data.FolderDataModule`'s training dataset in this process
with one thread, as one DataLoader worker reads: decoding alone (``dataset.load``: image and mask, checked)
and decoding + the training pipeline (random scale 0.5-2.0, pad, crop, flip, normalize, to tensors). The sets
alternate for ``--reps`` rounds; reported: the median images per second and each set's ratio to RGB JPEG.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tifffile  # noqa: E402
import torch  # noqa: E402

from segkit.data import FolderDataModule  # noqa: E402
from segkit.data.base import write_label_png  # noqa: E402

SETS = ("rgb_jpeg", "rgb_png", "bands_tiff", "bands_tiff_zlib")


def write_sets(root: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for name in SETS:
        (root / name / "images").mkdir(parents=True)
        (root / name / "masks").mkdir(parents=True)
    for i in range(count):
        coarse = rng.uniform(200, 3800, (size // 16, size // 16, 4))
        bands = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        label = np.zeros((size, size), np.uint8)
        for k in range(1, 4):
            centre = tuple(int(c) for c in rng.integers(0, size, 2))
            cv2.circle(label, centre, int(rng.integers(size // 10, size // 4)), k, -1)
            bands[label == k] *= 0.5 + 0.3 * k
        bands = np.clip(bands + rng.normal(0, 40, bands.shape), 0, 4095).astype(np.uint16)
        rgb = (bands[..., :3] >> 4).astype(np.uint8)  # 12-bit counts to 8 bits
        stem = f"img_{i:04d}"
        cv2.imwrite(str(root / "rgb_jpeg/images" / f"{stem}.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / "rgb_png/images" / f"{stem}.png"), rgb[..., ::-1])
        planar = bands.transpose(2, 0, 1)
        for name, compression in (("bands_tiff", None), ("bands_tiff_zlib", "zlib")):
            tifffile.imwrite(
                root / name / "images" / f"{stem}.tif",
                planar,
                photometric="minisblack",
                planarconfig="separate",
                compression=compression,
            )
        for name in SETS:
            write_label_png(root / name / "masks" / f"{stem}.png", label)


def dataset(root: Path, name: str, crop: int):
    bands = name.startswith("bands")
    dm = FolderDataModule(
        str(root / name),
        ["background", "a", "b", "c"],
        "images",
        "masks",
        val_fraction=0.1,
        batch_size=1,
        crop_size=crop,
        num_workers=0,
        in_channels=4 if bands else None,
        mean=[0.03, 0.03, 0.03, 0.03] if bands else None,
        std=[0.015, 0.015, 0.015, 0.015] if bands else None,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm.train_set


def rate(fn, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 images of 128 x 128, 1 round (tests)")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    count, size, reps = (6, 128, 1) if args.quick else (args.images, args.size, args.reps)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_sets(root, count, size)
        sets = {name: dataset(root, name, size) for name in SETS}
        sizes = {name: sum(f.stat().st_size for f in (root / name / "images").iterdir()) for name in SETS}
        decode = {name: [] for name in SETS}
        pipeline = {name: [] for name in SETS}
        for _ in range(reps):
            for name, ds in sets.items():
                n = len(ds)
                decode[name].append(rate(ds.load, n))
                pipeline[name].append(rate(ds.__getitem__, n))
    rows = {
        name: {
            "decode_img_s": statistics.median(decode[name]),
            "pipeline_img_s": statistics.median(pipeline[name]),
            "mb_per_image": sizes[name] / count / 1e6,
        }
        for name in SETS
    }
    base = rows["rgb_jpeg"]["pipeline_img_s"]
    for row in rows.values():
        row["pipeline_vs_rgb_jpeg"] = row["pipeline_img_s"] / base
    print(f"{count} images of {size} x {size}, crop {size}, one thread, median of {reps} round(s)")
    print(f"{'set':<16} {'MB/image':>9} {'decode img/s':>13} {'+ pipeline img/s':>17} {'vs RGB JPEG':>12}")
    for name, row in rows.items():
        print(
            f"{name:<16} {row['mb_per_image']:9.2f} {row['decode_img_s']:13.1f} {row['pipeline_img_s']:17.1f} "
            f"{row['pipeline_vs_rgb_jpeg']:12.2f}"
        )
    if args.json:
        machine = {"cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0]}
        args.json.write_text(
            json.dumps({"images": count, "size": size, "reps": reps, "machine": machine, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
