"""Cityscapes tests: the label table against cityscapesscripts, the synthetic layout, loading, the config."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from segkit.commands import main
from segkit.data import (
    CITYSCAPES_CLASSES,
    LABEL_ID_TO_TRAIN_ID,
    CityscapesDataModule,
    CityscapesSegmentation,
    cityscapes_palette,
    make_synthetic_cityscapes,
)

np.in1d = getattr(np, "in1d", lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel())  # numpy 2.4 shim
from cityscapesscripts.helpers.labels import labels as OFFICIAL_LABELS  # noqa: E402
from helpers import CONFIGS  # noqa: E402


def _official_lut():
    lut = np.full(256, 255, np.int64)
    for label in OFFICIAL_LABELS:
        if label.id >= 0:
            lut[label.id] = label.trainId if label.trainId not in (-1, 255) else 255
    return lut


def test_label_table_equals_cityscapesscripts():
    assert np.array_equal(LABEL_ID_TO_TRAIN_ID.astype(np.int64), _official_lut())
    official = sorted((lb.trainId, lb.name, lb.color) for lb in OFFICIAL_LABELS if lb.trainId not in (-1, 255))
    assert CITYSCAPES_CLASSES == tuple(name for _, name, _ in official)
    palette = cityscapes_palette()
    assert [tuple(palette[t]) for t, _, _ in official] == [c for _, _, c in official]


@pytest.fixture(scope="module")
def tiny_cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    make_synthetic_cityscapes(root, num_train=6, num_val=3, height=64, seed=2)
    return root


def test_synthetic_layout_uses_all_ids(tiny_cityscapes):
    images = sorted((tiny_cityscapes / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))
    assert len(images) == 6
    stem = images[0].name[: -len("_leftImg8bit.png")]
    assert re.fullmatch(r"[a-z]+_\d{6}_\d{6}", stem)
    label = tiny_cityscapes / "gtFine" / "train" / images[0].parent.name / f"{stem}_gtFine_labelIds.png"
    with Image.open(images[0]) as im, Image.open(label) as lab:
        assert im.size == (128, 64) and im.mode == "RGB" and lab.size == (128, 64)
    meta = json.loads((tiny_cityscapes / "segkit_synthetic.json").read_text())
    assert all(c > 0 for c in meta["label_id_pixel_counts"]["train"])  # all 34 ids, the ignored ones included


def test_loading_maps_to_train_ids(tiny_cityscapes):
    """Per-class pixel counts of the loaded masks equal the generator's raw-id counts mapped by cityscapesscripts."""
    meta = json.loads((tiny_cityscapes / "segkit_synthetic.json").read_text())
    lut = _official_lut()
    for split in ("train", "val"):
        expected = np.zeros(256, np.int64)
        for label_id, count in enumerate(meta["label_id_pixel_counts"][split]):
            expected[lut[label_id]] += count
        ds = CityscapesSegmentation(tiny_cityscapes, split)
        got = np.zeros(256, np.int64)
        for i in range(len(ds)):
            got += np.bincount(ds.load(i)[1].ravel(), minlength=256)
        assert np.array_equal(got, expected), split


def test_train_id_files_are_preferred(tiny_cityscapes, tmp_path):
    import shutil

    root = tmp_path / "cs"
    shutil.copytree(tiny_cityscapes, root)
    ds = CityscapesSegmentation(root, "val")
    sample = ds.samples[0]
    train_ids = np.full((64, 128), 3, np.uint8)
    Image.fromarray(train_ids, mode="L").save(str(sample.mask).replace("_labelIds.png", "_labelTrainIds.png"))
    again = CityscapesSegmentation(root, "val")
    assert again.samples[0].mask.name.endswith("_labelTrainIds.png")
    assert (again.load(0)[1] == 3).all()


def test_raw_ids_out_of_range_name_the_file(tiny_cityscapes, tmp_path):
    import shutil

    root = tmp_path / "cs"
    shutil.copytree(tiny_cityscapes, root)
    ds = CityscapesSegmentation(root, "val")
    bad = np.zeros((64, 128), np.uint8)
    bad[0, :3] = [40, 41, 255]
    Image.fromarray(bad, mode="L").save(ds.samples[1].mask)
    with pytest.raises(ValueError, match=rf"{ds.samples[1].mask.name} holds values \[40, 41, 255\]"):
        ds.load(1)


def test_missing_layout_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        CityscapesDataModule(root=str(tmp_path)).prepare_data()


def test_fit_cityscapes_config(tiny_cityscapes, tmp_path, capsys):
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / "cityscapes.yaml"),
            "--data.root",
            str(tiny_cityscapes),
            "--trainer.max_steps",
            "2",
            "--model.encoder",
            "xception_tiny",
            "--model.pretrained",
            "null",
            "--data.crop_size",
            "64",
            "--data.batch_size",
            "2",
            "--data.num_workers",
            "0",
            "--trainer.accelerator",
            "cpu",
            "--trainer.val_check_interval",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger.save_dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "val: per-class IoU after step 2" in out
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1  # the config logs to W&B (offline here)
    assert "traffic light" in out and "bicycle" in out
    assert re.search(r"Best checkpoint \(val/mIoU = [\d.]+\): \S+\.ckpt", out)


def test_synthetic_cityscapes_is_deterministic(tmp_path):
    import hashlib

    def digest(root):
        files = sorted(p for p in root.rglob("*.png"))
        return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()

    a = make_synthetic_cityscapes(tmp_path / "a", num_train=2, num_val=1, height=32, seed=5)
    b = make_synthetic_cityscapes(tmp_path / "b", num_train=2, num_val=1, height=32, seed=5)
    c = make_synthetic_cityscapes(tmp_path / "c", num_train=2, num_val=1, height=32, seed=6)
    assert digest(a) == digest(b) != digest(c)


def test_coarse_adds_train_extra(tiny_cityscapes, tmp_path):
    import shutil

    root = tmp_path / "cs"
    shutil.copytree(tiny_cityscapes, root)
    for image in (root / "leftImg8bit" / "train").glob("*/*.png"):  # make a train_extra split with gtCoarse labels
        city = image.parent.name
        (root / "leftImg8bit" / "train_extra" / city).mkdir(parents=True, exist_ok=True)
        (root / "gtCoarse" / "train_extra" / city).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / "leftImg8bit" / "train_extra" / city / image.name)
        label = root / "gtFine" / "train" / city / image.name.replace("_leftImg8bit", "_gtFine_labelIds")
        shutil.copy(
            label, root / "gtCoarse" / "train_extra" / city / image.name.replace("_leftImg8bit", "_gtCoarse_labelIds")
        )
    fine = CityscapesDataModule(root=str(root), crop_size=32, num_workers=0)
    coarse = CityscapesDataModule(root=str(root), coarse=True, crop_size=32, num_workers=0)
    fine.setup("fit")
    coarse.setup("fit")
    assert len(fine.train_set) == 6 and len(coarse.train_set) == 12
    assert len(coarse.val_set) == 3
