"""`segkit data sbd`: build VOC's augmented training set (SegmentationClassAug, train_aug.txt) from SBD.

SBD (Hariharan et al., 2011, "Semantic contours from inverse detectors") ships its labels as MATLAB files,
``benchmark_RELEASE/dataset/cls/<id>.mat`` with the class map in ``GTcls.Segmentation``. The augmented
training list is SBD train + SBD val + VOC train, minus VOC val: 10,582 images on the real data.
For an image with a VOC annotation (``SegmentationClass``, with its 255 borders) that annotation is used;
all others come from SBD. Outputs are single-channel PNGs; existing ones are kept, so the tool can be re-run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.io import loadmat
from tqdm import tqdm

from .base import read_label_png, write_label_png
from .voc import find_voc_dir, read_id_list


def find_sbd_dir(sbd_root: str | Path) -> Path:
    """The SBD folder holding ``cls/`` and ``train.txt``/``val.txt`` (``dataset`` inside the release)."""
    root = Path(sbd_root)
    for cand in (root, root / "dataset", root / "benchmark_RELEASE" / "dataset"):
        if (cand / "cls").is_dir() and (cand / "train.txt").is_file() and (cand / "val.txt").is_file():
            return cand
    raise FileNotFoundError(
        f"no SBD data under {root}: expected benchmark_RELEASE/dataset/cls/*.mat and "
        f"benchmark_RELEASE/dataset/{{train,val}}.txt"
    )


def read_sbd_mat(path: Path) -> np.ndarray:
    """The class map (H, W) uint8 of an SBD ``cls/<id>.mat`` file."""
    try:
        seg = loadmat(str(path))["GTcls"]["Segmentation"][0, 0]
    except Exception as e:
        raise ValueError(f"cannot read SBD label file {path}: {e}") from e
    return np.asarray(seg, dtype=np.uint8)


def convert_sbd(sbd_root: str | Path, voc_root: str | Path, progress: bool = True) -> dict[str, int]:
    """Writes ``SegmentationClassAug/*.png`` and ``ImageSets/Segmentation/train_aug.txt`` into the VOC folder.

    Returns counts: images in train_aug, PNGs written, PNGs already there (kept).
    """
    sbd, voc = find_sbd_dir(sbd_root), find_voc_dir(voc_root)
    lists = voc / "ImageSets" / "Segmentation"
    sbd_names = set(read_id_list(sbd / "train.txt")) | set(read_id_list(sbd / "val.txt"))
    voc_train, voc_val = set(read_id_list(lists / "train.txt")), set(read_id_list(lists / "val.txt"))
    train_aug = sorted((sbd_names | voc_train) - voc_val)
    out = voc / "SegmentationClassAug"
    out.mkdir(exist_ok=True)
    written = kept = 0
    for name in tqdm(train_aug, desc="SegmentationClassAug", disable=not progress):
        dst = out / f"{name}.png"
        if dst.is_file():
            kept += 1
            continue
        voc_mask = voc / "SegmentationClass" / f"{name}.png"
        mask = read_label_png(voc_mask) if voc_mask.is_file() else read_sbd_mat(sbd / "cls" / f"{name}.mat")
        tmp = dst.with_suffix(".tmp.png")
        write_label_png(tmp, mask)
        os.replace(tmp, dst)  # never leaves a half-written PNG behind
        written += 1
    (lists / "train_aug.txt").write_text("\n".join(train_aug) + "\n")
    return {"train_aug": len(train_aug), "written": written, "kept": kept}
