"""Data tests: the synthetic set, the VOC reader, the albumentations pipelines, colours, prediction files, what
a DataModule declares, and clear errors."""

import hashlib
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segkit.data import (
    SYNTHETIC_CLASSES,
    CityscapesDataModule,
    CityscapesPredictionFiles,
    PredictionFiles,
    SyntheticVOCDataModule,
    VOCDataModule,
    VOCSegmentation,
    cityscapes_palette,
    eval_transform,
    make_synthetic_voc,
    read_label_png,
    train_transform,
    voc_palette,
    write_label_png,
)
from segkit.data.transforms import official_scales, seed_transform
from segkit.metrics import ConfusionMatrix, segmentation_scores


def _digest(folder):
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_synthetic_is_deterministic_and_in_voc_layout(tmp_path):
    a = make_synthetic_voc(tmp_path / "a", num_train=4, num_val=2, size_range=(64, 80), seed=3)
    b = make_synthetic_voc(tmp_path / "b", num_train=4, num_val=2, size_range=(64, 80), seed=3)
    c = make_synthetic_voc(tmp_path / "c", num_train=4, num_val=2, size_range=(64, 80), seed=4)
    assert _digest(a) == _digest(b) != _digest(c)
    assert (a / "ImageSets/Segmentation/train.txt").read_text().split() == [f"synth_train_{i:05d}" for i in range(4)]
    with Image.open(a / "SegmentationClass/synth_val_00000.png") as mask:
        assert mask.mode == "P"  # palette PNG, as VOC
        assert mask.getpalette()[3:6] == [128, 0, 0]
        values = set(np.unique(np.array(mask)).tolist())
    assert values <= set(range(len(SYNTHETIC_CLASSES))) | {255}
    assert 255 in values  # object borders are ignored, as in VOC
    assert (a / "JPEGImages/synth_val_00000.jpg").is_file()


def test_synthetic_generation_started_twice_at_once(tmp_path):
    """Two runs that generate the same set in one fresh folder at the same moment: one writes it, the other
    waits and reuses it; both succeed (without the lock, 200 images were enough for one to crash on the
    other's partial folder)."""
    import subprocess
    import sys

    code = (
        "import sys; from segkit.data import make_synthetic_voc; "
        "make_synthetic_voc(sys.argv[1], num_train=200, num_val=8, size_range=(64, 96), seed=3); print('ok')"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "voc")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all(rc == 0 and out.strip() == "ok" for out, _, rc in results), [err[-2000:] for _, err, _ in results]
    voc = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    assert len(list((voc / "JPEGImages").glob("*.jpg"))) == 208 and not list(tmp_path.glob("voc/*.partial"))


