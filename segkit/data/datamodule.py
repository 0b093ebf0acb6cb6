"""LightningDataModules: Pascal VOC 2012 (optionally SBD-augmented), Cityscapes, and synthetic sets in both layouts."""
from __future__ import annotations

import os

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler

from .base import IGNORE_INDEX
from .cityscapes import CITYSCAPES_CLASSES, CityscapesSegmentation, find_cityscapes_split
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_cityscapes, make_synthetic_voc
from .transforms import XCEPTION_MEAN, XCEPTION_STD, eval_transform, train_transform
from .voc import VOC_CLASSES, VOCSegmentation, find_voc_dir


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


class ShardSampler(torch.utils.data.Sampler[int]):
    """Evaluation sampler for several processes: rank r takes images r, r + N, r + 2N, ... with no padding.

    PyTorch's DistributedSampler repeats images to even out the shards, which would count them twice in the
    confusion matrix; here every image is seen by exactly one process (shards differ by at most one image).
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def eval_sampler(dataset: Dataset) -> ShardSampler | None:
    """A ShardSampler when running in several processes, else None (plain sequential order)."""
    rank, world = _world()
    return ShardSampler(len(dataset), rank, world) if world > 1 else None


def train_sampler(dataset: Dataset) -> DistributedSampler | None:
    """In several processes, a shuffling DistributedSampler seeded alike on every rank (the global seed)."""
    rank, world = _world()
    if world == 1:
        return None
    return DistributedSampler(dataset, world, rank, shuffle=True, seed=torch.initial_seed() % 2**31, drop_last=True)


def seed_augmentations(dataset, seed: int) -> None:
    """Seeds the dataset's albumentations pipeline, which draws from its own generators, not the global ones."""
    for part in getattr(dataset, "datasets", [dataset]):  # a ConcatDataset seeds each part
        transform = getattr(part, "transform", None)
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(seed % 2**32)


def worker_init(worker_id: int) -> None:
    """Each DataLoader worker seeds its augmentations from its torch seed (base seed + worker id), which
    follows the global seed (``seed_everything``): the same seed gives the same augmentations, and no two
    workers repeat each other."""
    info = torch.utils.data.get_worker_info()
    seed_augmentations(info.dataset, info.seed)


class SegmentationDataModule(L.LightningDataModule):
    """Loaders, pipelines and the evaluation rules shared by every data set.

    Subclasses name their ``class_names`` and build their splits in :meth:`make_split`.

    Args:
        root: data root.
        batch_size: training batch size per device.
        val_batch_size: evaluation batch size per device (full images, padded within a batch).
        crop_size: square training crop.
        scale_range: random scale range of the training pipeline.
        mean: normalization mean (RGB, 0-1); the default suits the TF-trained Xception weights.
        std: normalization std (RGB, 0-1).
        num_workers: DataLoader worker processes per device.
        pin_memory: pin host memory; default: when CUDA is available.
    """

    class_names: tuple[str, ...] = ()

    def __init__(
        self,
        root: str,
        batch_size: int,
        val_batch_size: int,
        crop_size: int,
        scale_range: tuple[float, float],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        num_workers: int,
        pin_memory: bool | None,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size), ("crop_size", crop_size)):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.root = root
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.crop_size = crop_size
        self.scale_range = tuple(scale_range)
        self.mean, self.std = tuple(mean), tuple(std)
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def make_split(self, split: str, transform=None) -> Dataset:
        """The dataset of ``split`` ("train" or "val", or a data-set-specific name) with ``transform``."""
        raise NotImplementedError

    def train_splits(self) -> list[str]:
        """The splits that make up the training set."""
        return ["train"]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            transform = train_transform(self.crop_size, self.scale_range, self.mean, self.std)
            parts = [self.make_split(split, transform) for split in self.train_splits()]
            self.train_set = parts[0] if len(parts) == 1 else ConcatDataset(parts)
            seed_augmentations(self.train_set, torch.initial_seed())  # for num_workers=0
        if self.val_set is None:
            self.val_set = self.make_split("val", eval_transform(self.mean, self.std))

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        # segkit shards data itself (the CLI sets trainer.use_distributed_sampler=false): Lightning's
        # DistributedSampler would pad evaluation shards with repeated images
        sampler = train_sampler(dataset) if train else eval_sampler(dataset)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
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
        """Test labels of VOC and Cityscapes are not public: ``segkit test`` scores the val split."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class VOCDataModule(SegmentationDataModule):
    """Pascal VOC 2012 segmentation (21 classes).

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

    class_names = VOC_CLASSES

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
        super().__init__(root, batch_size, val_batch_size, crop_size, scale_range, mean, std, num_workers, pin_memory)
        self.augmented = augmented

    def prepare_data(self) -> None:
        find_voc_dir(self.root)  # fail early, with the expected layout, if the data is not there

    def make_split(self, split: str, transform=None) -> VOCSegmentation:
        if split == "train" and self.augmented:
            return VOCSegmentation(self.root, "train_aug", "SegmentationClassAug", self.num_classes, transform)
        return VOCSegmentation(self.root, split, "SegmentationClass", self.num_classes, transform)


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
        super().__init__(root, False, batch_size, val_batch_size, crop_size, scale_range, mean, std, num_workers,
                         pin_memory)
        self.num_train, self.num_val = num_train, num_val
        self.size_range = tuple(size_range)
        self.seed = seed

    def prepare_data(self) -> None:
        make_synthetic_voc(self.root, self.num_train, self.num_val, self.size_range, self.seed)


