"""model.head: sigmoid for two classes: one output, its probability p read as (1 - p, p), trained with binary
cross-entropy; eval, export and predict take the checkpoint as they take a softmax one."""

import re

import pytest
import torch
from helpers import CONFIGS, segkit_here

from segkit.inference.predict import class_probabilities
from segkit.models import DeepLabV3Plus
from segkit.training.task import SegmentationTask


def test_one_output_read_as_two_class_probabilities():
    model = DeepLabV3Plus(2, "xception_tiny", decoder_channels=32, binary=True).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 33, 33))
    assert logits.shape == (2, 1, 33, 33)
    probs = class_probabilities(model, logits)
    assert torch.allclose(probs[:, 1], logits[:, 0].sigmoid()) and torch.allclose(probs.sum(1), torch.ones(2, 33, 33))
    assert torch.equal(probs.argmax(1), (logits[:, 0] > 0).long())  # argmax: p > 0.5


def test_task_trains_one_output_against_the_foreground():
    task = SegmentationTask(num_classes=2, encoder="xception_tiny", decoder_channels=32, head="sigmoid")
    assert task.model.binary and task.model.decoder.classifier.out_channels == 1
    logits = torch.randn(2, 1, 8, 8)
    mask = torch.randint(0, 2, (2, 8, 8), dtype=torch.uint8)
    mask[0, :2] = 255
    loss = task.criterion(logits, task._target(mask))
    keep = mask != 255
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0][keep], mask[keep].float())
    assert torch.allclose(loss, want, atol=1e-6)
    assert torch.equal(task.decide(logits), (logits[:, 0] > 0).long())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 3, "head": "sigmoid"}, r"sigmoid with single-label masks is for two classes"),
        ({"num_classes": 2, "head": "sigmoid", "class_weights": [1.0, 2.0]}, r"set model.class_weights: null"),
        ({"num_classes": 2, "head": "tanh"}, r"model.head must be softmax or sigmoid"),
        ({"num_classes": 2, "head": "softmax", "multilabel": True}, r"multilabel masks need sigmoid"),
    ],
)
def test_bad_heads_fail_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegmentationTask(encoder="xception_tiny", decoder_channels=32, **kwargs)


@pytest.mark.slow
def test_folder_demo_with_a_sigmoid_head_trains_evaluates_and_exports(tmp_path, monkeypatch, capsys):
    """demo_folder.yaml with one sigmoid output (150 steps): eval scores the checkpoint as validation did, the
    end-to-end export's labels equal the checkpoint's (--verify), and the logits form is refused in one line."""
    monkeypatch.chdir(tmp_path)
    segkit_here(capsys, "data", "synthetic", "--root", "data/synthetic_folder")
    config = ("--config", CONFIGS / "demo_folder.yaml")
    head = ("--model.head", "sigmoid", "--model.class_weights", "null")
    out = segkit_here(
        capsys, "fit", *config, *head, "--model.loss", "{binary_cross_entropy: 1.0, dice: 0.5}",
        "--trainer.max_steps", "150", "--trainer.val_check_interval", "150", "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    score, ckpt = re.search(r"Best checkpoint \(val/mIoU = ([\d.]+)\): (\S+)", out).groups()
    assert float(score) > 0.6, out[-2000:]
    out = segkit_here(capsys, "export", *config, "--ckpt_path", ckpt, "--end_to_end", "--output", "m.onnx", "--verify")
    assert "labels equal to the checkpoint's on 100.000% of pixels" in out or "99.99" in out, out[-800:]
    from helpers import run_here

    refused = run_here(capsys, "export", *config, "--ckpt_path", ckpt, "--output", "l.onnx")
    assert refused.returncode == 1 and "export it --end_to_end" in refused.stderr
