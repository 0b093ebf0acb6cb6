"""Encoders whose constructor takes no output stride made atrous (segkit/models/atrous.py): timm's original
Xception (Chollet, 2017) in DeepLabV3+ at output strides 16 and 8, its weights those of the timm model, its
features every 32 / OS pixels those of the original network; encoders that cannot be dilated refused in a line."""

import pytest
import timm
import torch
from torch import nn

from segkit.models import DeepLabV3Plus
from segkit.models.atrous import NotAtrous, make_atrous
from segkit.models.encoders import SmpEncoder


@pytest.fixture(scope="module")
def original_xception():
    torch.manual_seed(0)
    return timm.create_model("legacy_xception", pretrained=False).eval()


def test_the_original_xception_is_the_papers(original_xception):
    assert sum(p.numel() for p in original_xception.parameters()) == 22_855_952  # Chollet (2017), table 3


@pytest.mark.parametrize("output_stride", [16, 8])
def test_original_xception_runs_atrous_with_the_timm_weights(output_stride, original_xception):
    encoder = SmpEncoder("tu-legacy_xception", output_stride).eval()
    timm_state = {k: v for k, v in original_xception.state_dict().items() if not k.startswith("fc.")}
    assert encoder.body.load_state_dict({f"model.body.{k}": v for k, v in timm_state.items()}) is not None
    for key, value in encoder.body.state_dict().items():  # every weight the timm model's, unchanged
        assert torch.equal(value, timm_state[key.removeprefix("model.body.")]), key
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        feats, want = encoder(x), original_xception.forward_features(x)  # (1, 2048, 8, 8) at output stride 32
    step = 32 // output_stride
    assert feats["out"].shape == (1, 2048, 256 // output_stride, 256 // output_stride)
    assert feats["low"].shape[1] == 128 and feats["low"].shape[-1] == 63  # stride 4 (its first conv is unpadded)
    torch.testing.assert_close(feats["out"][..., ::step, ::step], want, rtol=1e-5, atol=1e-5 * want.abs().max())


def test_deeplab_with_the_original_xception_switches_output_stride():
    model = DeepLabV3Plus(3, "tu-legacy_xception", output_stride=16, decoder_channels=32).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert model(x).shape == (1, 3, 96, 96)
        model.set_output_stride(8)
        assert model.encoder(x)["out"].shape[-1] == 12 and model(x).shape == (1, 3, 96, 96)


def test_encoders_that_cannot_be_dilated_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"'tu-densenet121' cannot run at output stride 16: .* output stride 32"):
        SmpEncoder("tu-densenet121", 16)  # average pooling between its blocks
    strided_pool = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.AvgPool2d(2), nn.AvgPool2d(2), nn.AvgPool2d(2))
    with pytest.raises(NotAtrous, match="downsamples by 16"):
        make_atrous(strided_pool, 8, probe=64)
