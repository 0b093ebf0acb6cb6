"""segkit.data.datamodule and the data sets' DataModules: a missing root explained, batches, what each DataModule
declares (colours, prediction files)."""

import hashlib

import numpy as np
import pytest
import torch

from segkit.data import (
    CityscapesDataModule,
    CityscapesPredictionFiles,
    PredictionFiles,
    SyntheticVOCDataModule,
    VOCDataModule,
    cityscapes_palette,
    voc_palette,
)


def _digest(folder):
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _copy_voc(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst / "VOCdevkit" / "VOC2012"


def test_missing_root_is_explained(tmp_path):
    dm = VOCDataModule(root=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="VOCdevkit/VOC2012/JPEGImages"):
        dm.prepare_data()


def test_datamodule_batches(tiny_voc):
    dm = VOCDataModule(root=str(tiny_voc), batch_size=4, val_batch_size=2, crop_size=48, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 48, 48)
    assert batch["mask"].dtype == torch.uint8
    assert len(dm.train_dataloader()) == 12 // 4
    names = [n for b in dm.val_dataloader() for n in b["name"]]
    assert sorted(names) == sorted(dm.val_set.ids)  # every val image exactly once


def test_datamodules_declare_colours_and_prediction_files():
    """What the commands ask a DataModule instead of testing its type."""
    voc, cs = VOCDataModule(), CityscapesDataModule()
    assert voc.num_classes == 21 and cs.num_classes == 19
    assert np.array_equal(voc.palette, voc_palette()) and np.array_equal(cs.palette, cityscapes_palette())
    assert type(voc.prediction_files) is PredictionFiles
    assert isinstance(cs.prediction_files, CityscapesPredictionFiles)
    # the arguments shared by every DataModule come through **kwargs with the base class's defaults
    synthetic = SyntheticVOCDataModule(scale_range=(0.75, 1.25), mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2))
    assert synthetic.scale_range == (0.75, 1.25) and synthetic.mean == (0.4, 0.4, 0.4)
    assert (synthetic.batch_size, synthetic.crop_size, voc.batch_size, voc.crop_size, cs.crop_size) == (
        8,
        96,
        16,
        513,
        769,
    )
    assert voc.scale_range == (0.5, 2.0) and not synthetic.augmented
