"""Model tests: shapes, gradients, parity with timm's Aligned Xception, output-stride switching, weights."""

import pytest
import timm
import torch
from helpers import randomize_batchnorm
from torch import nn

from segkit.models import AlignedXception, DeepLabV3Plus
from segkit.models.layers import SeparableConv2d


@pytest.mark.parametrize("arch", ["xception65", "xception71"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_timm_parity(arch, output_stride):
    gen = torch.Generator().manual_seed(0)
    ref = timm.create_model(arch, pretrained=False, output_stride=output_stride, num_classes=0).eval()
    randomize_batchnorm(ref)
    ours = AlignedXception(arch, output_stride=output_stride).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected
    if missing:
        # timm builds Xception-71's 728->728 entry block without its projection shortcut once its stride is
        # turned into dilation (OS8). The official model and the ImageNet checkpoints keep that 1x1 conv; with
        # it set to identity both networks compute the same function.
        assert output_stride == 8 and arch == "xception71"
        assert {k.rsplit(".", 2)[0] for k in missing} == {"blocks.4.shortcut"}
        sc = ours.blocks[4].shortcut
        sc.conv.weight.data.copy_(torch.eye(728)[:, :, None, None])
        sc.bn.weight.data.fill_(1.0)
        sc.bn.bias.data.zero_()
        sc.bn.running_mean.zero_()
        sc.bn.running_var.fill_(1.0 - sc.bn.eps)

    feats = {}
    modules = dict(ref.named_modules())
    # segkit's "low" is the official decoder input: the input of the ReLU that timm's feature_info names at
    # reduction 4 (blocks.1.stack.act3 for Xception-65, blocks.2 for -71), cloned before it runs in place
    low_name = next(f["module"] for f in ref.feature_info if f["reduction"] == 4)
    assert low_name.endswith("stack.act3")
    out_name = ref.feature_info[-1]["module"]
    modules[low_name].register_forward_pre_hook(lambda m, i: feats.__setitem__("low", i[0].clone()))
    modules[low_name].register_forward_hook(lambda m, i, o: feats.__setitem__("low_relu", o.clone()))
    modules[out_name].register_forward_hook(lambda m, i, o: feats.__setitem__("out", o.clone()))
    x = torch.randn(2, 3, 97, 129, generator=gen)
    with torch.no_grad():
        ref(x)
        got = ours(x)
    for key in ("low", "out"):
        assert got[key].shape == feats[key].shape
        rel = (got[key] - feats[key]).abs().max() / feats[key].abs().max()
        assert rel < 1e-4, (key, float(rel))
    # before the ReLU: negative values are there, and the ReLU of it is timm's feature_info tensor
    assert (got["low"] < 0).any()
    assert (got["low"].relu() - feats["low_relu"]).abs().max() <= 1e-4 * feats["low_relu"].abs().max()
    assert got["low"].shape[-2:] == (25, 33)  # stride 4
    assert got["out"].shape[-2:] == ((7, 9) if output_stride == 16 else (13, 17))


@pytest.mark.parametrize("output_stride,feat", [(8, 8), (16, 4), (32, 2)])
def test_output_shapes(output_stride, feat):
    model = DeepLabV3Plus(5, "xception_tiny", output_stride).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 5, 64, 64)
        feats = model.encoder(x)
    assert feats["low"].shape[-2:] == (16, 16)
    assert feats["out"].shape[-2:] == (feat, feat)


def test_513_input_xception65():
    model = DeepLabV3Plus(21, "xception65", 16).eval()
    x = torch.randn(1, 3, 513, 513)
    with torch.no_grad():
        feats = model.encoder(x)
        out = model(x)
    assert feats["low"].shape[-2:] == (129, 129)
    assert feats["out"].shape[-2:] == (33, 33)
    assert out.shape == (1, 21, 513, 513)


def test_odd_sizes_and_batch():
    model = DeepLabV3Plus(3, "xception_tiny", 16).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, 75, 131)).shape == (3, 3, 75, 131)


