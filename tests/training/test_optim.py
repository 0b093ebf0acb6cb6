"""segkit.training.optim: the poly learning rate and the official weight-decay rule."""

import math

from segkit.training.optim import _decay_split, poly_lr_lambda
from segkit.training.task import SegmentationTask


def test_poly_schedule_values():
    f = poly_lr_lambda(100, 0.9)
    assert f(0) == 1.0
    assert math.isclose(f(50), 0.5**0.9)
    assert f(100) == 0.0
    w = poly_lr_lambda(100, 0.9, warmup_steps=10)
    assert math.isclose(w(0), 0.1) and math.isclose(w(9), 1.0)
    assert math.isclose(w(10), 0.9**0.9)


def test_weight_decay_only_on_dense_conv_weights():
    task = SegmentationTask(num_classes=3, encoder="xception_tiny", decoder_channels=32)
    decay, no_decay = _decay_split(task.model)
    decay_ids = {id(p) for p in decay}
    assert id(task.model.encoder.stem[0].conv.weight) in decay_ids
    assert id(task.model.aspp.atrous[0].conv_pw.weight) in decay_ids
    assert (
        id(task.model.aspp.atrous[0].conv_dw.weight) not in decay_ids
    )  # depthwise: official regularize_depthwise=False
    assert id(task.model.decoder.classifier.bias) not in decay_ids
    assert id(task.model.aspp.project.bn.weight) not in decay_ids
    assert len(decay) + len(no_decay) == len(list(task.model.parameters()))
