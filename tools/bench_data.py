"""Data loading speed: decode + the training pipeline, images per second on one CPU core.

    python tools/bench_data.py            # VOC-size JPEGs at crop 513, Cityscapes-size PNGs at crop 769
    python tools/bench_data.py --quick    # small files, for the tests

The files are written by segkit's synthetic generators in the real layouts (VOC: 375-500 px JPEG + palette
PNG; Cityscapes: 1024x2048 PNG + label-id PNG), then read through the same Dataset the training uses, in one
process with one thread (OpenCV and PyTorch), as one DataLoader worker would.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segkit.data import (  # noqa: E402
    CityscapesSegmentation, VOCSegmentation, make_synthetic_cityscapes, make_synthetic_voc, train_transform,
)


def measure(dataset, passes: int) -> dict[str, float]:
    """Images/s of decoding alone and of decode + train pipeline, over ``passes`` passes of the dataset."""
    n = len(dataset) * passes
    start = time.perf_counter()
    for _ in range(passes):
        for i in range(len(dataset)):
            dataset.load(i)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(passes):
        for i in range(len(dataset)):
            dataset[i]
    full = time.perf_counter() - start
    return {"decode_img_s": n / decode, "pipeline_img_s": n / full, "ms_per_img": 1000 * full / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small images and few of them")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        voc_sizes, voc_crop, cs_height, cs_crop, n, passes = (
            ((64, 96), 64, 64, 96, 4, 1) if args.quick else ((375, 500), 513, 1024, 769, 20, 3))
        make_synthetic_voc(Path(tmp) / "voc", num_train=n, num_val=1, size_range=voc_sizes, seed=0)
        voc = VOCSegmentation(Path(tmp) / "voc", "train", num_classes=5, transform=train_transform(voc_crop))
        results[f"VOC-size JPEG ({voc_sizes[0]}-{voc_sizes[1]} px), crop {voc_crop}"] = measure(voc, passes)
        make_synthetic_cityscapes(Path(tmp) / "cs", num_train=max(2, n // 4), num_val=1, height=cs_height, seed=0)
        cs = CityscapesSegmentation(Path(tmp) / "cs", "train", transform=train_transform(cs_crop))
        results[f"Cityscapes-size PNG ({cs_height}x{2 * cs_height}), crop {cs_crop}"] = measure(cs, passes)
    width = max(len(k) for k in results)
    print(f"{'one core':<{width}}  {'decode img/s':>12}  {'decode+pipeline img/s':>21}  {'ms/img':>7}")
    for name, r in results.items():
        print(f"{name:<{width}}  {r['decode_img_s']:12.1f}  {r['pipeline_img_s']:21.1f}  {r['ms_per_img']:7.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
