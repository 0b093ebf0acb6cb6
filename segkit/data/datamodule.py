"""LightningDataModules: Pascal VOC 2012 (optionally SBD-augmented) and the synthetic VOC-layout set."""
from __future__ import annotations

import os
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .synthetic import SYNTHETIC_CLASSES, make_synthetic_voc
from .transforms import XCEPTION_MEAN, XCEPTION_STD, eval_transform, train_transform
from .voc import IGNORE_INDEX, VOC_CLASSES, VOCSegmentation, find_voc_dir


def pad_collate(samples: list[dict]) -> dict:
    """Stacks samples, padding images (with 0, the normalized mean) and masks (with 255) at the bottom/right.

    Evaluation keeps full-size images of different sizes; padded pixels are ignored by the loss and metric.
    """
    h = max(s["image"].shape[-2] for s in samples)
    w = max(s["image"].shape[-1] for s in samples)

    def pad(t: torch.Tensor, value: float) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value)

    return {
        "image": torch.stack([pad(s["image"], 0.0) for s in samples]),
        "mask": torch.stack([pad(s["mask"], IGNORE_INDEX) for s in samples]),
        "size": torch.tensor([tuple(s["mask"].shape[-2:]) for s in samples]),
        "name": [s["name"] for s in samples],
    }


def seed_augmentations(dataset, seed: int) -> None:
    """Seeds the dataset's albumentations pipeline, which draws from its own generators, not the global ones."""
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed % 2**32)


def worker_init(worker_id: int) -> None:
    """Each DataLoader worker seeds its augmentations from its torch seed (base seed + worker id), which
    follows the global seed (``seed_everything``): the same seed gives the same augmentations, and no two
    workers repeat each other."""
    info = torch.utils.data.get_worker_info()
    seed_augmentations(info.dataset, info.seed)


class VOCDataModule(L.LightningDataModule):
    """Pascal VOC 2012 segmentation.

    Args:
        root: folder holding ``VOCdevkit/VOC2012`` (or that folder itself).
        augmented: train on ``train_aug`` (10,582 images) with ``SegmentationClassAug`` masks instead of
            ``train`` (1,464 images) with ``SegmentationClass``.
        batch_size: training batch size per device.
        val_batch_size: evaluation batch size per device (full images, padded within a batch).
        crop_size: square training crop (513 in the paper).
        scale_range: random scale range of the training pipeline (0.5-2.0 in the paper).
        mean: normalization mean (RGB, 0-1); the default suits the TF-trained Xception weights.
        std: normalization std (RGB, 0-1).
        num_workers: DataLoader worker processes per device.
        pin_memory: pin host memory; default: when CUDA is available.
    """

    class_names: tuple[str, ...] = VOC_CLASSES

    def __init__(
        self,
        root: str = "data/voc",
        augmented: bool = False,
        batch_size: int = 16,
        val_batch_size: int = 1,
        crop_size: int = 513,
        scale_range: tuple[float, float] = (0.5, 2.0),
        mean: tuple[float, float, float] = XCEPTION_MEAN,
        std: tuple[float, float, float] = XCEPTION_STD,
        num_workers: int = min(4, os.cpu_count() or 1),
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size), ("crop_size", crop_size)):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.root = root
        self.augmented = augmented
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.crop_size = crop_size
        self.scale_range = tuple(scale_range)
        self.mean, self.std = tuple(mean), tuple(std)
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.train_set: VOCSegmentation | None = None
        self.val_set: VOCSegmentation | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def prepare_data(self) -> None:
        find_voc_dir(self.root)  # fail early, with the expected layout, if the data is not there

    def _split(self, split: str, mask_dir: str, transform) -> VOCSegmentation:
        return VOCSegmentation(self.root, split, mask_dir, self.num_classes, transform)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            split, masks = ("train_aug", "SegmentationClassAug") if self.augmented else ("train", "SegmentationClass")
            self.train_set = self._split(
                split, masks, train_transform(self.crop_size, self.scale_range, self.mean, self.std))
            seed_augmentations(self.train_set, torch.initial_seed())  # for num_workers=0
        if self.val_set is None:
            self.val_set = self._split("val", "SegmentationClass", eval_transform(self.mean, self.std))

    def _loader(self, dataset: VOCSegmentation, batch_size: int, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train,  # never drop (or pad) evaluation images: each one counts exactly once
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=pad_collate,
            worker_init_fn=worker_init if train else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.val_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        """VOC test labels are not public: ``segkit test`` scores the val split."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()


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
        val_batch_size: int = 8,
        crop_size: int = 96,
        scale_range: tuple[float, float] = (0.5, 2.0),
        mean: tuple[float, float, float] = XCEPTION_MEAN,
        std: tuple[float, float, float] = XCEPTION_STD,
        num_workers: int = min(2, os.cpu_count() or 1),
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(root, False, batch_size, val_batch_size, crop_size, scale_range, mean, std,
                         num_workers, pin_memory)
        self.num_train, self.num_val = num_train, num_val
        self.size_range = tuple(size_range)
        self.seed = seed

    def prepare_data(self) -> None:
        make_synthetic_voc(self.root, self.num_train, self.num_val, self.size_range, self.seed)
