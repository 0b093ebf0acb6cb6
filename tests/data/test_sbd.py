"""SBD conversion: SegmentationClassAug reproduces the .mat labels, train_aug.txt follows the official rule."""

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from segkit.commands import main
from segkit.data import voc_palette, write_label_png
from segkit.data.sbd import convert_sbd


@pytest.fixture
def sbd_and_voc(tmp_path):
    rng = np.random.default_rng(0)
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    voc = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    mats = {}
    for name in ["a1", "a2", "a3", "b1", "b2", "v1"]:  # v1 is in VOC val: must not enter train_aug
        seg = rng.integers(0, 21, size=(int(rng.integers(20, 40)), int(rng.integers(20, 40))), dtype=np.uint8)
        savemat(sbd / "cls" / f"{name}.mat", {"GTcls": {"Segmentation": seg, "CategoriesPresent": np.unique(seg)}})
        mats[name] = seg
    (sbd / "train.txt").write_text("a1\na2\na3\nv1\n")
    (sbd / "val.txt").write_text("b1\nb2\n")
    voc_mask = np.full((10, 12), 255, np.uint8)
    voc_mask[2:8, 2:10] = 15
    write_label_png(voc / "SegmentationClass" / "t1.png", voc_mask, voc_palette())  # VOC train only
    write_label_png(voc / "SegmentationClass" / "a2.png", voc_mask, voc_palette())  # in both: VOC's own annotation wins
    (voc / "ImageSets/Segmentation/train.txt").write_text("t1\na2\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("v1\n")
    return tmp_path, voc, mats, voc_mask


def test_conversion_reproduces_mat_labels(sbd_and_voc):
    root, voc, mats, voc_mask = sbd_and_voc
    counts = convert_sbd(root, root / "voc", progress=False)
    names = (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split()
    assert names == ["a1", "a2", "a3", "b1", "b2", "t1"]  # SBD train + val + VOC train - VOC val
    assert counts == {"train_aug": 6, "written": 6, "kept": 0}
    for name in ["a1", "a3", "b1", "b2"]:
        with Image.open(voc / "SegmentationClassAug" / f"{name}.png") as im:
            assert im.mode == "L"
            assert np.array_equal(np.array(im), mats[name])
    for name in ["a2", "t1"]:
        with Image.open(voc / "SegmentationClassAug" / f"{name}.png") as im:
            assert np.array_equal(np.array(im), voc_mask)
    # idempotent: a second run writes nothing and gives the same list
    again = convert_sbd(root, root / "voc", progress=False)
    assert again == {"train_aug": 6, "written": 0, "kept": 6}
    assert (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split() == names


def test_cli_and_errors(sbd_and_voc, capsys, tmp_path):
    root, voc, _, _ = sbd_and_voc
    main(["data", "sbd", "--sbd_root", str(root), "--voc_root", str(root / "voc")])
    assert "train_aug.txt: 6 images" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="benchmark_RELEASE/dataset/cls"):
        convert_sbd(tmp_path / "nowhere", root / "voc")
