"""The trained model as ONNX or TorchScript, to run without segkit.

The exported model takes a normalized float32 image batch ``(N, 3, H, W)``, RGB, ``x = (pixel / 255 - mean) /
std``, and returns logits ``(N, num_classes, H, W)`` at the input size; ``argmax`` over dimension 1 gives the
classes. Batch norm is folded into the convolutions. The class names, mean, std and the rest of
:func:`metadata` are stored with the model: ONNX ``metadata_props`` (key ``segkit``, a JSON string), and
for TorchScript the extra file ``segkit.json`` (``torch.jit.load(path, _extra_files={"segkit.json": ""})``).

ONNX files have a dynamic batch size, height and width unless ``dynamic=False``; the example input sets the
size the model is traced with (and the only size a static model takes). TorchScript is traced: its shape
arithmetic is recorded, so it also takes other sizes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

FORMATS = ("onnx", "torchscript")


def metadata(class_names, mean, std, output_stride: int, encoder: str) -> dict:
    return {
        "format": "segkit DeepLabV3+",
        "input": "float32 (N, 3, H, W), RGB, x = (pixel / 255 - mean) / std",
        "output": "float32 logits (N, num_classes, H, W); argmax over dim 1 gives the class index",
        "class_names": list(class_names),
        "num_classes": len(class_names),
        "mean": list(mean),
        "std": list(std),
        "output_stride": output_stride,
        "encoder": encoder,
    }


def export_onnx(
    model: nn.Module, example: torch.Tensor, output: Path, meta: dict, dynamic: bool = True, opset: int = 18
) -> None:
    """ONNX with PyTorch's exporter (torch.export based); metadata under the ``segkit`` key."""
    try:
        import onnx
        import onnxscript  # noqa: F401 - the exporter's dependency
    except ImportError as e:
        raise ImportError(f"ONNX export needs onnx and onnxscript: pip install 'segkit[export]' ({e})") from None
    if not hasattr(torch.export.Dim, "DYNAMIC"):
        raise RuntimeError(
            f"ONNX export needs PyTorch 2.6 or newer (torch.onnx.export(dynamo=True) with dynamic "
            f"shapes); this is {torch.__version__}. TorchScript export works with it."
        )
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress and deprecation chatter
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=(dims,) if dynamic else None,
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    if dynamic:  # the exporter names the symbolic sizes s0, s1...: call them what they are
        names = {
            d.dim_param: name
            for d, name in zip(
                proto.graph.input[0].type.tensor_type.shape.dim, ("batch", "channels", "height", "width")
            )
            if d.dim_param
        }
        for info in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
            for d in info.type.tensor_type.shape.dim:
                if d.dim_param in names:  # (assigning dim_param would erase a fixed dim_value)
                    d.dim_param = names[d.dim_param]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "segkit", json.dumps(meta)
    onnx.save(proto, str(output))


def export_torchscript(model: nn.Module, example: torch.Tensor, output: Path, meta: dict) -> None:
    with warnings.catch_warnings():
        # TracerWarnings about Python ints taken from shapes, and PyTorch's notice that TorchScript is deprecated
        # (docs/deployment.md says so and recommends ONNX)
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(output), _extra_files={"segkit.json": json.dumps(meta)})


def export(
    model: nn.Module, fmt: str, output: Path, meta: dict, height: int = 513, width: int = 513, dynamic: bool = True
) -> None:
    """Writes ``model`` (eval mode, float32, CPU) as ``fmt``; never replaces an existing file."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} already exists; choose another --output")
    output.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().cpu().eval()
    example = torch.randn(1, 3, height, width)
    partial = output.with_name(output.name + ".partial")
    try:
        with torch.no_grad():
            if fmt == "onnx":
                export_onnx(model, example, partial, meta, dynamic)
            else:
                export_torchscript(model, example, partial, meta)
        partial.rename(output)
    finally:
        partial.unlink(missing_ok=True)
