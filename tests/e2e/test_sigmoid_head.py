"""model.head: sigmoid for two classes: one output, its probability p read as (1 - p, p), trained with binary
cross-entropy; eval, export and predict take the checkpoint as they take a softmax one; its foreground
threshold tuned on a split against a recount, and used by eval, predict, Segmenter and the exported file."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import run_here, segkit_here
from PIL import Image

from segkit.evaluation.metrics import ConfusionMatrix, segmentation_scores
from segkit.evaluation.thresholds import (
    EDGES,
    ThresholdHistograms,
    best_binary_threshold,
    binary_target,
    threshold_bins,
)
from segkit.export import read_metadata
from segkit.head import Head
from segkit.inference.predict import class_probabilities, predict_probs
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


def test_binary_head_decides_where_the_probability_is_above_its_threshold():
    p = torch.rand(2, 1, 8, 8)
    probs = Head("binary", 2).probabilities(torch.logit(p))
    assert torch.allclose(probs[:, 1:], p, atol=1e-6) and torch.allclose(probs.sum(1), torch.ones(2, 8, 8))
    assert torch.equal(Head("binary", 2).decide(probs), probs.argmax(1).to(torch.uint8))  # 0.5: the likelier class
    assert torch.equal(Head("binary", 2, [0.3]).decide(probs), (probs[:, 1] > 0.3).to(torch.uint8))
    task = SegmentationTask(num_classes=2, encoder="xception_tiny", decoder_channels=32, head="sigmoid")
    task.thresholds = [0.3]
    logits = torch.randn(2, 1, 8, 8)
    assert torch.equal(task.decide(logits), (logits[:, 0].sigmoid() > 0.3).to(torch.uint8))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        Head("binary", 2, [1.0])


def _on_the_edges(n: int, seed: int) -> torch.Tensor:
    """``n`` probabilities, each exactly a tuning threshold as float32, or the float32 just below or above one."""
    gen = torch.Generator().manual_seed(seed)
    edges = torch.tensor(EDGES, dtype=torch.float32)[torch.randint(0, len(EDGES), (n,), generator=gen)]
    step = torch.randint(-1, 2, (n,), generator=gen)
    return torch.where(
        step < 0, edges.nextafter(torch.zeros(())), torch.where(step > 0, edges.nextafter(torch.ones(())), edges)
    )


def test_probabilities_on_the_bin_edges_fall_where_the_decision_puts_them():
    p = _on_the_edges(5000, 0)
    bins = threshold_bins(p)
    for e, t in enumerate(EDGES, 1):
        assert torch.equal(bins >= e, Head("binary", 2, [t]).decide(torch.stack([1 - p, p])[None])[0].bool())


def test_tuned_binary_miou_is_that_of_deciding_at_the_threshold_on_the_bin_edges():
    """Probabilities that sit exactly on the thresholds (and one float32 either side): the mIoU the tuning reports
    is exactly that of the confusion matrix of the binary head's decisions at the threshold it chose."""
    p = _on_the_edges(20000, 1).view(100, 200)
    mask = (torch.rand(100, 200, generator=torch.Generator().manual_seed(2)) < p).to(torch.uint8)  # likelier where high
    mask[:5] = 255
    hist = ThresholdHistograms(1)
    hist.update(p[None], binary_target(mask))
    threshold, ious = best_binary_threshold(*hist.compute())
    decided = Head("binary", 2, [threshold]).decide(torch.stack([1 - p, p])[None])
    confmat = ConfusionMatrix(2)
    confmat.update(decided, mask[None])
    assert segmentation_scores(confmat.compute())["mIoU"] == sum(ious) / 2


def test_tuned_binary_threshold_is_that_of_highest_recounted_miou():
    torch.manual_seed(1)
    mask = torch.randint(0, 2, (40, 40))
    u = torch.rand(40, 40)
    p = torch.where(mask == 1, 0.3 + 0.3 * u, 0.5 * u)  # background in [0, 0.5), foreground in [0.3, 0.6)
    mask[:4] = 255
    hist = ThresholdHistograms(1)
    hist.update(p[None], binary_target(mask))
    threshold, ious = best_binary_threshold(*hist.compute())
    labelled = mask != 255

    def miou(t: float) -> float:
        pred, truth = p[labelled] > t, mask[labelled] == 1
        fg = (pred & truth).sum().double() / (pred | truth).sum()
        bg = (~pred & ~truth).sum().double() / (~pred | ~truth).sum()
        return float(fg + bg) / 2

    assert sum(ious) / 2 == pytest.approx(miou(threshold), abs=1e-9)
    assert all(miou(t / 100) <= sum(ious) / 2 + 1e-9 for t in range(1, 100))
    assert 0.3 <= threshold < 0.5 and miou(threshold) > miou(0.5)


