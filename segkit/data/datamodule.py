"""The LightningDataModule every data set builds on: its loaders, pipelines and evaluation rules. Each data
set's own DataModule lives beside its Dataset (voc.py, cityscapes.py, ade20k.py, folder.py, synthetic.py).

How their samples are collated, sharded and seeded is :mod:`segkit.data.sampling`.
"""

from __future__ import annotations

import os
from functools import partial

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ..distributed import rank_and_world
from .bands import display_image
from .palette import voc_palette
from .predictions import PredictionFiles
from .sampling import SeededSamples, TrainBatchSampler, TrainLoader, eval_sampler, pad_collate
from .transforms import XCEPTION_MEAN, XCEPTION_STD, eval_transform, train_transform


class SegmentationDataModule(L.LightningDataModule):
    """Loaders, pipelines and the evaluation rules shared by every data set.

    A data set declares what the commands need to know about it, so that none of them tests for its type:

    - ``class_names``, and ``num_classes`` from them;
    - ``palette``: (256, 3) uint8 class colours of masks and overlays (``segkit predict``, reports);
    - ``prediction_files``: how its prediction files are named and encoded for its benchmark, and read back
      (``segkit eval --save_predictions`` / ``--predictions``);
    - ``void_outlines``: whether its ground truth outlines objects with void (255) bands, as Pascal VOC's does
      (``segkit eval --trimap`` then measures around those; otherwise around the class boundaries);
    - its splits, built by :meth:`make_split`, and the splits it trains on, :meth:`train_splits`.

    Subclasses take the arguments below through ``**kwargs``, with their own defaults for the first three.

    Args:
        root: data root.
        batch_size: the global training batch: images per optimizer step, over all processes and
            accumulation steps; each process loads ``batch_size / (world size x accumulate_grad_batches)``.
        crop_size: square training crop.
        val_batch_size: evaluation batch size per process (full images, padded within a batch).
        num_workers: DataLoader worker processes per device.
        scale_range: random scale range of the training pipeline (0.5-2.0 in the paper).
        scale_step: 0: any scale in the range; > 0: one of min, min + step, ..., max, as official train.py
            (``--scale_factor_step_size``, 0.25 in the official recipes' configs).
        mean: normalization mean per band (RGB for the benchmarks), in units of the pixel type's maximum (0-1);
            the default suits the TF-trained Xception weights.
        std: normalization std per band, in the same units.
        pin_memory: pin host memory; default: when CUDA is available.
        resize_to_range: ``[min, max]``: resize images and labels first, in training and evaluation, as official
            DeepLab's ``--min/max_resize_value`` (:func:`~segkit.data.base.official_resize`); None: never resized.
        resize_factor: with ``resize_to_range``, the official ``--resize_factor``: sides become k * factor + 1.
        cat_max_ratio: < 1: redraw a training crop (up to 10 times) while one class fills more than this share of
            its labelled pixels (mmsegmentation's, 0.75 in its configs); 1: off.
        photometric: photometric augmentation of training images (colour jitter and blur for 8-bit RGB,
            brightness and contrast per band otherwise; :mod:`segkit.data.transforms`).
    """

    class_names: tuple[str, ...] = ()
    palette: np.ndarray = voc_palette()
    prediction_files: PredictionFiles = PredictionFiles()
    void_outlines: bool = False
    multilabel: bool = False  # masks of overlapping classes, (H, W, K) (segkit.data.multilabel)
    pixel_max: int = 255  # the pixel type's maximum: normalization divides by it (65535 for 16-bit bands)
    display_bands: tuple[int, int, int] = (0, 1, 2)  # the bands shown as red, green and blue

    def __init__(
        self,
        root: str,
        batch_size: int,
        crop_size: int,
        val_batch_size: int = 1,
        num_workers: int = min(4, os.cpu_count() or 1),
        scale_range: tuple[float, float] = (0.5, 2.0),
        mean: tuple[float, ...] = XCEPTION_MEAN,
        std: tuple[float, ...] = XCEPTION_STD,
        pin_memory: bool | None = None,
        resize_to_range: tuple[int, int] | None = None,
        resize_factor: int | None = None,
        scale_step: float = 0.0,
        cat_max_ratio: float = 1.0,
        photometric: bool = False,
    ) -> None:
        super().__init__()
        if not 0 < cat_max_ratio <= 1:
            raise ValueError(
                f"data.cat_max_ratio must be in (0, 1] (1: off; mmsegmentation uses 0.75), got {cat_max_ratio}"
            )
        self.cat_max_ratio, self.photometric = cat_max_ratio, photometric
        if resize_to_range is not None and not 0 < resize_to_range[0] <= resize_to_range[1]:
            raise ValueError(f"data.resize_to_range must be [min, max] with 0 < min <= max, got {resize_to_range}")
        if resize_factor is not None and (resize_factor < 1 or resize_to_range is None):
            raise ValueError("data.resize_factor needs data.resize_to_range and must be >= 1")
        self.resize = None if resize_to_range is None else (*resize_to_range, resize_factor)
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size), ("crop_size", crop_size)):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.root = root
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.crop_size = crop_size
        self.scale_range, self.scale_step = tuple(scale_range), scale_step
        self.mean, self.std = tuple(mean), tuple(std)
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"data.mean and data.std give one value per band: {len(self.mean)} and {len(self.std)}")
        if min(self.std) <= 0:
            raise ValueError(f"data.std must be positive, got {list(self.std)}")
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        """Bands of the model's input: one mean per band."""
        return len(self.mean)

    def train_transform(self):
        """The training pipeline (:func:`~segkit.data.transforms.train_transform`) with this data's settings."""
        if self.multilabel and self.cat_max_ratio < 1:
            raise ValueError("data.cat_max_ratio counts the classes of single-label masks; set it to 1 for multilabel")
        return train_transform(
            self.crop_size,
            self.scale_range,
            self.mean,
            self.std,
            self.scale_step,
            float(self.pixel_max),
            self.cat_max_ratio,
            self.photometric,
        )

    def eval_transform(self):
        """Normalization only, as evaluation and prediction read images."""
        return eval_transform(self.mean, self.std, float(self.pixel_max))

    def display(self, image: np.ndarray) -> np.ndarray:
        """An image as the data set reads it -> the RGB uint8 picture of overlays and W&B panels."""
        return display_image(image, self.display_bands, self.pixel_max)

    def inference_record(self) -> dict:
        """What running a model trained on this data needs besides its weights, stored in segkit's checkpoints
        (``segkit_data``) so that :class:`segkit.Segmenter` takes a checkpoint alone."""
        return {
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
            "palette": np.asarray(self.palette, np.uint8).tolist(),
            "in_channels": self.in_channels,
            "pixel_max": self.pixel_max,
            "bands": getattr(self, "bands", None),
            "display_bands": list(self.display_bands),
            "multilabel": self.multilabel,
        }

    def make_split(self, split: str, transform=None) -> Dataset:
        """The dataset of ``split`` ("train" or "val", or a data-set-specific name) with ``transform``."""
        raise NotImplementedError

    def split_dataset(self, split: str, transform=None) -> Dataset:
        """:meth:`make_split` with the data set's own settings applied (``resize_to_range``): what training, ``segkit
        eval`` and ``segkit data check`` read."""
        dataset = self.make_split(split, transform)
        dataset.resize = self.resize
        dataset.display = partial(display_image, bands=self.display_bands, max_value=self.pixel_max)
        return dataset

    def train_splits(self) -> list[str]:
        """The splits that make up the training set."""
        return ["train"]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            transform = self.train_transform()
            parts = [self.split_dataset(split, transform) for split in self.train_splits()]
            self.train_set = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        if self.val_set is None:
            self.val_set = self.split_dataset("val", self.eval_transform())

    def class_pixel_counts(self) -> np.ndarray:
        """Labelled pixels per class over the training set, its masks read as training reads them (ignored pixels
        not counted), with the DataLoader workers: what ``class_weights: auto`` is computed from."""
        if self.train_set is None:
            self.setup("fit")
        parts = self.train_set.datasets if isinstance(self.train_set, ConcatDataset) else [self.train_set]
        counts = np.zeros(256, np.int64)
        for part in parts:
            for hist in DataLoader(_MaskHistograms(part), batch_size=None, num_workers=self.num_workers):
                counts += hist.numpy()
        return counts[: self.num_classes]

    def train_dataloader(self) -> DataLoader:
        """Each process loads its share of the global batch (see :class:`TrainBatchSampler`)."""
        trainer = self._checked_trainer()
        rank, world = rank_and_world()
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        seed = torch.initial_seed() % 2**62  # the global seed (seed_everything), the same on every process
        if trainer is not None:
            seed = trainer.strategy.broadcast(seed)  # ... even when no seed was set
        sampler = TrainBatchSampler(
            len(self.train_set),
            self.batch_size,
            rank,
            world,
            accumulate,
            seed,
            start_step=(lambda: trainer.global_step) if trainer is not None else (lambda: 0),
        )
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
            raise ValueError(
                "segkit's DataModules shard the data over processes themselves: create the Trainer "
                "with use_distributed_sampler=False (the segkit CLI does)"
            )
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
        """``trainer.predict`` (Python API; ``segkit predict`` reads image folders) predicts the val split."""
        return self.val_dataloader()


class _MaskHistograms(Dataset):
    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.dataset.mask_histogram(self.dataset.load_mask(index)))
