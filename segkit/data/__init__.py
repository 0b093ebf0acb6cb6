"""Data sets, pipelines and DataModules."""

from .ade20k import ADE20K_CLASSES, ADE20KDataModule
from .base import IGNORE_INDEX, SegmentationDataset, read_image, read_label_png, write_label_png
from .cityscapes import (
    CITYSCAPES_CLASSES,
    LABEL_ID_TO_TRAIN_ID,
    CityscapesDataModule,
    CityscapesPredictionFiles,
    CityscapesSegmentation,
    cityscapes_palette,
)
from .datamodule import SegmentationDataModule
from .folder import FolderDataModule, FolderSegmentation
from .masks import MaskDecoder
from .pairing import PairingError, pair_folders, read_pair_list
from .palette import voc_palette
from .predictions import PredictionFiles
from .sampling import pad_collate
from .synthetic import (
    SYNTHETIC_CLASSES,
    SyntheticCityscapesDataModule,
    SyntheticVOCDataModule,
    make_synthetic_cityscapes,
    make_synthetic_voc,
)
from .transforms import eval_transform, train_transform
from .voc import VOC_CLASSES, VOCDataModule, VOCSegmentation

__all__ = [
    "ADE20K_CLASSES",
    "ADE20KDataModule",
    "FolderDataModule",
    "FolderSegmentation",
    "MaskDecoder",
    "PairingError",
    "pair_folders",
    "read_pair_list",
    "CITYSCAPES_CLASSES",
    "CityscapesDataModule",
    "CityscapesPredictionFiles",
    "CityscapesSegmentation",
    "IGNORE_INDEX",
    "LABEL_ID_TO_TRAIN_ID",
    "PredictionFiles",
    "SYNTHETIC_CLASSES",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SyntheticCityscapesDataModule",
    "SyntheticVOCDataModule",
    "VOCDataModule",
    "VOCSegmentation",
    "VOC_CLASSES",
    "cityscapes_palette",
    "eval_transform",
    "make_synthetic_cityscapes",
    "make_synthetic_voc",
    "pad_collate",
    "read_image",
    "read_label_png",
    "train_transform",
    "voc_palette",
    "write_label_png",
]
