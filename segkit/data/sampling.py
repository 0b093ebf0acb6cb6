"""How samples travel: collation, the evaluation shards and the seeded training stream.

- :func:`pad_collate` stacks samples of different sizes (padding is ignored by the loss and the metric);
- :func:`eval_sampler` gives every process its own images for evaluation, none twice, none dropped;
- :class:`TrainBatchSampler`, :class:`SeededSamples` and :class:`TrainLoader` make the training stream a
  function of the seed and the step alone, whatever the number of processes, workers or accumulation steps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..distributed import rank_and_world
from .base import IGNORE_INDEX
from .transforms import seed_transform


def as_is(item):
    """The collate function of loaders that hand over single samples as they are (``batch_size=None``)."""
    return item


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


def eval_sampler(dataset: Dataset) -> ShardSampler | None:
    """A ShardSampler when running in several processes, else None (plain sequential order)."""
    rank, world = rank_and_world()
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

    def __init__(
        self,
        length: int,
        global_batch: int,
        rank: int = 0,
        world_size: int = 1,
        accumulate: int = 1,
        seed: int = 0,
        start_step: Callable[[], int] = lambda: 0,
    ) -> None:
        parts = world_size * accumulate
        if global_batch % parts:
            raise ValueError(
                f"data.batch_size={global_batch} is the global batch and must divide evenly over {world_size} "
                f"process(es) x {accumulate} accumulation step(s) (trainer.devices x trainer.num_nodes x "
                f"trainer.accumulate_grad_batches); choose a multiple of {parts}"
            )
        if length < global_batch:
            raise ValueError(
                f"the training set has {length} images, fewer than one global batch (data.batch_size={global_batch})"
            )
        self.length = length
        self.global_batch = global_batch
        self.micro_batch = global_batch // parts
        self.rank = rank
        self.world_size = world_size
        self.accumulate = accumulate
        self.seed, self.start_step = seed, start_step
        self.steps_per_epoch = length // global_batch

    @property
    def description(self) -> str:
        """How the global batch is split, for the start-of-training message."""
        return (
            f"global batch {self.global_batch} = {self.world_size} process(es) x {self.micro_batch} images x "
            f"{self.accumulate} accumulation step(s)"
        )

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
            batch = order[step * self.global_batch : (step + 1) * self.global_batch]
            for m in range(self.accumulate):
                chunk = m * self.world_size + self.rank
                yield [(int(i), int(seeds[i])) for i in batch[chunk * b : (chunk + 1) * b]]


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
