"""segkit.evaluation.analysis against independent computations: the official Boundary IoU code, hand-computed
shifts and thin structures, scipy's morphological dilation for the trimap, torchmetrics for the calibration error."""

import math

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from segkit.evaluation.analysis import (
    BoundaryIoU,
    CalibrationError,
    EvalAnalysis,
    PerImageScores,
    TrimapScores,
    boundary_distance,
    class_boundaries,
    void_distance,
)
from segkit.evaluation.analysis.boundaries import boundary_width
from segkit.evaluation.metrics import ConfusionMatrix, segmentation_scores


def official_mask_to_boundary(mask: np.ndarray, dilation: int) -> np.ndarray:
    """boundary-iou-api's ``mask_to_boundary`` (Cheng et al., 2021) with the dilation in pixels."""
    h, w = mask.shape
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=dilation)[1 : h + 1, 1 : w + 1]
    return mask - eroded


def square(h=100, w=100, top=20, left=20, side=40):
    labels = np.zeros((h, w), np.uint8)
    labels[top : top + side, left : left + side] = 1
    return labels


@pytest.mark.parametrize("dilation", [1, 3, 7])
def test_class_boundaries_equal_the_official_mask_to_boundary_for_every_class(dilation):
    rng = np.random.default_rng(dilation)
    labels = cv2.resize(rng.integers(0, 4, (9, 12)).astype(np.uint8), (61, 47), interpolation=cv2.INTER_NEAREST)
    labels[rng.random(labels.shape) < 0.02] = 255  # void pixels: another label for the contour
    got = class_boundaries(labels, dilation)
    for c in (0, 1, 2, 3, 255):
        want = official_mask_to_boundary((labels == c).astype(np.uint8), dilation).astype(bool)
        assert np.array_equal(got & (labels == c), want), c


def test_boundary_width_is_the_official_dilation():
    assert boundary_width(100, 100, 0.02) == 3  # round(0.02 * 141.4)
    assert boundary_width(513, 513, 0.02) == 15
    assert boundary_width(10, 10, 0.02) == 1  # at least one pixel


def test_a_square_shifted_by_two_pixels_boundary_iou_by_hand():
    """40 x 40 square, prediction shifted 2 px right, d = 3 (0.02 of the 100 x 100 diagonal). Each 3-pixel inner
    ring has 40^2 - 34^2 = 444 pixels; they share 6 rows x 38 columns at top and bottom, and 2 columns x 34 rows
    at the sides: 296. Boundary IoU = 296 / (444 + 444 - 296) = 0.5; mask IoU = 1520 / 1680 = 0.905."""
    truth, pred = square(), square(left=22)
    metric = BoundaryIoU(2, dilation_ratio=0.02)
    metric.update(pred, truth)
    assert metric.intersection[1] == 296 and metric.truth[1] == 444 and metric.predicted[1] == 444
    boundary = metric.compute()["per_class"][1].item()
    assert boundary == 0.5
    cm = ConfusionMatrix(2)
    cm.update(torch.from_numpy(pred)[None], torch.from_numpy(truth)[None])
    mask_iou = segmentation_scores(cm.compute())["per_class_iou"][1].item()
    assert mask_iou == pytest.approx(1520 / 1680)
    assert 1 - boundary > 4 * (1 - mask_iou)  # the shift costs Boundary IoU far more than mask IoU


def test_a_thin_structure_is_all_boundary():
    """A 2-pixel-wide line: every pixel lies on its contour, so Boundary IoU equals mask IoU (Cheng et al.)."""
    truth = np.zeros((64, 64), np.uint8)
    truth[30:32, 5:60] = 1
    pred = np.zeros_like(truth)
    pred[31:33, 5:50] = 1  # 1 px lower and 10 px shorter
    metric = BoundaryIoU(2)
    metric.update(pred, truth)
    inter, union = 45, 110 + 90 - 45
    assert metric.compute()["per_class"][1].item() == pytest.approx(inter / union)


def test_ignored_pixels_are_left_out_of_boundary_iou():
    truth, pred = square(), square()
    truth[:, 80:] = 255
    pred[:, 80:] = 1  # wrong where nothing is labelled: no effect
    metric = BoundaryIoU(2)
    metric.update(pred, truth)
    assert metric.compute()["per_class"].tolist() == [1.0, 1.0]


def disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x**2 + y**2 <= radius**2


@pytest.mark.parametrize("width", [1, 2, 5, 10])
def test_the_void_band_is_the_dilation_of_the_void_mask_by_a_disk(width):
    rng = np.random.default_rng(width)
    target = rng.integers(0, 3, (50, 70)).astype(np.uint8)
    void = np.zeros(target.shape, bool)
    void[10:12, 5:60] = True
    void[30:45, 40] = True
    void[rng.random(target.shape) < 0.003] = True
    target[void] = 255
    want = ndimage.binary_dilation(void, structure=disk(width)) & ~void
    assert np.array_equal((void_distance(target) <= width) & ~void, want)


