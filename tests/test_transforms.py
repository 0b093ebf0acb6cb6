"""segkit.data.transforms: the training pipeline's padding, scales and seeds, the official stepped scales, and the
evaluation pipeline that keeps labels as they are."""

import numpy as np
import pytest
import torch

from segkit.data import (
    VOCSegmentation,
    eval_transform,
    train_transform,
)
from segkit.data.transforms import official_scales, seed_transform


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
