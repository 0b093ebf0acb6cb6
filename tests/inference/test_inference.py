"""segkit.inference: multi-scale/flip/sliding-window probabilities, class-index maps, and checkpoints loaded for
inference (batch norm folded)."""

import pytest
import torch
import torch.nn.functional as F
from helpers import randomize_batchnorm, trained_module
from torch import nn

from segkit.head import Head
from segkit.inference import (
    label_maps,
    load_inference_model,
    predict_labels,
    predict_probs,
    scaled_size,
    sliding_logits,
)
from segkit.models import DeepLabV3Plus


def _model():
    torch.manual_seed(0)
    return DeepLabV3Plus(4, "xception_tiny", 16, decoder_channels=32).eval()


def test_single_scale_equals_plain_forward():
    model, x = _model(), torch.randn(2, 3, 61, 83)
    with torch.no_grad():
        want = model(x).softmax(1)
    torch.testing.assert_close(predict_probs(model, x, [1.0]), want)


def test_flip_on_a_symmetric_model_changes_nothing():
    model = _model()
    with torch.no_grad():  # left-right symmetric kernels make the network flip-equivariant
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_((m.weight + m.weight.flip(-1)) / 2)
    x = torch.randn(1, 3, 65, 65)  # odd sizes at every stride keep strided sampling symmetric
    plain = predict_probs(model, x, [1.0], flip=False)
    torch.testing.assert_close(predict_probs(model, x, [1.0], flip=True), plain, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(predict_probs(_model(), x, [1.0], flip=True), predict_probs(_model(), x, [1.0]))


def test_multi_scale_is_the_mean_of_single_scales():
    model, x = _model(), torch.randn(1, 3, 64, 64)
    a, b = predict_probs(model, x, [0.5]), predict_probs(model, x, [1.5])
    torch.testing.assert_close(predict_probs(model, x, [0.5, 1.5]), (a + b) / 2)


def _stride4_logits(model, x):
    """The decoder's logits before any resize, from the model's parts."""
    feats = model.encoder(x)
    return model.decoder(model.aspp(feats["out"]), feats["low"])


def _official_scale(model, image, scale):
    """The official multi_scale_logits + predict_labels_multi_scale resizes, written out for one scale."""

    def resize(t, size):
        return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

    h, w = image.shape[-2:]
    size = (int((h - 1) * scale + 1), int((w - 1) * scale + 1))
    logits = _stride4_logits(model, image if size == (h, w) else resize(image, size))
    big = max(1.0, scale) / 4
    return resize(resize(logits, (int((h - 1) * big + 1), int((w - 1) * big + 1))), (h, w))


def test_scales_follow_the_official_scale_dimension():
    assert [scaled_size(513, s) for s in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)] == [257, 385, 513, 641, 769, 897]
    assert scaled_size(500, 0.75) == 375 and scaled_size(375, 1.25) == 468 and scaled_size(3, 0.1) == 1
    model, x = randomize_batchnorm(_model()), torch.randn(1, 3, 41, 57)
    with torch.no_grad():  # 0.5: 41x57 -> 21x29, logits 6x8 -> 11x15 -> 41x57; 1.5: 61x85, 16x22 -> 16x22 -> 41x57
        for scale in (0.5, 1.5):
            torch.testing.assert_close(predict_probs(model, x, [scale]), _official_scale(model, x, scale).softmax(1))
        assert torch.equal(model(x, upsample=False), _stride4_logits(model, x))


def test_pad_to_is_the_official_eval_crop():
    """Padded with the (normalized) mean at the bottom/right first; scales and flips of the padded image; the
    result cropped back: computed here step by step."""
    model, x = randomize_batchnorm(_model()), torch.randn(1, 3, 40, 50)  # batch norm that lets the input matter
    with torch.no_grad():
        padded = F.pad(x, (0, 65 - 50, 0, 61 - 40))  # to 61x65
        total = 0
        for scale in (1.0, 0.5):
            total = total + _official_scale(model, padded, scale).softmax(1)
            total = total + _official_scale(model, padded.flip(-1), scale).flip(-1).softmax(1)
        want = (total / 4)[..., :40, :50]
    got = predict_probs(model, x, [1.0, 0.5], flip=True, pad_to=(61, 65))
    assert got.shape == (1, 4, 40, 50)
    torch.testing.assert_close(got, want)
    assert (got - predict_probs(model, x, [1.0, 0.5], flip=True)).abs().max() > 1e-3  # padding changes the result
    big = torch.randn(1, 3, 70, 30)  # larger than pad_to in one dimension: padded only in the other
    with torch.no_grad():
        want = model(F.pad(big, (0, 35))).softmax(1)[..., :, :30]
    torch.testing.assert_close(predict_probs(model, big, pad_to=(61, 65)), want)


def test_sliding_window():
    model, x = _model(), torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        whole = model(x)
        torch.testing.assert_close(sliding_logits(model, x, window=80), whole)  # window larger than the image
        pointwise = nn.Conv2d(3, 4, 1)  # translation-equivariant: windows must reassemble the whole image
        torch.testing.assert_close(sliding_logits(pointwise, x, window=32, overlap=0.25), pointwise(x))


def test_label_maps_are_the_argmax_cropped_to_each_image():
    scores = torch.randn(2, 5, 7, 9)
    maps = label_maps(Head("multiclass", 5), scores, [(7, 9), (4, 6)])
    assert [m.shape for m in maps] == [(7, 9), (4, 6)] and all(m.dtype == torch.uint8 for m in maps)
    assert torch.equal(maps[0].long(), scores[0].argmax(0))
    assert torch.equal(maps[1].long(), scores[1, :, :4, :6].argmax(0))  # padding at the bottom/right dropped
    whole = label_maps(Head("multiclass", 5), scores)
    assert [m.shape for m in whole] == [(7, 9), (7, 9)]
    model, x = _model(), torch.randn(1, 3, 40, 52)
    (labels,) = predict_labels(model, x, scales=[0.75, 1.0], flip=True)
    assert torch.equal(labels.long(), predict_probs(model, x, [0.75, 1.0], True)[0].argmax(0))


def test_checkpoint_for_inference_is_the_trained_model_folded(random_bn_checkpoint):
    """Rebuilt from the checkpoint without Lightning, batch norm folded: the same logits as the module as trained
    (random batch-norm statistics, so folding is exercised), also after switching to output stride 8."""
    want_model = trained_module(random_bn_checkpoint)
    model = load_inference_model(random_bn_checkpoint, num_classes=21)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) and not model.training
    x = torch.randn(2, 3, 67, 75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = want_model(x)
        assert (model(x) - want).abs().max() <= 1e-4 * want.abs().max()
        os8 = load_inference_model(random_bn_checkpoint, output_stride=8)
        want_model.set_output_stride(8)
        assert os8.output_stride == 8 and (os8(x) - want_model(x)).abs().max() <= 1e-4 * want.abs().max()


def test_checkpoint_errors_name_the_file_and_the_class_counts(checkpoint, tmp_path):
    with pytest.raises(ValueError, match=rf"checkpoint {checkpoint} predicts 21 classes, the config's data set has 19"):
        load_inference_model(checkpoint, num_classes=19)
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing.ckpt"):
        load_inference_model(tmp_path / "missing.ckpt")