def test_every_parameter_gets_a_gradient():
    model = DeepLabV3Plus(4, "xception_tiny", 16).train()
    out = model(torch.randn(2, 3, 64, 64))
    nn.functional.cross_entropy(out, torch.randint(0, 4, (2, 64, 64))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_set_output_stride_keeps_weights_and_matches_fresh_model():
    torch.manual_seed(0)
    model = DeepLabV3Plus(4, "xception_tiny", 16).eval()
    params = [id(p) for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    assert model.encoder(x)["out"].shape[-2:] == (4, 4)
    assert model.aspp.atrous_rates == (6, 12, 18)
    model.set_output_stride(8)
    assert model.encoder(x)["out"].shape[-2:] == (8, 8)
    assert model.aspp.atrous_rates == (12, 24, 36)
    after = model.state_dict()
    assert [id(p) for p in model.parameters()] == params
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    fresh = DeepLabV3Plus(4, "xception_tiny", 8).eval()
    fresh.load_state_dict(before)
    with torch.no_grad():
        torch.testing.assert_close(model(x), fresh(x))
    model.set_output_stride(16)
    assert model.encoder(x)["out"].shape[-2:] == (4, 4)
    with pytest.raises(ValueError, match="output_stride must be one of"):
        model.set_output_stride(4)


@pytest.mark.parametrize("encoder", ["resnet18", "mobilenet_v2", "tu-resnet18"])
def test_smp_encoders(encoder):
    model = DeepLabV3Plus(3, encoder, 16).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (1, 3, 64, 64)
        assert model.encoder(x)["out"].shape[-2:] == (4, 4)
        assert model.encoder(x)["low"].shape[-2:] == (16, 16)
        params = [id(p) for p in model.parameters()]
        model.set_output_stride(8)
        assert [id(p) for p in model.parameters()] == params  # in place: an optimizer keeps its parameters
        assert model.encoder(x)["out"].shape[-2:] == (8, 8)
        assert model.aspp.atrous_rates == (12, 24, 36)
        fresh = DeepLabV3Plus(3, encoder, 8).eval()
        fresh.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(x), fresh(x))


def test_unknown_encoder_lists_choices():
    with pytest.raises(ValueError, match="xception65"):
        DeepLabV3Plus(3, "no_such_encoder")


def test_separable_conv_order():
    """depthwise -> BN -> ReLU -> pointwise -> BN -> ReLU, checked against explicit functional ops."""
    torch.manual_seed(0)
    conv = SeparableConv2d(4, 6, 3, dilation=2).eval()
    x = torch.randn(1, 4, 9, 9)
    f = nn.functional
    y = f.conv2d(x, conv.conv_dw.weight, padding=2, dilation=2, groups=4)
    y = f.relu(f.batch_norm(y, conv.bn_dw.running_mean, conv.bn_dw.running_var, conv.bn_dw.weight, conv.bn_dw.bias))
    y = f.conv2d(y, conv.conv_pw.weight)
    y = f.relu(f.batch_norm(y, conv.bn_pw.running_mean, conv.bn_pw.running_var, conv.bn_pw.weight, conv.bn_pw.bias))
    torch.testing.assert_close(conv(x), y)


def _timm_weights(tmp_path, suffix):
    ref = timm.create_model("xception41", pretrained=False)
    state = ref.state_dict()  # includes the classifier head, as a real ImageNet checkpoint does
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path, state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_from_file(tmp_path, suffix):
    path, state = _timm_weights(tmp_path, suffix)
    model = DeepLabV3Plus(3, "xception41", pretrained=str(path))
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, state[k]), k
    # a segkit model state dict is a whole model: encoder, ASPP, decoder and (same class count) classifier
    seg = tmp_path / "segkit.pt"
    torch.save(model.state_dict(), seg)
    again = DeepLabV3Plus(3, "xception41", pretrained=str(seg))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in again.state_dict().items())
    with pytest.raises(
        ValueError,
        match=r"does not fit the model: missing keys \d+ \[.encoder.blocks.13.*"
        r'shape mismatches \d+ \["encoder.blocks.11',
    ):
        DeepLabV3Plus(3, "xception65", pretrained=str(seg))


def test_pretrained_mismatch_names_keys(tmp_path):
    path, _ = _timm_weights(tmp_path, ".pth")
    with pytest.raises(ValueError, match=r"missing keys .*blocks\.\d+"):
        DeepLabV3Plus(3, "xception65", pretrained=str(path))  # 41 has fewer middle-flow blocks
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        DeepLabV3Plus(3, "xception41", pretrained=str(tmp_path / "nope.pth"))


def test_pretrained_timm_name_goes_through_timm(monkeypatch):
    calls = []
    real = timm.create_model

    def fake_create_model(name, pretrained=False, **kwargs):  # offline stand-in for the hub download
        calls.append((name, pretrained))
        return real(name.split(".")[0], pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake_create_model)
    DeepLabV3Plus(3, "xception41", pretrained="xception41.tf_in1k")
    assert calls == [("xception41.tf_in1k", True)]


@pytest.mark.parametrize("channels_last", [False, True])
def test_fold_batchnorm_same_function_no_batchnorm_left(channels_last):
    from segkit.models import fold_batchnorm

    gen = torch.Generator().manual_seed(0)
    model = DeepLabV3Plus(5, "xception_tiny", 16, decoder_channels=32)
    randomize_batchnorm(model)
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    # after folding every convolution has a bias: the BN shift
    assert folded.decoder.refine[0].conv_dw.bias is not None and folded.encoder.stem[0].conv.bias is not None
    x = torch.randn(2, 3, 67, 75, generator=gen).contiguous(memory_format=fmt)
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    # the original keeps its layers and values; output-stride switching still works on the copy
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    folded.set_output_stride(8)
    model.set_output_stride(8)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max() <= 1e-4 * want.abs().max()


def test_fold_batchnorm_leaves_other_encoders_alone():
    from segkit.models import fold_batchnorm

    model = DeepLabV3Plus(3, "resnet18", 16, decoder_channels=32).eval()
    folded = fold_batchnorm(model)
    # the smp ResNet keeps its batch norms; segkit's ASPP and decoder are folded
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.encoder.modules()) == sum(
        isinstance(m, nn.BatchNorm2d) for m in model.encoder.modules()
    )
    assert not any(isinstance(m, nn.BatchNorm2d) for m in [*folded.aspp.modules(), *folded.decoder.modules()])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5, rtol=1e-4)
