"""Data sets, pipelines and DataModules."""
from .datamodule import SyntheticVOCDataModule, VOCDataModule, pad_collate
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_voc
from .transforms import eval_transform, train_transform
from .voc import IGNORE_INDEX, VOC_CLASSES, VOCSegmentation, voc_palette

__all__ = [
    "IGNORE_INDEX", "SYNTHETIC_CLASSES", "SyntheticVOCDataModule", "VOCDataModule", "VOCSegmentation",
    "VOC_CLASSES", "eval_transform", "make_synthetic_voc", "pad_collate", "train_transform", "voc_palette",
]
