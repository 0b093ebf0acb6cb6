"""segkit.inference: multi-scale/flip/sliding-window probabilities, class-index maps, and checkpoints loaded for
inference (batch norm folded)."""
import pytest
import torch
from conftest import trained_module
from torch import nn

from segkit.inference import label_maps, load_inference_model, predict_labels, predict_probs, sliding_logits
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


def test_sliding_window():
    model, x = _model(), torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        whole = model(x)
        torch.testing.assert_close(sliding_logits(model, x, window=80), whole)  # window larger than the image
        pointwise = nn.Conv2d(3, 4, 1)  # translation-equivariant: windows must reassemble the whole image
        torch.testing.assert_close(sliding_logits(pointwise, x, window=32, overlap=0.25), pointwise(x))


def test_label_maps_are_the_argmax_cropped_to_each_image():
    scores = torch.randn(2, 5, 7, 9)
    maps = label_maps(scores, [(7, 9), (4, 6)])
    assert [m.shape for m in maps] == [(7, 9), (4, 6)] and all(m.dtype == torch.uint8 for m in maps)
    assert torch.equal(maps[0].long(), scores[0].argmax(0))
    assert torch.equal(maps[1].long(), scores[1, :, :4, :6].argmax(0))  # padding at the bottom/right dropped
    whole = label_maps(scores)
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
