"""Writing a module as ONNX (PyTorch's ``torch.export``-based exporter, dynamic sizes) or TorchScript (traced),
with segkit's metadata stored in the file; never over an existing file.

ONNX metadata is ``metadata_props`` (key ``segkit``, a JSON string); TorchScript's is the extra file
``segkit.json`` (``torch.jit.load(path, _extra_files={"segkit.json": ""})``). ONNX dimensions listed in
``dynamic`` are dynamic: the graph is exported strictly (a size the code would fix is an error, never a
silently fixed graph), and the symbolic sizes are named after what they are.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ..io.disk import DiskFullError, free_bytes, is_disk_full
from ..io.exported_metadata import FORMATS, set_onnx_metadata
from .end_to_end import EndToEnd


def export_onnx(
    module: nn.Module,
    example: torch.Tensor,
    output: Path,
    meta: dict,
    input_name: str = "image",
    output_names: tuple[str, ...] = ("logits",),
    dynamic: dict[int, str] | None = None,
    opset: int = 18,
) -> None:
    """``module(example)`` as ONNX, the input's dimensions in ``dynamic`` (index -> name) dynamic."""
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
    dims = {i: torch.export.Dim.DYNAMIC for i in dynamic} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress and deprecation chatter
        # exported first on its own: torch.onnx.export would fall back to other tracers, one of which fixes
        # the sizes the code computes with, when the program does not hold for every size
        program = torch.export.export(module, (example,), dynamic_shapes=(dims,) if dims else None)
        onnx_program = torch.onnx.export(
            program,
            input_names=[input_name],
            output_names=list(output_names),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    proto = onnx_program.model_proto
    if dynamic:  # the exporter names the symbolic sizes s0, s1...: call them what they are
        shape = proto.graph.input[0].type.tensor_type.shape.dim
        names = {shape[i].dim_param: name for i, name in dynamic.items() if shape[i].dim_param}
        for info in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
            for d in info.type.tensor_type.shape.dim:
                if d.dim_param in names:  # (assigning dim_param would erase a fixed dim_value)
                    d.dim_param = names[d.dim_param]
    set_onnx_metadata(proto, meta)
    onnx.save(proto, str(output))


def export_torchscript(module: nn.Module, example: torch.Tensor, output: Path, meta: dict) -> None:
    with warnings.catch_warnings():
        # TracerWarnings about Python ints taken from shapes, and PyTorch's notice that TorchScript is deprecated
        # (docs/deployment.md says so and recommends ONNX)
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(output), _extra_files={"segkit.json": json.dumps(meta)})


def check_new(output: Path) -> Path:
    """``output`` as a Path, refused when it exists (an export never replaces a file)."""
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} already exists; choose another --output")
    return output


def write_new(output: Path, write) -> None:
    """Calls ``write(partial)`` for ``<output>.partial`` and moves the finished file to ``output``; nothing is
    left behind when writing fails, and an existing file is never replaced."""
    output = check_new(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        try:
            write(partial)
        except Exception as e:
            if is_disk_full(e):
                partial.unlink(missing_ok=True)
                raise DiskFullError(output, None, free_bytes(output.parent)) from None
            raise
        if output.exists():
            raise FileExistsError(f"{output} appeared while it was being written; choose another --output")
        partial.rename(output)
    finally:
        partial.unlink(missing_ok=True)


def write_logits_file(
    model: nn.Module, fmt: str, path: Path, meta: dict, height: int = 513, width: int = 513, dynamic: bool = True
) -> None:
    """Writes the logits form of ``model`` (eval mode) as ``fmt`` at ``path``.

    ONNX files have a dynamic batch size, height and width unless ``dynamic=False`` (batch 1, ``height`` x
    ``width``); the example input of that size is what the model is traced with. TorchScript is traced: its
    shape arithmetic is recorded, so it also takes other sizes.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    model = model.float().cpu().eval()
    # two images in a dynamic example: a size of 1 would be taken for a constant
    example = torch.randn(2 if dynamic and fmt == "onnx" else 1, model.in_channels, height, width)
    with torch.no_grad():
        if fmt == "onnx":
            dims = {0: "batch", 2: "height", 3: "width"} if dynamic else None
            export_onnx(model, example, path, meta, "image", ("logits",), dims)
        else:
            export_torchscript(model, example, path, meta)


def write_end_to_end_file(module: EndToEnd, path: Path, meta: dict) -> None:
    """Writes ``module`` as ONNX at ``path``, its height and width (and batch, when batched) dynamic."""
    module = module.float().cpu().eval()
    # two images of unequal sides: no size may be taken for a constant
    shape = (2, 200, 264, module.in_channels) if module.batched else (200, 264, module.in_channels)
    example = torch.randint(0, 256, shape, dtype=torch.int32).to(module.pixel_dtype)
    dims = {0: "batch", 1: "height", 2: "width"} if module.batched else {0: "height", 1: "width"}
    with torch.no_grad():
        export_onnx(module, example, path, meta, "image", module.outputs, dims)