def test_eval_tunes_the_binary_threshold_that_eval_predict_and_segmenter_use(binary_run, tmp_path, capsys):
    """The session's sigmoid-head model (conftest.HeadRun), tuned by ``eval --tune_thresholds``: the new
    checkpoint's eval recounts the tuned mIoU, and its labels are the untuned model's probability above the
    threshold, in predict, Segmenter and both exported forms."""
    args, data, ckpt, tuned = binary_run.args, binary_run.data, binary_run.checkpoint, binary_run.tuned
    found = binary_run.tuned_json["tuned"]
    threshold = found["thresholds"]["object"]
    assert "threshold of highest mIoU" in binary_run.tuned_out
    assert torch.load(tuned)["segkit_thresholds"] == [threshold]
    evaluate = ("eval", *args, "--ckpt_path", ckpt, "--device", "cpu")
    again = run_here(capsys, *evaluate, "--tune_thresholds", tuned)
    assert again.returncode != 0 and "exists: segkit writes a new checkpoint" in again.stderr
    refused = run_here(capsys, "eval", *args, "--predictions", tmp_path, "--tune_thresholds", tmp_path / "x.ckpt")
    assert refused.returncode != 0 and "tunes a checkpoint's model: give its --ckpt_path" in refused.stderr

    segkit_here(capsys, "eval", *args, "--ckpt_path", tuned, "--device", "cpu", "--json", tmp_path / "t.json")
    rescored = json.loads((tmp_path / "t.json").read_text())
    assert rescored["mIoU"] == found["mIoU"]  # the same decisions, pixel for pixel

    from segkit import Segmenter

    image = sorted((data / "images").rglob("*.jpg"))[0]
    untuned = Segmenter(ckpt)
    picture = np.asarray(Image.open(image).convert("RGB"))
    x = untuned.transform(image=picture)["image"][None]
    p = predict_probs(untuned.model, x)[0, 1].numpy()
    decided = Segmenter(tuned)(image)
    assert np.array_equal(decided, (p > np.float32(threshold)).astype(np.uint8))
    segkit_here(capsys, "predict", *args, "--ckpt_path", tuned, "--input", image, "--output", tmp_path / "pred")
    written = np.asarray(Image.open(next((tmp_path / "pred").rglob(f"{image.stem}.png"))))
    assert np.array_equal(written, decided)

    # the exported files decide at the threshold too: the end-to-end graph, and the one logit of the logits form
    export = ("export", *args, "--ckpt_path", tuned, "--end_to_end", "--output", tmp_path / "m.onnx", "--verify")
    out = segkit_here(capsys, *export)
    assert float(re.search(r"labels equal to the checkpoint's on ([\d.]+)% of pixels", out).group(1)) >= 99.99
    assert read_metadata(tmp_path / "m.onnx")["thresholds"] == [threshold]
    assert read_metadata(tmp_path / "m.onnx")["head"] == "binary"
    assert (Segmenter(tmp_path / "m.onnx")(image) == decided).mean() >= 0.9999
    out = segkit_here(capsys, "export", *args, "--ckpt_path", tuned, "--output", tmp_path / "l.onnx", "--verify")
    assert float(re.search(r"labels equal to the checkpoint's on ([\d.]+)% of pixels", out).group(1)) >= 99.99
    meta = read_metadata(tmp_path / "l.onnx")
    assert meta["outputs"][0]["shape"][1] == 1 and meta["thresholds"] == [threshold] and meta["head"] == "binary"
    assert (Segmenter(tmp_path / "l.onnx")(image) == decided).mean() >= 0.9999


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


@pytest.mark.parametrize(
    ("kwargs", "mode", "outputs", "loss"),
    [
        ({"num_classes": 3}, "multiclass", 3, "cross_entropy"),
        ({"num_classes": 2, "head": "sigmoid", "class_weights": None}, "binary", 1, "binary_cross_entropy"),
        ({"num_classes": 3, "head": "sigmoid", "multilabel": True}, "multilabel", 3, "binary_cross_entropy"),
    ],
)
def test_the_head_gives_the_output_count_the_default_loss_and_the_counts(kwargs, mode, outputs, loss):
    task = SegmentationTask(encoder="xception_tiny", decoder_channels=32, **kwargs)
    head = Head.of(task.model)
    assert (head.mode, head.outputs, head.default_loss) == (mode, outputs, loss)
    assert task.model.eval()(torch.zeros(1, 3, 32, 32)).shape[1] == outputs
    assert task.criterion.weights == {loss: 1.0}
    counts = task.val_confmat.compute()
    assert counts.shape == ((3, 4) if mode == "multilabel" else (kwargs["num_classes"],) * 2)
