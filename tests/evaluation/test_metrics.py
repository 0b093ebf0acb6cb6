"""Metric tests against confusion matrices and IoUs computed by hand and by torchmetrics."""

import math

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from segkit.evaluation.metrics import ConfusionMatrix, format_iou_table, segmentation_scores


def test_confusion_matrix_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    preds = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 3]])
    m = ConfusionMatrix(4)
    m.update(preds[None], target[None])
    expected = torch.tensor(
        [
            [1, 1, 0, 0],  # gt 0: one right, one predicted 1
            [0, 2, 0, 1],  # gt 1: two right, one predicted 3
            [1, 0, 1, 0],  # gt 2: one predicted 0, one right (the 255 pixel is not counted)
            [0, 0, 0, 0],  # gt 3: absent
        ]
    )
    assert torch.equal(m.compute(), expected)
    s = segmentation_scores(m.compute())
    iou = s["per_class_iou"].tolist()
    assert math.isclose(iou[0], 1 / 3)  # tp 1, gt 2, pred 2 -> 1 / (2 + 2 - 1)
    assert math.isclose(iou[1], 2 / 4)  # tp 2, gt 3, pred 3
    assert math.isclose(iou[2], 1 / 2)  # tp 1, gt 2, pred 1
    assert iou[3] == 0.0  # absent from gt but predicted once: counts as 0
    assert math.isclose(s["mIoU"], (1 / 3 + 1 / 2 + 1 / 2 + 0) / 4)
    assert math.isclose(s["pixel_acc"], 4 / 7)
    assert math.isclose(s["mean_acc"], (1 / 2 + 2 / 3 + 1 / 2) / 3)


def test_absent_class_is_left_out_of_the_mean():
    m = ConfusionMatrix(3)
    m.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    s = segmentation_scores(m.compute())
    assert math.isnan(s["per_class_iou"][2])
    assert s["mIoU"] == 1.0


def test_accumulates_over_batches_and_accepts_logits():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, 7, 9)
    target = torch.randint(0, 5, (6, 7, 9))
    target[:, 0] = 255
    whole, parts = ConfusionMatrix(5), ConfusionMatrix(5)
    whole.update(logits, target)
    for i in range(0, 6, 2):
        parts.update(logits[i : i + 2].argmax(1), target[i : i + 2])
    assert torch.equal(whole.compute(), parts.compute())
    ref = MulticlassConfusionMatrix(5, ignore_index=255)
    ref.update(logits.argmax(1), target)
    assert torch.equal(whole.compute(), ref.compute())


def test_table_lists_every_class():
    m = ConfusionMatrix(2)
    m.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    table = format_iou_table(["sky", "road"], segmentation_scores(m.compute()))
    assert "sky" in table and "road" in table and "val/mIoU" in table
    assert " 50.00" in table  # sky IoU: 1 / (2 + 1 - 1)


def test_void_predictions_are_misses_not_hits():
    m = ConfusionMatrix(2)
    m.update(torch.tensor([[0, 255, 1, 7]]), torch.tensor([[0, 0, 1, 255]]))
    assert m.compute().tolist() == [[1, 0], [0, 1]]
    assert m.void.tolist() == [1, 0]
    s = segmentation_scores(m.compute(), m.void)
    assert s["per_class_iou"].tolist() == [0.5, 1.0]  # class 0: tp 1, gt 2 (one predicted void), pred 1
    assert math.isclose(s["pixel_acc"], 2 / 3)