def test_a_trimap_band_by_hand():
    """A void column at x = 10 in a 6 x 30 image: the band of width w is w columns on each side."""
    target = np.zeros((6, 30), np.uint8)
    target[:, 15:] = 1
    target[:, 10] = 255
    pred = np.zeros_like(target)  # wrong on class 1 (x >= 15), right on class 0
    metric = TrimapScores(2, [2, 5], "void")
    metric.update(pred, target)
    got = metric.compute()
    assert got["pixels"] == {"2": 6 * 4, "5": 6 * 10}
    assert got["mIoU"]["2"] == 1.0  # x in 8..12 minus 10: all class 0, predicted 0
    # width 5: x 5..15 minus 10: class 0 at 5..9, 11..14 (54 px), class 1 at 15 (6 px, predicted 0)
    assert got["mIoU"]["5"] == pytest.approx((54 / 60 + 0) / 2)


def test_the_boundary_band_without_void_holds_w_pixels_on_each_side():
    target = np.zeros((4, 20), np.uint8)
    target[:, 10:] = 1
    distance = boundary_distance(target, 2)
    for width in (1, 3):
        band = distance <= width
        assert np.array_equal(np.flatnonzero(band[0]), np.arange(10 - width, 10 + width))
    assert np.isinf(boundary_distance(np.zeros((5, 5), np.uint8), 2)).all()
    assert np.isinf(void_distance(np.zeros((5, 5), np.uint8))).all()


def test_calibration_error_equals_torchmetrics():
    from torchmetrics.classification import MulticlassCalibrationError

    torch.manual_seed(0)
    k, bins = 5, 10
    target = torch.randint(0, k, (2, 40, 50))
    target[0, :3] = 255
    logits = torch.randn(2, k, 40, 50) * 2
    logits.scatter_add_(1, target.clamp(max=k - 1)[:, None], torch.full((2, 1, 40, 50), 1.5))
    probs = logits.softmax(1)
    ours = CalibrationError(k, bins)
    for p, t in zip(probs, target):
        ours.update(p, t)
    got = ours.compute()
    labelled = target != 255
    flat = probs.permute(0, 2, 3, 1)[labelled]
    theirs = MulticlassCalibrationError(k, n_bins=bins, norm="l1")(flat, target[labelled])
    assert got["ECE"] == pytest.approx(theirs.item(), abs=1e-6)
    nll = torch.nn.functional.nll_loss(flat.log(), target[labelled])
    assert got["NLL"] == pytest.approx(nll.item(), rel=1e-6)
    assert got["pixels"] == int(labelled.sum()) == sum(got["reliability"]["count"])


def test_calibration_bins_are_closed_on_the_right():
    """Top probabilities 0.5, 1.0, 1.0 and 0.55 in 2 bins: (0, 0.5] holds 0.5, (0.5, 1] the others."""
    probs = torch.tensor([[0.5, 1.0, 0.0, 0.55], [0.5, 0.0, 1.0, 0.45]]).reshape(2, 1, 4)
    target = torch.tensor([[1, 0, 0, 0]])  # argmax of the tie is class 0: wrong; then right, wrong, right
    metric = CalibrationError(2, 2)
    metric.update(probs, target)
    got = metric.compute()
    assert got["reliability"]["count"] == [1, 3]
    assert got["reliability"]["accuracy"] == [0.0, pytest.approx(2 / 3)]
    assert got["ECE"] == pytest.approx((1 * 0.5 + 3 * abs(2 / 3 - 2.55 / 3)) / 4)


def test_per_image_counts_sum_to_the_confusion_matrix():
    rng = np.random.default_rng(0)
    rows, cm = PerImageScores(4, keep=2), ConfusionMatrix(4)
    for i in range(6):
        target = torch.from_numpy(rng.integers(0, 5, (20, 30)).astype(np.uint8))
        target[target == 4] = 255
        pred = torch.from_numpy(rng.integers(0, 4, (20, 30)).astype(np.uint8))
        if i == 3:
            pred = target.clone().clamp(max=3)  # a perfect image
        rows.update(i, f"im{i}", pred, target)
        cm.update(pred[None], target[None])
    intersection, union = rows.totals()
    confmat = cm.compute().numpy()
    assert np.array_equal(intersection, np.diag(confmat))
    assert np.array_equal(union, confmat.sum(0) + confmat.sum(1) - np.diag(confmat))
    perfect = rows.rows[3]
    assert perfect.miou == 1.0 and perfect.pixel_accuracy == 1.0
    worst = rows.worst()
    assert [row.index for row, _ in worst] == sorted(range(6), key=lambda i: (rows.rows[i].miou, i))[:2]
    assert all(math.isfinite(row.miou) for row, _ in worst)


