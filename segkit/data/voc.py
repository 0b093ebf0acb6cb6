"""Pascal VOC 2012 segmentation in its on-disk layout, with the SBD-augmented training set as an option.

Layout (``root`` may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself or ``VOC2012``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png        palette PNGs: index = class, 255 = object border
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png     (augmented set) single-channel PNGs, same values
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,train_aug}.txt
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Sample, SegmentationDataset
from .datamodule import SegmentationDataModule

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def read_id_list(path: Path) -> list[str]:
    """The image ids of a list file (first word of each non-empty line: VOC's and SBD's split lists)."""
    return [line.split()[0] for line in Path(path).read_text().splitlines() if line.strip()]


def find_voc_dir(root: str | Path) -> Path:
    """Resolves ``root`` to the VOC2012 folder, or raises naming what was looked for."""
    root = Path(root)
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() and (cand / "ImageSets" / "Segmentation").is_dir():
            return cand
    raise FileNotFoundError(
        f"no Pascal VOC 2012 data under data.root={root}: expected VOCdevkit/VOC2012/JPEGImages and "
        f"VOCdevkit/VOC2012/ImageSets/Segmentation there (see README, 'Preparing Pascal VOC')"
    )


class VOCSegmentation(SegmentationDataset):
    """One VOC split as (image, mask) pairs passed through an albumentations-style ``transform``.

    Args:
        root: data root (see module docstring).
        split: image list name in ``ImageSets/Segmentation`` (``train``, ``val``, ``train_aug``...).
        mask_dir: ``SegmentationClass`` or ``SegmentationClassAug``.
        num_classes: masks are checked to hold only ``0..num_classes-1`` and 255.
        transform: callable ``(image=..., mask=...) -> dict`` returning tensors.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        mask_dir: str = "SegmentationClass",
        num_classes: int = 21,
        transform: Callable[..., dict] | None = None,
    ) -> None:
        self.voc_dir = find_voc_dir(root)
        list_file = self.voc_dir / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"split list not found: {list_file}")
        names = read_id_list(list_file)
        if not names:
            raise ValueError(f"split list {list_file} is empty")
        samples = [
            Sample(n, self.voc_dir / "JPEGImages" / f"{n}.jpg", self.voc_dir / mask_dir / f"{n}.png") for n in names
        ]
        super().__init__(samples, num_classes, transform)


class VOCDataModule(SegmentationDataModule):
    """Pascal VOC 2012 segmentation (21 classes); other arguments as :class:`SegmentationDataModule`.

    Args:
        root: folder holding ``VOCdevkit/VOC2012`` (or that folder itself).
        augmented: train on ``train_aug`` (10,582 images) with ``SegmentationClassAug`` masks instead of
            ``train`` (1,464 images) with ``SegmentationClass``.
        batch_size: the global training batch (16 in the paper), over all processes and accumulation steps.
        crop_size: square training crop (513 in the paper).
    """

    class_names = VOC_CLASSES
    void_outlines = True  # object boundaries marked 255 (5 px wide) by the annotators

    def __init__(
        self, root: str = "data/voc", augmented: bool = False, batch_size: int = 16, crop_size: int = 513, **kwargs
    ) -> None:
        super().__init__(root=root, batch_size=batch_size, crop_size=crop_size, **kwargs)
        self.augmented = augmented

    def prepare_data(self) -> None:
        find_voc_dir(self.root)  # fail early, with the expected layout, if the data is not there

    def make_split(self, split: str, transform=None) -> VOCSegmentation:
        if split == "train" and self.augmented:
            return VOCSegmentation(self.root, "train_aug", "SegmentationClassAug", self.num_classes, transform)
        return VOCSegmentation(self.root, split, "SegmentationClass", self.num_classes, transform)