def test_synthetic_never_overwrites_foreign_data(tmp_path):
    (tmp_path / "VOCdevkit").mkdir()
    (tmp_path / "VOCdevkit" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not written by segkit"):
        make_synthetic_voc(tmp_path, num_train=2, num_val=1)
    assert (tmp_path / "VOCdevkit" / "mine.txt").read_text() == "user data"


def test_voc_palette_matches_devkit():
    pal = voc_palette()
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[15].tolist() == [192, 128, 128]  # person
    assert pal[255].tolist() == [224, 224, 192]  # the border colour of VOC masks


def test_train_pipeline_pads_mask_with_255():
    image = np.full((40, 50, 3), 200, np.uint8)
    mask = np.ones((40, 50), np.uint8)
    t = train_transform(64, scale_range=(1.0, 1.0))
    out = t(image=image, mask=mask)
    img, m = out["image"], out["mask"]
    assert img.shape == (3, 64, 64) and img.dtype == torch.float32
    assert m.shape == (64, 64) and m.dtype == torch.uint8
    assert (m == 255).sum() == 64 * 64 - 40 * 50
    assert (m == 1).sum() == 40 * 50
    # padded image pixels hold the mean pixel (127.5 rounded to 128 in uint8), which normalizes to ~0
    assert torch.allclose(img[:, m == 255], torch.zeros(1), atol=1 / 255)
    assert torch.allclose(img[:, m == 1], torch.tensor(200 / 127.5 - 1), atol=1e-6)


def test_train_pipeline_scales_with_nearest_masks():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    mask = rng.choice(np.array([0, 3, 255], np.uint8), size=(100, 120))
    t = train_transform(48, scale_range=(0.5, 2.0))
    for _ in range(10):
        m = t(image=image, mask=mask)["mask"]
        assert m.shape == (48, 48)
        assert set(torch.unique(m).tolist()) <= {0, 3, 255}  # no interpolated label values


def test_stepped_scales_are_the_official_draw():
    """scale_step 0.25 (official train.py): each of 0.5, 0.75, ..., 2.0 with equal probability; the scaled side
    is rounded down (official: tf.cast(float side * scale, int32)). Seen through the mask: a 20x20 mask of 1s in a
    40x40 crop keeps int(20 * scale)^2 labelled pixels, the rest is padding (255)."""
    assert official_scales(0.5, 2.0, 0.25) == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert official_scales(0.5, 1.9, 0.25) == pytest.approx([0.5, 0.78, 1.06, 1.34, 1.62, 1.9])  # int(6.6) = 6 steps
    image, mask = np.full((20, 20, 3), 90, np.uint8), np.ones((20, 20), np.uint8)

    def sides(t, n=700):
        seed_transform(t, 5)
        return [round(float((t(image=image, mask=mask)["mask"] == 1).sum()) ** 0.5) for _ in range(n)]

    drawn = sides(train_transform(40, (0.5, 2.0), scale_step=0.25))
    counts = {side: drawn.count(side) for side in set(drawn)}
    assert sorted(counts) == [10, 15, 20, 25, 30, 35, 40]  # int(20 * s) for the 7 scales
    assert all(abs(c / len(drawn) - 1 / 7) < 0.04 for c in counts.values()), counts  # seeded; 3 standard deviations
    assert len(set(sides(train_transform(40, (0.5, 2.0)), 100))) > 15  # step 0: any scale
    with pytest.raises(ValueError, match="data.scale_step must be >= 0"):
        train_transform(40, (0.5, 2.0), scale_step=-0.25)


def test_eval_pipeline_keeps_labels(tiny_voc):
    ds = VOCSegmentation(tiny_voc, "val", num_classes=5, transform=eval_transform())
    raw_image, raw_mask = ds.load(0)
    sample = ds[0]
    assert sample["image"].shape == (3, *raw_mask.shape)
    assert sample["mask"].dtype == torch.uint8  # widened to int64 on the device (SegmentationTask)
    assert torch.equal(sample["mask"], torch.from_numpy(raw_mask))


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


def test_colour_baseline_fails_on_synthetic(tmp_path):
    """A per-pixel colour classifier (nearest class-mean RGB) must score below 0.5 mIoU: classes need context."""
    root = tmp_path / "synth"
    make_synthetic_voc(root, num_train=60, num_val=30, seed=0)
    k = len(SYNTHETIC_CLASSES)
    sums, counts = np.zeros((k, 3)), np.zeros(k)
    for image, mask in (VOCSegmentation(root, "train", num_classes=k).load(i) for i in range(60)):
        for c in range(k):
            sel = mask == c
            sums[c] += image[sel].sum(0)
            counts[c] += sel.sum()
    means = sums / counts[:, None]
    metric = ConfusionMatrix(k)
    val = VOCSegmentation(root, "val", num_classes=k)
    for i in range(len(val)):
        image, mask = val.load(i)
        dist = ((image[:, :, None, :].astype(float) - means[None, None]) ** 2).sum(-1)
        metric.update(torch.from_numpy(dist.argmin(-1)), torch.from_numpy(mask).long())
    miou = segmentation_scores(metric.compute())["mIoU"]
    assert miou < 0.5, miou


def test_seeded_transforms_draw_independently():
    """Seeded per image, the random scale, crop position and flip must not be tied to each other (albumentations
    gives every transform of a pipeline the same seed; seed_transform does not)."""
    t = train_transform(8, (0.5, 2.0))
    scale, crop, flip = t.transforms[0], t.transforms[2], t.transforms[3]
    image, mask = np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40), np.uint8)
    draws = []
    for seed in range(400):
        seed_transform(t, seed)
        s = scale.get_params()["scale"]
        h_start = crop.py_random.random()
        flipped = flip.py_random.random() < 0.5
        draws.append((s, h_start, flipped))
        seed_transform(t, seed)
        t(image=image, mask=mask)  # the pipeline itself runs with these seeds
    s, h, f = (np.array(x, float) for x in zip(*draws))
    assert abs(np.corrcoef(s, f)[0, 1]) < 0.2 and abs(np.corrcoef(s, h)[0, 1]) < 0.2
    assert 0.4 < f.mean() < 0.6
    assert len({round(x, 9) for x in s}) == 400  # different seeds, different scales


def test_colorize_and_overlay():
    from segkit.data.visualize import colorize, overlay

    mask = np.array([[0, 1], [15, 255]], np.uint8)
    assert colorize(mask).tolist() == [[[0, 0, 0], [128, 0, 0]], [[192, 128, 128], [224, 224, 192]]]
    cs = colorize(np.array([[0, 10, 255]], np.uint8), "cityscapes")
    assert cs.tolist() == [[[128, 64, 128], [70, 130, 180], [0, 0, 0]]]  # road, sky, ignored
    image = np.full((2, 2, 3), 100, np.uint8)
    out = overlay(image, mask, alpha=0.5)
    assert out[0, 1].tolist() == [114, 50, 50]  # (100 + 128) / 2, (100 + 0) / 2
    assert out[1, 1].tolist() == [100, 100, 100]  # ignored pixels keep the image


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


def test_prediction_files_encode_name_and_read_back(tmp_path):
    labels = np.array([[0, 1, 13], [18, 255, 2]], np.uint8)
    voc, cs = PredictionFiles(), CityscapesPredictionFiles()
    tmp_path = tmp_path / "voc"
    tmp_path.mkdir()
    assert voc.write(tmp_path, "2007_000033", labels).name == "2007_000033.png"
    assert np.array_equal(voc.read(tmp_path / "2007_000033.png", 21), labels)
    (tmp_path.parent / "cs").mkdir()
    path = cs.write(tmp_path.parent / "cs", "aachen_000000_000019", labels)
    assert path.name == "aachen_000000_000019_labelIds.png"
    # label ids as the official server takes them (road 7, sidewalk 8, car 26, bicycle 33; void -> 0)
    assert read_label_png(path).tolist() == [[7, 8, 26], [33, 0, 11]]
    assert np.array_equal(cs.read(path, 19), labels)
    assert cs.key(tmp_path / "aachen_000000_000019_leftImg8bit_pred.png") == "aachen_000000_000019"
    bad = labels.copy()
    bad[0, 0] = 21
    with pytest.raises(ValueError, match=r"2007_000033.png holds values \[21\]"):
        voc.decode(bad, tmp_path / "2007_000033.png", 21)
    assert voc.match(["2007_000033"], tmp_path) == [tmp_path / "2007_000033.png"]
    with pytest.raises(ValueError, match="1 images have no prediction"):
        voc.match(["2007_000033", "2007_000042"], tmp_path)


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

    from segkit.data import SyntheticVOCDataModule

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
