"""`segkit data check`: finds every planted problem (exit 1) and passes a clean tree (exit 0)."""

import shutil

import numpy as np
import pytest
from helpers import CONFIGS
from PIL import Image

from segkit.commands import main
from segkit.data import make_synthetic_cityscapes, voc_palette, write_label_png


def _check(config, root, capsys):
    """``segkit data check`` in this process: (exit status, what it printed)."""
    with pytest.raises(SystemExit) as done:
        main(["data", "check", "--config", str(CONFIGS / config), "--data.root", str(root), "--data.num_workers", "0"])
    printed = capsys.readouterr()
    return done.value.code, printed.out + printed.err


def test_clean_voc_tree_passes(tiny_voc, capsys):
    code, out = _check("voc.yaml", tiny_voc, capsys)
    assert code == 0, out
    assert "[train] 12 images" in out and "[val] 5 images" in out
    assert "background" in out and "aeroplane" in out and "no problems found" in out


def test_planted_voc_problems_are_all_found(tiny_voc, tmp_path, capsys):
    root = tmp_path / "voc"
    shutil.copytree(tiny_voc, root)
    voc = root / "VOCdevkit" / "VOC2012"
    ids = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    jpg = voc / "JPEGImages" / f"{ids[0]}.jpg"
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])  # truncated JPEG
    (voc / "JPEGImages" / f"{ids[1]}.jpg").write_bytes(b"not an image at all")  # corrupt JPEG
    png = voc / "SegmentationClass" / f"{ids[2]}.png"
    png.write_bytes(png.read_bytes()[:-40])  # truncated PNG
    write_label_png(
        voc / "SegmentationClass" / f"{ids[3]}.png", np.zeros((7, 9), np.uint8), voc_palette()
    )  # size mismatch
    with Image.open(voc / "SegmentationClass" / f"{ids[4]}.png") as im:
        bad = np.array(im)
    bad[0, 0] = 33
    write_label_png(voc / "SegmentationClass" / f"{ids[4]}.png", bad, voc_palette())  # value outside 0..20, 255
    (voc / "SegmentationClass" / f"{ids[5]}.png").unlink()  # missing mask
    code, out = _check("voc.yaml", root, capsys)
    assert code == 1
    assert "6 problem(s) found" in out, out
    assert f"truncated JPEG file (no end-of-image marker): {jpg}" in out
    assert f"cannot decode image file: {voc / 'JPEGImages' / ids[1]}.jpg" in out
    assert f"{ids[2]}.png" in out and "truncated" in out.lower()
    assert f"size mismatch: image {voc / 'JPEGImages' / ids[3]}.jpg" in out
    assert f"{ids[4]}.png holds values [33]" in out
    assert f"mask file not found: {voc / 'SegmentationClass' / ids[5]}.png" in out


def test_cityscapes_check(tmp_path, capsys):
    root = tmp_path / "cs"
    make_synthetic_cityscapes(root, num_train=3, num_val=2, height=32, seed=0)
    code, out = _check("cityscapes.yaml", root, capsys)
    assert code == 0, out
    assert "[train] 3 images, height 32-32, width 64-64" in out and "traffic light" in out
    label = next((root / "gtFine" / "val").glob("*/*_labelIds.png"))
    arr = np.array(Image.open(label))
    arr[0, 0] = 34  # not a Cityscapes label id
    Image.fromarray(arr, mode="L").save(label)
    code, out = _check("cityscapes.yaml", root, capsys)
    assert code == 1 and f"{label.name} holds values [34]" in out


def test_missing_root(tmp_path, capsys):
    code, out = _check("voc.yaml", tmp_path / "nothing", capsys)
    assert code == 1 and "VOCdevkit/VOC2012/JPEGImages" in out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_errors_from_workers_name_the_file(tiny_voc, tmp_path, num_workers):
    """A bad file met during training raises in the main process with the file's path in the message."""
    from segkit.data import VOCDataModule

    root = tmp_path / "voc"
    shutil.copytree(tiny_voc, root)
    voc = root / "VOCdevkit" / "VOC2012"
    for name in (voc / "ImageSets/Segmentation/train.txt").read_text().split():
        (voc / "JPEGImages" / f"{name}.jpg").write_bytes(b"garbage")
    dm = VOCDataModule(root=str(root), batch_size=2, crop_size=32, num_workers=num_workers)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"cannot decode image file: .*\.jpg"):
        next(iter(dm.train_dataloader()))
