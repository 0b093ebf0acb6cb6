"""Cityscapes in its on-disk layout, with raw label ids mapped to the 19 train ids of the benchmark.

Layout (``root`` holds ``leftImg8bit`` and ``gtFine``)::

    leftImg8bit/{train,val,test,train_extra}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png       ids 0..33
    gtFine/.../<city>_<seq>_<frame>_gtFine_labelTrainIds.png                       (optional) train ids
    gtCoarse/{train,train_extra,val}/<city>/<city>_<seq>_<frame>_gtCoarse_labelIds.png   (optional)

``*_labelIds.png`` hold the raw ids 0..33 of the official label table (``cityscapesscripts.helpers.labels``);
19 of them are evaluated and map to train ids 0..18, all others to 255 (ignored). Where a
``*_labelTrainIds.png`` (written by ``cityscapesscripts``' ``createTrainIdLabelImgs``) sits beside the
label-id file it is used as it is. Feeding raw ids to a 19-class loss is impossible here: every mask
is mapped, and values outside the valid set raise an error naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import IGNORE_INDEX, Sample, SegmentationDataset, check_values
from .datamodule import SegmentationDataModule
from .predictions import PredictionFiles

# (name, id, train id, colour) of the official label table; train id 255 = not evaluated.
CITYSCAPES_LABELS = (
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
)  # "license plate" (id -1) is never drawn into label images by the official tools
NUM_LABEL_IDS = 34

CITYSCAPES_CLASSES = tuple(
    name for name, _, train_id, _ in sorted(CITYSCAPES_LABELS, key=lambda x: x[2]) if train_id != 255
)


def _lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for _, label_id, train_id, _ in CITYSCAPES_LABELS:
        lut[label_id] = train_id
    return lut


LABEL_ID_TO_TRAIN_ID = _lut()


def cityscapes_palette() -> np.ndarray:
    """(256, 3) uint8 colours indexed by train id (official colours; 255 and unused entries black)."""
    palette = np.zeros((256, 3), np.uint8)
    for _, _, train_id, colour in CITYSCAPES_LABELS:
        if train_id != 255:
            palette[train_id] = colour
    return palette


def train_ids_to_label_ids(mask: np.ndarray) -> np.ndarray:
    """Inverse mapping for submissions: train ids 0..18 -> label ids (255 -> 0, unlabeled)."""
    inverse = np.zeros(256, np.uint8)
    for _, label_id, train_id, _ in CITYSCAPES_LABELS:
        if train_id != 255:
            inverse[train_id] = label_id
    return inverse[mask]


def find_cityscapes_split(root: str | Path, split: str, annotation: str = "gtFine") -> list[Sample]:
    """The (image, label) files of one split, sorted by name; raises naming what is missing."""
    root = Path(root)
    image_dir, label_dir = root / "leftImg8bit" / split, root / annotation / split
    if not image_dir.is_dir():
        raise FileNotFoundError(
            f"no Cityscapes images at {image_dir}: data.root={root} must hold leftImg8bit/ and {annotation}/ "
            f"(see README, 'Preparing Cityscapes')"
        )
    samples = []
    for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        base = label_dir / image.parent.name / f"{stem}_{annotation}"
        train_ids = base.with_name(base.name + "_labelTrainIds.png")
        samples.append(
            Sample(stem, image, train_ids if train_ids.is_file() else base.with_name(base.name + "_labelIds.png"))
        )
    if not samples:
        raise FileNotFoundError(f"no *_leftImg8bit.png images under {image_dir}/<city>/")
    return samples


class CityscapesSegmentation(SegmentationDataset):
    """One Cityscapes split with labels as the 19 train ids (255 ignored).

    Args:
        root: folder holding ``leftImg8bit`` and ``gtFine``.
        split: ``train``, ``val``, ``test`` or ``train_extra`` (the latter with ``annotation="gtCoarse"``).
        annotation: ``gtFine`` or ``gtCoarse``.
        transform: callable ``(image=..., mask=...) -> dict`` returning tensors.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        annotation: str = "gtFine",
        transform: Callable[..., dict] | None = None,
    ) -> None:
        super().__init__(find_cityscapes_split(root, split, annotation), len(CITYSCAPES_CLASSES), transform)

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if path.name.endswith("_labelTrainIds.png"):
            return super().decode_mask(raw, path)
        check_values(raw, np.arange(NUM_LABEL_IDS), path)
        return LABEL_ID_TO_TRAIN_ID[raw]


class CityscapesPredictionFiles(PredictionFiles):
    """``<city>_<seq>_<frame>_labelIds.png`` holding label ids, as the official evaluation server takes them.

    Read back from label-id files (ids outside the 19 evaluated classes become void: a miss for the true
    class, as the official scorer counts them) or from class-index PNGs of train ids; a file belongs to the
    image whose ``<city>_<seq>_<frame>`` starts its name, whatever suffix it carries.
    """

    def file_name(self, name: str) -> str:
        return f"{name}_labelIds.png"

    def encode(self, labels: np.ndarray) -> np.ndarray:
        return train_ids_to_label_ids(labels)

    def decode(self, raw: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
        if path.name.endswith("_labelIds.png"):
            check_values(raw, np.arange(NUM_LABEL_IDS), path)
            return LABEL_ID_TO_TRAIN_ID[raw]
        return super().decode(raw, path, num_classes)

    def key(self, path: Path) -> str:
        match = re.match(r"(.+?_\d{6}_\d{6})", path.stem)
        return match.group(1) if match else path.stem


class CityscapesDataModule(SegmentationDataModule):
    """Cityscapes (19 evaluated classes), labels mapped from raw ids to train ids; other arguments as
    :class:`SegmentationDataModule`. Prediction files are written as label ids, for the official server.

    Args:
        root: folder holding ``leftImg8bit`` and ``gtFine`` (and ``gtCoarse`` for ``coarse``).
        coarse: add the 19,998 ``train_extra`` images with their ``gtCoarse`` labels to the training set.
        batch_size: the global training batch (8 in the official recipe), over all processes and
            accumulation steps.
        crop_size: square training crop (769 in the official recipe).
    """

    class_names = CITYSCAPES_CLASSES
    palette = cityscapes_palette()
    prediction_files = CityscapesPredictionFiles()

    def __init__(
        self, root: str = "data/cityscapes", coarse: bool = False, batch_size: int = 8, crop_size: int = 769, **kwargs
    ) -> None:
        super().__init__(root=root, batch_size=batch_size, crop_size=crop_size, **kwargs)
        self.coarse = coarse

    def prepare_data(self) -> None:
        find_cityscapes_split(self.root, "val")  # fail early, with the expected layout

    def train_splits(self) -> list[str]:
        return ["train", "train_extra"] if self.coarse else ["train"]

    def make_split(self, split: str, transform=None) -> CityscapesSegmentation:
        annotation = "gtCoarse" if split == "train_extra" else "gtFine"
        return CityscapesSegmentation(self.root, split, annotation, transform)
