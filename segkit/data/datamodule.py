"""LightningDataModules: Pascal VOC 2012 (optionally SBD-augmented), Cityscapes, and synthetic sets in both layouts."""
from __future__ import annotations

import os
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from .base import IGNORE_INDEX
from .cityscapes import CITYSCAPES_CLASSES, CityscapesSegmentation, find_cityscapes_split
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_cityscapes, make_synthetic_voc
from .transforms import XCEPTION_MEAN, XCEPTION_STD, eval_transform, seed_transform, train_transform
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


class TrainBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """This process's training batches, cut from a stream of global batches that depends only on the seed.

    Epoch ``e`` shuffles the data set with the seed pair ``(seed, e)``; its global batches are consecutive
    slices of ``global_batch`` images (an incomplete last one is dropped). A global batch is split into
    ``accumulate x world_size`` micro-batches: micro-step ``m`` of process ``r`` takes chunk
    ``m * world_size + r``. Every image also gets an augmentation seed drawn from ``(seed, e)``, so what the
    model sees at a step (which images, how they are scaled, cropped and flipped) does not depend on the
    number of processes, DataLoader workers or accumulation steps.

    Iteration starts at ``start_step()`` (the trainer's global step), so a resumed run continues the
    stream where the checkpoint left it, on any number of devices.

    Yields lists of ``(index, augmentation seed)`` for :class:`SeededSamples`.
    """

    def __init__(self, length: int, global_batch: int, rank: int = 0, world_size: int = 1, accumulate: int = 1,
                 seed: int = 0, start_step: Callable[[], int] = lambda: 0) -> None:
        parts = world_size * accumulate
        if global_batch % parts:
            raise ValueError(
                f"data.batch_size={global_batch} is the global batch and must divide evenly over {world_size} "
                f"process(es) x {accumulate} accumulation step(s) (trainer.devices x trainer.num_nodes x "
                f"trainer.accumulate_grad_batches); choose a multiple of {parts}")
        if length < global_batch:
            raise ValueError(f"the training set has {length} images, fewer than one global batch "
                             f"(data.batch_size={global_batch})")
        self.length, self.global_batch, self.micro_batch = length, global_batch, global_batch // parts
        self.rank, self.world_size, self.accumulate = rank, world_size, accumulate
        self.seed, self.start_step = seed, start_step
        self.steps_per_epoch = length // global_batch

    def __len__(self) -> int:
        """Micro-batches of this process in a full epoch."""
        return self.steps_per_epoch * self.accumulate

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(image order, augmentation seed of each image index) of ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(self.length), rng.integers(0, 2**62, self.length)

    def __iter__(self):
        epoch, first = divmod(self.start_step(), self.steps_per_epoch)
        order, seeds = self.epoch_plan(epoch)
        b = self.micro_batch
        for step in range(first, self.steps_per_epoch):
            batch = order[step * self.global_batch:(step + 1) * self.global_batch]
            for m in range(self.accumulate):
                chunk = m * self.world_size + self.rank
                yield [(int(i), int(seeds[i])) for i in batch[chunk * b:(chunk + 1) * b]]


class SeededSamples(Dataset):
    """A training set read with ``(index, seed)`` keys: seeds the augmentations, then returns ``dataset[index]``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        parts = getattr(dataset, "datasets", [dataset])  # each part of a ConcatDataset has its own pipeline
        self.transforms = [p.transform for p in parts if getattr(p, "transform", None) is not None]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        for transform in self.transforms:
            seed_transform(transform, seed)
        return self.dataset[index]


class TrainLoader(DataLoader):
    """The training DataLoader, resumable in Lightning's sense: its position is the trainer's global step
    (see :class:`TrainBatchSampler`) and its seed travels in the checkpoint, so a resumed run, on any number
    of devices, continues the data stream of the run it resumes."""

    def state_dict(self) -> dict:
        return {"seed": self.batch_sampler.seed}

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.seed = state["seed"]


class SegmentationDataModule(L.LightningDataModule):
    """Loaders, pipelines and the evaluation rules shared by every data set.

    Subclasses name their ``class_names`` and build their splits in :meth:`make_split`.

    Args:
        root: data root.
        batch_size: the global training batch: images per optimizer step, over all processes and
            accumulation steps; each process loads ``batch_size / (world size x accumulate_grad_batches)``.
        val_batch_size: evaluation batch size per process (full images, padded within a batch).
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
        if self.val_set is None:
            self.val_set = self.make_split("val", eval_transform(self.mean, self.std))

    def train_dataloader(self) -> DataLoader:
        """Each process loads its share of the global batch (see :class:`TrainBatchSampler`)."""
        trainer = self._checked_trainer()
        rank, world = _world()
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        seed = torch.initial_seed() % 2**62  # the global seed (seed_everything), the same on every process
        if trainer is not None:
            seed = trainer.strategy.broadcast(seed)  # ... even when no seed was set
        sampler = TrainBatchSampler(len(self.train_set), self.batch_size, rank, world, accumulate, seed,
                                    start_step=(lambda: trainer.global_step) if trainer is not None else (lambda: 0))
        return TrainLoader(
            SeededSamples(self.train_set),
            batch_sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=pad_collate,
        )

    def _checked_trainer(self) -> L.Trainer | None:
        # segkit shards data itself; Lightning's DistributedSampler would replace that, padding evaluation
        # shards with repeated images (the CLI sets trainer.use_distributed_sampler=false)
        trainer = self.trainer
        connector = getattr(trainer, "_accelerator_connector", None)
        if trainer is not None and trainer.world_size > 1 and getattr(connector, "use_distributed_sampler", False):
            raise ValueError("segkit's DataModules shard the data over processes themselves: create the Trainer "
                             "with use_distributed_sampler=False (the segkit CLI does)")
        return trainer

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        self._checked_trainer()
        return DataLoader(
            dataset,
            batch_size=self.val_batch_size,
            sampler=eval_sampler(dataset),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=pad_collate,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

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
        batch_size: the global training batch (16 in the paper), over all processes and accumulation steps.
        val_batch_size: evaluation batch size per process (full images, padded within a batch).
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
        batch_size: the global training batch (8 in the official recipe), over all processes and
            accumulation steps.
        val_batch_size: evaluation batch size per process (whole 1024x2048 images).
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
