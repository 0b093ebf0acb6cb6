"""Data tests: the synthetic set, the VOC reader, the albumentations pipelines and clear errors."""
import hashlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segkit.data import (
    SYNTHETIC_CLASSES, VOCDataModule, VOCSegmentation, eval_transform, make_synthetic_voc, pad_collate,
    train_transform, voc_palette,
)
from segkit.data.datamodule import TrainBatchSampler
from segkit.data.synthetic import write_palette_png
from segkit.data.transforms import seed_transform
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


def test_eval_pipeline_keeps_labels(tiny_voc):
    ds = VOCSegmentation(tiny_voc, "val", num_classes=5, transform=eval_transform())
    raw_image, raw_mask = ds.load(0)
    sample = ds[0]
    assert sample["image"].shape == (3, *raw_mask.shape)
    assert sample["mask"].dtype == torch.uint8  # widened to int64 on the device (SegmentationTask)
    assert torch.equal(sample["mask"], torch.from_numpy(raw_mask))


def test_pad_collate_pads_with_ignore():
    a = {"image": torch.ones(3, 4, 5), "mask": torch.zeros(4, 5, dtype=torch.long), "name": "a"}
    b = {"image": torch.ones(3, 6, 3), "mask": torch.ones(6, 3, dtype=torch.long), "name": "b"}
    batch = pad_collate([a, b])
    assert batch["image"].shape == (2, 3, 6, 5)
    assert batch["mask"].shape == (2, 6, 5)
    assert (batch["mask"][0, 4:] == 255).all() and (batch["mask"][1, :, 3:] == 255).all()
    assert (batch["image"][0, :, 4:] == 0).all()
    assert batch["size"].tolist() == [[4, 5], [6, 3]]


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
    write_palette_png(np.zeros((10, 10), np.uint8), voc / "SegmentationClass" / f"{ids[1]}.png")
    with pytest.raises(ValueError, match=f"size mismatch.*{ids[1]}"):
        ds[1]
    # label outside the class range
    image = cv2.imread(str(voc / "JPEGImages" / f"{ids[2]}.jpg"))
    bad = np.zeros(image.shape[:2], np.uint8)
    bad[0, 0] = 7
    write_palette_png(bad, voc / "SegmentationClass" / f"{ids[2]}.png")
    with pytest.raises(ValueError, match=rf"{ids[2]}.png holds values \[7\]"):
        ds[2]
    # missing mask
    (voc / "SegmentationClass" / f"{ids[3]}.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{ids[3]}.png"):
        ds[3]


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


def _first_batches(root, seed, num_workers, n=3):
    torch.manual_seed(seed)
    dm = VOCDataModule(root=str(root), batch_size=4, crop_size=48, num_workers=num_workers)
    dm.setup("fit")
    return [b["image"] for b, _ in zip(dm.train_dataloader(), range(n))]


def test_same_seed_same_augmentations_whatever_the_workers(tiny_voc):
    a, b, c = _first_batches(tiny_voc, 0, 0), _first_batches(tiny_voc, 0, 2), _first_batches(tiny_voc, 1, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # each image seeded by itself, not by its worker
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


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


def _stream(sampler_kw, steps, world, accumulate, start=0):
    """The global batches (sorted (index, seed) lists) of ``steps`` steps, gathered over all ranks."""
    per_rank = [list(TrainBatchSampler(**sampler_kw, rank=r, world_size=world, accumulate=accumulate,
                                       start_step=lambda: start)) for r in range(world)]
    out = []
    for step in range(steps):
        micro = [per_rank[r][step * accumulate + m] for r in range(world) for m in range(accumulate)]
        assert len({len(b) for b in micro}) == 1  # equal micro-batches
        out.append(sorted(x for b in micro for x in b))
    return out


def test_global_batches_do_not_depend_on_devices_or_accumulation():
    kw = dict(length=50, global_batch=8, seed=3)  # 6 steps per epoch, 2 images left out of each epoch
    one = _stream(kw, 6, 1, 1)
    for world, accumulate in [(2, 1), (4, 1), (1, 2), (2, 2), (2, 4)]:
        assert _stream(kw, 6, world, accumulate) == one, (world, accumulate)
    images = [i for batch in one for i, _ in batch]
    assert len(images) == len(set(images)) == 48  # an epoch: no image twice
    assert one != _stream(dict(kw, seed=4), 6, 1, 1)
    # the next epoch is reshuffled, with new augmentation seeds
    next_epoch = _stream(kw, 6, 1, 1, start=6)
    assert [i for i, _ in next_epoch[0]] != [i for i, _ in one[0]]
    assert {s for b in next_epoch for _, s in b}.isdisjoint({s for b in one for _, s in b})


def test_resumed_stream_continues_where_it_stopped_on_any_device_count():
    kw = dict(length=50, global_batch=8, seed=3)
    full = _stream(kw, 6, 1, 1)
    assert _stream(kw, 2, 2, 1, start=4) == full[4:]  # resumed at step 4 of 6, on 2 devices
    assert len(TrainBatchSampler(**kw, world_size=2)) == 6


def test_global_batch_must_divide_over_processes():
    with pytest.raises(ValueError, match="data.batch_size=16 .* 3 process"):
        TrainBatchSampler(100, 16, world_size=3)
    with pytest.raises(ValueError, match="multiple of 6"):
        TrainBatchSampler(100, 16, world_size=2, accumulate=3)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TrainBatchSampler(10, 16)


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


def test_loading_benchmark_runs():
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "bench_data.py"
    out = subprocess.run([sys.executable, str(tool), "--quick"], capture_output=True, text=True, check=True).stdout
    assert "VOC-size JPEG" in out and "Cityscapes-size PNG" in out
