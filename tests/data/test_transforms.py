"""segkit.data.transforms: the training pipeline's padding, scales and seeds, the official stepped scales, and the
evaluation pipeline that keeps labels as they are; the extras (rare-class crop, photometric augmentation)."""

import albumentations as A
import numpy as np
import pytest
import torch

from segkit.data import (
    VOCSegmentation,
    eval_transform,
    train_transform,
)
from segkit.data.transforms import BandBrightnessContrast, official_scales, seed_transform


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


def _crops(transform, image, mask, seeds):
    out = []
    for seed in seeds:
        seed_transform(transform, seed)
        out.append(transform(image=image, mask=mask))
    return out


def test_rare_class_crop_redraws_crops_that_one_class_fills():
    """A 40 px square of class 1 in a 160 px image of class 0, crop 48: most crops are class 0 alone. With
    cat_max_ratio 0.75 (mmsegmentation's) a crop is drawn again until no class fills 75% of it."""
    image = np.zeros((160, 160, 3), np.uint8)
    mask = np.zeros((160, 160), np.uint8)
    mask[60:100, 60:100] = 1

    def balanced(out):
        counts = np.bincount(out["mask"].numpy().ravel(), minlength=2)[:2]
        return counts.min() > 0 and counts.max() / counts.sum() < 0.75

    off = train_transform(48, (1.0, 1.0))
    on = train_transform(48, (1.0, 1.0), cat_max_ratio=0.75)
    share_off = np.mean([balanced(o) for o in _crops(off, image, mask, range(60))])
    share_on = np.mean([balanced(o) for o in _crops(on, image, mask, range(60))])
    assert share_off < 0.3 and share_on > 0.8, (share_off, share_on)
    # off (1.0): one draw, the crop albumentations' RandomCrop takes with the same seed
    plain = A.Compose([A.RandomCrop(48, 48), A.HorizontalFlip(p=0.5)])
    ours = A.Compose([train_transform(48, (1.0, 1.0)).transforms[2], A.HorizontalFlip(p=0.5)])
    for seed in range(5):
        a, b = _crops(plain, image, mask, [seed])[0], _crops(ours, image, mask, [seed])[0]
        assert np.array_equal(a["mask"], b["mask"])
    with pytest.raises(ValueError, match=r"data.cat_max_ratio must be in \(0, 1\]"):
        train_transform(48, cat_max_ratio=1.5)


def test_photometric_augmentation_is_seeded_and_keeps_the_geometry():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
    mask = rng.integers(0, 3, (64, 64)).astype(np.uint8)
    plain = train_transform(64, (1.0, 1.0))
    jitter = train_transform(64, (1.0, 1.0), photometric=True)
    changed = 0
    for seed in range(8):
        a, b, c = (_crops(t, image, mask, [seed])[0] for t in (plain, jitter, jitter))
        assert torch.equal(b["image"], c["image"])  # the same seed draws the same jitter
        assert torch.equal(a["mask"], b["mask"])  # geometry (scale, crop, flip) untouched by the extras
        changed += not torch.equal(a["image"], b["image"])
    assert 2 <= changed <= 8  # each image jittered with probability 0.5 (and blurred with 0.1)


def test_band_brightness_contrast_draws_per_band_at_any_depth():
    image = np.full((32, 32, 4), 20000, np.uint16)
    t = BandBrightnessContrast(0.125, 0.5, 65535.0, p=1.0)
    t.set_random_seed(3)
    out = t(image=image)["image"]
    assert out.dtype == np.uint16 and out.shape == image.shape
    per_band = out[0, 0]
    assert len(set(per_band.tolist())) == 4 and (out == per_band).all()  # one draw per band, the same everywhere
    assert (np.abs(per_band.astype(float) - 20000) <= 20000 * 0.5 + 0.125 * 65535 + 1).all()
