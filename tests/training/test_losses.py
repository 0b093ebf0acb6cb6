"""segkit.training.losses: every term ignores label 255 completely (value and gradient), cross-entropy's class
weights and label smoothing against PyTorch's own mean, hard-pixel mining, the global-batch normalization, `auto`
weights on a known histogram."""

import math

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from segkit.training.losses import LOSS_NAMES, SegmentationLoss, enet_class_weights, hard_pixel_cross_entropy

K = 4


def _batch(seed=0, ignored=0.3):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, K, 9, 11, generator=gen, dtype=torch.float64)
    target = torch.randint(0, K, (2, 9, 11), generator=gen)
    target[torch.rand(target.shape, generator=gen) < ignored] = 255
    return logits, target


def _loss_and_grad(loss, logits, target):
    logits = logits.clone().requires_grad_(True)
    value = loss(logits, target)
    value.backward()
    return value.detach(), logits.grad


SINGLE_LABEL = [n for n in LOSS_NAMES if n != "binary_cross_entropy"]  # that one: tests/e2e/test_multilabel.py


@pytest.mark.parametrize("name", SINGLE_LABEL)
def test_every_loss_ignores_the_ignored_pixels_in_value_and_gradient(name):
    loss = SegmentationLoss({name: 1.0}, K).double()
    logits, target = _batch()
    ignored = target == 255
    value, grad = _loss_and_grad(loss, logits, target)
    assert math.isfinite(value) and value > 0
    changed = logits.clone()
    changed.permute(0, 2, 3, 1)[ignored] = 50 * torch.randn(int(ignored.sum()), K, dtype=torch.float64)
    value2, grad2 = _loss_and_grad(loss, changed, target)
    assert value2 == value  # exactly: the ignored logits take no part
    assert torch.equal(grad2, grad)
    assert grad.permute(0, 2, 3, 1)[ignored].abs().max() == 0
    assert grad.permute(0, 2, 3, 1)[~ignored].abs().max() > 0


@pytest.mark.parametrize("name", SINGLE_LABEL)
def test_a_batch_without_labelled_pixels_gives_zero_not_nan(name):
    loss = SegmentationLoss({name: 1.0}, K).double()
    logits, target = _batch()
    value, grad = _loss_and_grad(loss, logits, torch.full_like(target, 255))
    assert value == 0 and torch.isfinite(grad).all() and grad.abs().max() == 0


def test_weighted_smoothed_cross_entropy_is_pytorchs_mean():
    logits, target = _batch(1)
    weights = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    loss = SegmentationLoss({"cross_entropy": 1.0}, K, weights, label_smoothing=0.1).double()
    want = F.cross_entropy(logits, target, weights, ignore_index=255, label_smoothing=0.1)
    assert loss(logits, target) == pytest.approx(want.item(), rel=1e-12)


def test_a_weighted_sum_is_the_sum_of_its_terms():
    logits, target = _batch(2)
    loss = SegmentationLoss({"cross_entropy": 1.0, "dice": 0.5}, K, options={"dice": {"log_loss": True}}).double()
    dice = smp.losses.DiceLoss("multiclass", ignore_index=255, log_loss=True)(logits, target)
    want = F.cross_entropy(logits, target, ignore_index=255) + 0.5 * dice
    assert loss(logits, target) == pytest.approx(want.item(), rel=1e-12)


def test_cross_entropy_over_processes_is_one_mean_over_the_global_batch():
    """Two processes' shares (as DDP sums/averages them) equal the weighted mean over the concatenated batch, also
    when one process's crops hold far fewer labelled pixels."""
    (a, ta), (b, tb) = _batch(3, ignored=0.1), _batch(4, ignored=0.9)
    weights = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    loss = SegmentationLoss({"cross_entropy": 1.0}, K, weights).double()
    masses = []
    loss(a, ta, lambda t: masses.append(t) or t, 2), loss(b, tb, lambda t: masses.append(t) or t, 2)
    total = masses[0] + masses[1]
    shares = [loss(x, t, lambda _: total, 2) for x, t in ((a, ta), (b, tb))]
    want = F.cross_entropy(torch.cat([a, b]), torch.cat([ta, tb]), weights, ignore_index=255)
    assert sum(shares) / 2 == pytest.approx(want.item(), rel=1e-12)  # DDP averages over the 2 processes


def test_auto_weights_follow_the_enet_rule_on_a_known_histogram():
    counts = np.array([700, 200, 100, 0])
    share = counts / 1000
    raw = 1 / np.log(1.02 + share)  # 1.7848..., 4.6242..., 8.9135..., 50.4983...
    assert raw[0] == pytest.approx(1 / math.log(1.72)) and raw[3] == pytest.approx(1 / math.log(1.02))
    weights = enet_class_weights(counts)
    assert weights == pytest.approx(raw / (share * raw).sum())
    assert (share * weights).sum() == pytest.approx(1.0)  # the pixel-weighted mean is 1
    assert weights[2] / weights[0] == pytest.approx(math.log(1.72) / math.log(1.12))
    with pytest.raises(ValueError, match="no labelled pixel"):
        enet_class_weights(np.zeros(3))


def test_loss_configuration_errors_name_the_setting():
    with pytest.raises(
        ValueError, match="model.loss: unknown loss 'dic'; choose from cross_entropy, binary_cross_entropy, dice"
    ):
        SegmentationLoss({"dic": 1.0}, K)
    with pytest.raises(ValueError, match="model.loss_options.focal: .*gama"):
        SegmentationLoss({"focal": 1.0}, K, options={"focal": {"gama": 2}})
    with pytest.raises(ValueError, match="model.loss_options.dice.ignore_index is set by segkit"):
        SegmentationLoss({"dice": 1.0}, K, options={"dice": {"ignore_index": 0}})
    with pytest.raises(ValueError, match="model.class_weights has 3 values for 4 classes"):
        SegmentationLoss({"cross_entropy": 1.0}, K, torch.ones(3))


def test_hard_pixel_mining_keeps_the_largest_losses():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0, 0] = 255
    plain = hard_pixel_cross_entropy(logits, target)
    assert torch.isclose(plain, F.cross_entropy(logits, target, ignore_index=255))
    losses = F.cross_entropy(logits, target, ignore_index=255, reduction="none").flatten()
    top = losses.sort(descending=True).values[:10].mean()  # 25% of 40 pixels
    assert torch.isclose(hard_pixel_cross_entropy(logits, target, 25.0), top)
