"""segkit.data.base: strict reading of images and masks (bad files named, JPEG ends found), label PNGs, and the
official resize_to_range."""

import cv2
import numpy as np
import pytest
from PIL import Image

from segkit.data import (
    SyntheticVOCDataModule,
    VOCSegmentation,
    read_label_png,
    voc_palette,
    write_label_png,
)


def _copy_voc(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst / "VOCdevkit" / "VOC2012"


def test_bad_files_raise_errors_naming_them(tiny_voc, tmp_path):
    voc = _copy_voc(tiny_voc, tmp_path / "voc")
    ids = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    ds = VOCSegmentation(tmp_path / "voc", "train", num_classes=5)
    # corrupt JPEG
    (voc / "JPEGImages" / f"{ids[0]}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ValueError, match=f"{ids[0]}.jpg"):
        ds[0]
    # size mismatch
    write_label_png(voc / "SegmentationClass" / f"{ids[1]}.png", np.zeros((10, 10), np.uint8), voc_palette())
    with pytest.raises(ValueError, match=f"size mismatch.*{ids[1]}"):
        ds[1]
    # label outside the class range
    image = cv2.imread(str(voc / "JPEGImages" / f"{ids[2]}.jpg"))
    bad = np.zeros(image.shape[:2], np.uint8)
    bad[0, 0] = 7
    write_label_png(voc / "SegmentationClass" / f"{ids[2]}.png", bad, voc_palette())
    with pytest.raises(ValueError, match=rf"{ids[2]}.png holds values \[7\]"):
        ds[2]
    # missing mask
    (voc / "SegmentationClass" / f"{ids[3]}.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{ids[3]}.png"):
        ds[3]


def test_jpeg_ends_are_found_by_walking_segments(tmp_path):
    """Bytes after a JPEG's end (cameras, editors) are accepted; a cut file is not, also when an EXIF thumbnail
    (a JPEG inside the JPEG, with its own end marker) precedes the cut; an empty file is named."""
    from segkit.data.base import jpeg_end, read_image

    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    thumb = cv2.imencode(".jpg", image[::4, ::4])[1].tobytes()
    app1 = b"Exif\x00\x00" + thumb
    with_thumb = jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]
    want = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    for name, data in (("plain", jpeg), ("thumb", with_thumb)):
        assert jpeg_end(data) == len(data)
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(data + bytes(300))  # e.g. padding an editor left after the end marker
        assert np.array_equal(read_image(path), want), name
        for cut in (len(data) // 2, len(data) - 2):
            path.write_bytes(data[:cut])
            with pytest.raises(ValueError, match=f"truncated JPEG file \\(no end-of-image marker\\): {path}"):
                read_image(path)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=f"empty image file \\(0 bytes\\): {empty}"):
        read_image(empty)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64) + b"IEND\xaeB`\x82")
    with pytest.raises(ValueError, match=f"cannot decode image file: {garbage}"):
        read_image(garbage)


def test_label_pngs_round_trip_with_and_without_palette(tmp_path):
    labels = np.random.default_rng(0).integers(0, 21, (5, 7)).astype(np.uint8)
    labels[0, 0] = 255
    write_label_png(tmp_path / "p.png", labels, voc_palette())
    write_label_png(tmp_path / "l.png", labels)
    with Image.open(tmp_path / "p.png") as p, Image.open(tmp_path / "l.png") as g:
        assert p.mode == "P" and g.mode == "L"
        assert np.array(p.getpalette(), np.uint8).reshape(-1, 3)[:21].tolist() == voc_palette()[:21].tolist()
    assert np.array_equal(read_label_png(tmp_path / "p.png"), labels)
    assert np.array_equal(read_label_png(tmp_path / "l.png"), labels)


def test_official_resize_to_range_sizes_and_values(tmp_path):
    """preprocess_utils.resize_to_range as ade20k.md runs it (min = max = 513, factor 16), computed by hand, and
    TF's aligned-corner resizing: a linear ramp stays exactly linear (bilinear), labels take roundf(i * (in - 1) /
    (out - 1)) (nearest)."""
    from segkit.data.base import official_resize, official_resize_size

    assert official_resize_size(375, 500, 513, 513, 16) == (385, 513)  # 375 * 513 / 500 = 384.75 -> 384 -> 385
    assert official_resize_size(100, 50, 513, 513, 16) == (513, 257)  # 50 * 5.13 = 256.5 -> 256 -> 257
    assert official_resize_size(600, 600, 513, 513, None) == (513, 513)
    assert official_resize_size(300, 400, 350, 1000, None) == (350, 466)  # the shorter side to min: 466.67 -> 466
    ramp = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (5, 1))  # (5, 25): 0, 10, ..., 240
    image, mask = np.repeat(ramp[..., None], 3, 2), np.tile(np.arange(25, dtype=np.uint8), (5, 1))
    out_image, out_mask = official_resize(image, mask, 9, 49)  # 5 -> 9 rows: x1.8, 25 -> 45 columns (<= 49)
    assert out_image.shape == (9, 45, 3) and out_mask.shape == (9, 45)
    src = np.arange(45) * 24 / 44
    assert np.array_equal(out_image[4, :, 1], np.round(src * 10).astype(np.uint8))
    assert np.array_equal(out_mask[0], np.floor(src + 0.5).astype(np.uint8))

    dm = SyntheticVOCDataModule(
        str(tmp_path),
        num_train=2,
        num_val=1,
        size_range=(60, 80),
        num_workers=0,
        resize_to_range=(65, 65),
        resize_factor=16,
    )
    dm.prepare_data()
    image, mask = dm.split_dataset("val").load(0)  # what training, validation, eval and data check read
    assert max(mask.shape) == 65 and image.shape[:2] == mask.shape and (min(mask.shape) - 1) % 16 == 0