class CityscapesDataModule(SegmentationDataModule):
    """Cityscapes (19 evaluated classes), labels mapped from raw ids to train ids.

    Args:
        root: folder holding ``leftImg8bit`` and ``gtFine`` (and ``gtCoarse`` for ``coarse``).
        coarse: add the 19,998 ``train_extra`` images with their ``gtCoarse`` labels to the training set.
        batch_size: training batch size per device (8 in the official recipe).
        val_batch_size: evaluation batch size per device (whole 1024x2048 images).
        crop_size: square training crop (769 in the official recipe).
        scale_range: random scale range (0.5-2.0).
        mean: normalization mean (RGB, 0-1).
        std: normalization std (RGB, 0-1).
        num_workers: DataLoader worker processes per device.
        pin_memory: pin host memory; default: when CUDA is available.
    """

    class_names = CITYSCAPES_CLASSES

    def __init__(
        self,
        root: str = "data/cityscapes",
        coarse: bool = False,
        batch_size: int = 8,
        val_batch_size: int = 1,
        crop_size: int = 769,
        scale_range: tuple[float, float] = (0.5, 2.0),
        mean: tuple[float, float, float] = XCEPTION_MEAN,
        std: tuple[float, float, float] = XCEPTION_STD,
        num_workers: int = min(4, os.cpu_count() or 1),
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(root, batch_size, val_batch_size, crop_size, scale_range, mean, std, num_workers, pin_memory)
        self.coarse = coarse

    def prepare_data(self) -> None:
        find_cityscapes_split(self.root, "val")  # fail early, with the expected layout

    def train_splits(self) -> list[str]:
        return ["train", "train_extra"] if self.coarse else ["train"]

    def make_split(self, split: str, transform=None) -> CityscapesSegmentation:
        annotation = "gtCoarse" if split == "train_extra" else "gtFine"
        return CityscapesSegmentation(self.root, split, annotation, transform)


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
        val_batch_size: int = 2,
        crop_size: int = 128,
        scale_range: tuple[float, float] = (0.5, 2.0),
        mean: tuple[float, float, float] = XCEPTION_MEAN,
        std: tuple[float, float, float] = XCEPTION_STD,
        num_workers: int = min(2, os.cpu_count() or 1),
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(root, False, batch_size, val_batch_size, crop_size, scale_range, mean, std, num_workers,
                         pin_memory)
        self.num_train, self.num_val, self.height, self.seed = num_train, num_val, height, seed

    def prepare_data(self) -> None:
        make_synthetic_cityscapes(self.root, self.num_train, self.num_val, self.height, self.seed)
