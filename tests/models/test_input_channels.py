"""RGB-pretrained weights for other bands (segkit.models.input_channels): with the RGB bands first, the widened
model's logits equal the RGB model's whatever the extra bands hold; one band takes the sum of the RGB weights."""

import pytest
import timm
import torch

from segkit.models import DeepLabV3Plus
from segkit.models.input_channels import adapt_input_weight, first_conv


def _same_head(rgb: DeepLabV3Plus, other: DeepLabV3Plus) -> None:
    """ASPP and decoder start at random: give ``other`` the RGB model's, so the encoders are what differs."""
    state = {k: v for k, v in rgb.state_dict().items() if not k.startswith("encoder.")}
    other.load_state_dict({**other.state_dict(), **state})


def _logits_equal(rgb: DeepLabV3Plus, other: DeepLabV3Plus, bands: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 65, 65)
    extra = torch.randn(2, bands - 3, 65, 65) * 10  # anything
    with torch.no_grad():
        want = rgb.eval()(x)
        got = other.eval()(torch.cat([x, extra], 1))
    assert (got - want).abs().max() <= 1e-6 * max(1.0, want.abs().max())


def test_rule_by_hand():
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    five = adapt_input_weight(w, 5)
    assert torch.equal(five[:, :3], w) and not five[:, 3:].any()
    one = adapt_input_weight(w, 1)
    assert torch.equal(one[:, 0], w[:, 0] + w[:, 1] + w[:, 2])
    two = adapt_input_weight(w, 2)
    assert torch.equal(two[:, 0], one[:, 0]) and not two[:, 1].any()


def test_timm_imagenet_style_weights_file_keeps_the_rgb_model(tmp_path):
    """A timm Xception-65 state dict (the format of timm's ImageNet weights) saved as a file."""
    torch.manual_seed(0)
    path = tmp_path / "x65.pth"
    torch.save(timm.create_model("xception65", num_classes=0).state_dict(), path)
    rgb = DeepLabV3Plus(5, "xception65", pretrained=str(path))
    four = DeepLabV3Plus(5, "xception65", pretrained=str(path), in_channels=4)
    _same_head(rgb, four)
    _logits_equal(rgb, four, 4)
    assert first_conv(four.encoder)[1].weight.shape[1] == 4


@pytest.mark.parametrize("encoder", ["resnet18", "mobilenet_v2", "tu-resnet18"])
def test_smp_and_timm_encoder_files_keep_the_rgb_model(tmp_path, encoder):
    torch.manual_seed(0)
    path = tmp_path / "encoder.pth"
    torch.save(DeepLabV3Plus(3, encoder).encoder.body.state_dict(), path)
    rgb = DeepLabV3Plus(3, encoder, pretrained=str(path))
    six = DeepLabV3Plus(3, encoder, pretrained=str(path), in_channels=6)
    _same_head(rgb, six)
    _logits_equal(rgb, six, 6)


def test_whole_rgb_checkpoint_fine_tunes_on_other_bands(tmp_path):
    """A segkit model (or checkpoint) of RGB as ``pretrained`` for a 5-band model: the whole model is loaded,
    the first convolution widened with zeros."""
    torch.manual_seed(0)
    rgb = DeepLabV3Plus(4, "xception_tiny", decoder_channels=32).eval()
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)
    five = DeepLabV3Plus(4, "xception_tiny", decoder_channels=32, pretrained=str(path), in_channels=5)
    _logits_equal(rgb, five, 5)


def test_one_band_model_sees_a_grey_image_as_the_rgb_model(tmp_path):
    torch.manual_seed(0)
    rgb = DeepLabV3Plus(4, "xception_tiny", decoder_channels=32).eval()
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)
    grey = DeepLabV3Plus(4, "xception_tiny", decoder_channels=32, pretrained=str(path), in_channels=1).eval()
    x = torch.randn(2, 1, 65, 65)
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-5)


def test_without_weights_every_band_is_initialized():
    torch.manual_seed(0)
    model = DeepLabV3Plus(3, "xception_tiny", in_channels=7)
    weight = first_conv(model.encoder)[1].weight
    assert weight.shape[1] == 7 and (weight[:, 3:].abs().sum((0, 2, 3)) > 0).all()
    loss = model.eval()(torch.randn(1, 7, 33, 33)).sum()
    loss.backward()
    assert (weight.grad[:, 3:].abs().sum((0, 2, 3)) > 0).all()


@pytest.mark.slow
def test_official_tf_checkpoint_keeps_the_rgb_model(official):
    """The official graph's weights (tests/official_tf.py) through the TF-checkpoint loader, for 4 bands."""
    torch.manual_seed(0)
    prefix = official("xception41")
    rgb = DeepLabV3Plus(21, "xception41", pretrained=prefix)
    four = DeepLabV3Plus(21, "xception41", pretrained=prefix, in_channels=4)
    _logits_equal(rgb, four, 4)