def test_eval_analysis_results_can_be_read_twice():
    analysis = EvalAnalysis(2, per_image=True, trimap_widths=(2,), boundary_ratio=0.02, calibration_bins=5)
    truth, pred = square(), square(left=22)
    probs = torch.from_numpy(np.stack([pred == 0, pred == 1]).astype(np.float32))
    analysis.update(0, "a", torch.from_numpy(pred), torch.from_numpy(truth), probs)
    first = analysis.compute(["bg", "square"])
    assert first["boundary_iou"]["per_class"]["square"] == 0.5
    assert analysis.compute(["bg", "square"]) == first


def multilabel(*maps: np.ndarray) -> torch.Tensor:
    """(K, H, W) from each class's (H, W) map."""
    return torch.from_numpy(np.stack(maps).astype(np.uint8))


def test_a_multilabel_head_is_measured_per_class_by_hand():
    """Class a: the square shifted by 2 px (Boundary IoU 0.5, mask IoU 1520 / 1680, 160 wrong pixels, as above);
    class b: a square predicted exactly (1.0). Each class is its own mask against its own ground truth."""
    truth = multilabel(square(), square(top=70, left=60, side=20))
    pred = multilabel(square(left=22), square(top=70, left=60, side=20)).bool()
    analysis = EvalAnalysis(2, multilabel=True, per_image=True, boundary_ratio=0.02)
    analysis.update(0, "im", pred, truth)
    got = analysis.compute(["a", "b"])
    assert got["boundary_iou"]["per_class"] == {"a": 0.5, "b": 1.0} and got["boundary_iou"]["mean"] == 0.75
    (row,) = analysis.per_image.rows
    assert row.intersection.tolist() == [1520, 400] and row.union.tolist() == [1680, 400]
    assert row.miou == pytest.approx((1520 / 1680 + 1) / 2)
    assert row.labelled == 2 * 100 * 100 and row.pixel_accuracy == pytest.approx(1 - 160 / 20000)


def test_a_multilabel_trimap_by_hand():
    """6 x 30, class a right of x = 15 and predicted nowhere, class b left of it and predicted everywhere; the
    band around each class's outline holds w columns on each side: class a's IoU there is 0, class b's 0.5."""
    a = np.zeros((6, 30), np.uint8)
    a[:, 15:] = 1
    truth, pred = multilabel(a, 1 - a), multilabel(np.zeros_like(a), np.ones_like(a)).bool()
    analysis = EvalAnalysis(2, multilabel=True, trimap_widths=(2, 5), trimap_band="boundaries")
    analysis.update(0, "im", pred, truth)
    got = analysis.compute(["a", "b"])["trimap"]
    assert got["per_class"] == {"a": {"2": 0.0, "5": 0.0}, "b": {"2": 0.5, "5": 0.5}}
    assert got["mIoU"] == {"2": 0.25, "5": 0.25}
    assert got["pixels"] == {"2": 2 * 6 * 4, "5": 2 * 6 * 10}


def test_multilabel_calibration_by_hand():
    """Each (pixel, class) decision's confidence is max(p, 1 - p), right where p > 0.5 matches the label; 2 bins,
    (0, 0.5] and (0.5, 1]; class a's last pixel is not labelled."""
    probs = torch.tensor([[0.9, 0.2, 0.6, 0.5], [0.3, 0.95, 0.5, 0.8]]).reshape(2, 1, 4)
    truth = torch.tensor([[1, 0, 0, 255], [0, 1, 1, 0]], dtype=torch.uint8).reshape(2, 1, 4)
    analysis = EvalAnalysis(2, multilabel=True, calibration_bins=2)
    analysis.update(0, "im", probs > 0.5, truth, probs)
    got = analysis.compute(["a", "b"])["calibration"]
    # a: 0.9 right, 0.8 right, 0.6 wrong; b: 0.7 right, 0.95 right, 0.5 wrong (first bin), 0.8 wrong
    assert got["reliability"]["count"] == [1, 6] and got["pixels"] == 7
    assert got["ECE"] == pytest.approx((0.5 + abs(4 - 4.75)) / 7)
    assert got["per_class"]["a"]["ECE"] == pytest.approx(abs(2 - 2.3) / 3)
    assert got["per_class"]["b"]["ECE"] == pytest.approx((0.5 + abs(2 - 2.45)) / 4)
    nll_a = -(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3
    assert got["per_class"]["a"]["NLL"] == pytest.approx(nll_a, rel=1e-6)
