"""Encoder factory: segkit's Aligned Xception, or any segmentation-models-pytorch / timm encoder.

Every encoder maps an image (B, 3, H, W) to ``{"low": stride-4 features, "out": stride-OS features}`` and
exposes ``low_channels``, ``out_channels``, ``output_stride`` and ``set_output_stride``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..io.torch_files import CheckpointFileError, CheckpointNotFound, read_torch_file
from .atrous import NotAtrous, make_atrous, replace_module
from .xception import ARCHS, AlignedXception

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


class SmpEncoder(nn.Module):
    """Wraps a segmentation-models-pytorch encoder (``resnet101``, ``mobilenet_v2``, ``tu-<timm name>``...).

    smp builds its dilation at construction, so :meth:`set_output_stride` rebuilds the encoder at the new
    output stride and copies the weights over (the values are kept; the parameter objects are new). A timm
    model whose constructor takes no output stride (``tu-legacy_xception``, the original Xception) is built at
    32 and made atrous by segkit (:func:`~segkit.models.atrous.make_atrous`).
    """

    def __init__(self, name: str, output_stride: int = 16, weights: str | None = None) -> None:
        super().__init__()
        self.name = name
        self.body = self._build(name, output_stride, weights)
        self.low_channels = self.body.out_channels[2]
        self.out_channels = self.body.out_channels[-1]
        self.output_stride = output_stride

    @staticmethod
    def _build(name: str, output_stride: int, weights: str | None) -> nn.Module:
        import segmentation_models_pytorch as smp

        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be one of (8, 16, 32), got {output_stride}")
        try:
            return smp.encoders.get_encoder(name, weights=weights, output_stride=output_stride)
        except KeyError as e:  # smp lists the valid names in its message
            raise ValueError(
                f"Unknown encoder '{name}': use {sorted(ARCHS)}, an smp encoder or 'tu-<timm model>'. smp said: {e}"
            ) from None
        except (TypeError, AssertionError) as e:  # a timm model that takes no output_stride, or only 32 (vgg)
            if not name.startswith("tu-") or (isinstance(e, TypeError) and "output_stride" not in str(e)):
                raise
        body = smp.encoders.get_encoder(name, weights=weights, output_stride=32)
        try:
            make_atrous(body, output_stride)
        except NotAtrous as e:
            raise ValueError(
                f"encoder '{name}' cannot run at output stride {output_stride}: it {e}; it supports output stride 32 "
                "(--model.output_stride 32)"
            ) from None
        return body

    def set_output_stride(self, output_stride: int) -> None:
        """Copies the strides, dilations and paddings of an encoder built at ``output_stride`` in place.

        The parameters stay the same objects (an optimizer holding them keeps working).
        """
        if output_stride == self.output_stride:
            return
        template = dict(self._build(self.name, output_stride, None).named_modules())
        modules = dict(self.body.named_modules())
        if template.keys() != modules.keys() or any(not _same_kind(template[k], m) for k, m in modules.items()):
            raise ValueError(
                f"encoder '{self.name}' changes its structure with the output stride; "
                f"build the model with output_stride={output_stride} instead"
            )
        for name, module in modules.items():
            if isinstance(module, nn.MaxPool2d) and type(template[name]) is not type(module):
                replace_module(self.body, module, template[name])  # a dilated pool (no parameters)
                continue
            for attr in ("stride", "dilation", "padding"):
                if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and hasattr(module, attr):
                    setattr(module, attr, getattr(template[name], attr))
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body(x)  # [input, /2, /4, /8, /16 or dilated, /32 or dilated]
        return {"low": feats[2], "out": feats[-1]}


def _same_kind(a: nn.Module, b: nn.Module) -> bool:
    """The same module type, max pooling of either kind (segkit dilates max pools of atrous encoders)."""
    return type(a) is type(b) or (isinstance(a, nn.MaxPool2d) and isinstance(b, nn.MaxPool2d))


def build_encoder(
    name: str, output_stride: int = 16, pretrained: str | None = None, state: dict[str, torch.Tensor] | None = None
) -> nn.Module:
    """Builds an encoder and loads its pretrained weights.

    Args:
        name: ``xception41``/``xception65``/``xception71``/``xception_tiny`` (segkit's Aligned Xception), an
            smp encoder name, or ``tu-<timm model>``.
        output_stride: 8, 16 or 32.
        pretrained: None; a local weights file (.pth/.pt/.ckpt/.safetensors with timm, smp or segkit keys);
            for Xception a timm name such as ``xception65.tf_in1k`` (downloaded through timm / the Hugging
            Face hub); for smp encoders an smp weights name such as ``imagenet``.
        state: the contents of the file ``pretrained`` when the caller has read it already.
    """
    is_file = state is not None or (
        pretrained is not None and (Path(pretrained).suffix in WEIGHT_FILE_SUFFIXES or Path(pretrained).exists())
    )
    if is_file and state is None:
        state = load_weights_file(pretrained)
    if name in ARCHS:
        encoder: nn.Module = AlignedXception(name, output_stride)
        if pretrained is not None:
            load_encoder_state(encoder, state if is_file else _timm_state_dict(pretrained), source=pretrained)
        return encoder
    encoder = SmpEncoder(name, output_stride, weights=None if is_file else pretrained)
    if is_file:
        load_encoder_state(encoder.body, state, source=pretrained)
    return encoder


def _timm_state_dict(name: str) -> dict[str, torch.Tensor]:
    import timm

    if not timm.is_model(name.split(".")[0]):
        raise ValueError(f"pretrained='{name}' is neither an existing weights file nor a timm model name")
    return timm.create_model(name, pretrained=True, num_classes=0).state_dict()


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a state dict safely (safetensors, or torch.load with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFound(f"pretrained weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise CheckpointFileError(f"pretrained weights file {path} cannot be read: {e}") from None
    state = read_torch_file(path, "pretrained weights file")
    for key in ("state_dict", "model", "model_state_dict"):  # Lightning / common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def _encoder_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Encoder keys from a timm, smp, segkit-model or segkit-Lightning state dict."""
    for prefix in ("model.encoder.body.", "model.encoder.", "encoder.body.", "encoder."):
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    # a classification checkpoint: drop the classifier
    return {k: v for k, v in state.items() if not k.startswith(("head.", "fc.", "classifier."))}


def load_encoder_state(encoder: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Loads encoder weights, raising a ValueError that names missing and unexpected keys."""
    state = _encoder_keys(state)
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:

        def show(keys: list[str]) -> str:
            return f"{len(keys)} {keys[:8]}{' ...' if len(keys) > 8 else ''}"

        raise ValueError(
            f"pretrained weights '{source}' do not fit the encoder: missing keys {show(missing)}; "
            f"unexpected keys {show(unexpected)}; shape mismatches {show(shapes)}"
        )
    encoder.load_state_dict(state)
