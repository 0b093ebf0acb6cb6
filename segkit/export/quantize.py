"""INT8 for CPUs: ONNX Runtime static quantization of an exported ONNX file (QDQ, per-channel weights).

Activations are calibrated on real images (min-max, on images chosen by :func:`calibration_indices`). The
convolutions are quantized, and with them the operators between one convolution and the next (ReLU, the
residual additions, ASPP's concatenation), so that activations stay 8-bit from one to the next: quantizing
the convolutions alone left a third of the time to quantizing and dequantizing between them (the demo model
at 513 x 513 on 2 CPU cores: 89 ms against 80 ms, and no better mIoU). Resizes, softmax, argmax, the
image-pooling branch's global average and the graph's shape arithmetic stay float, where 8 bits would cost
accuracy and buy no speed. Depthwise convolutions are quantized per channel like the others (``keep_float``
leaves them float); measured, not assumed, in docs/deployment.md.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

# activations unsigned 8 bit (ReLU outputs and images are non-negative; ONNX Runtime's fastest x86 kernels take
# uint8 activations with int8 weights), weights signed 8 bit per output channel
SETTINGS = {"format": "QDQ", "weights": "int8 per channel", "activations": "uint8 per tensor"}
OPS = ("Conv", "Relu", "Add", "Concat")


def calibration_indices(num_images: int, count: int, seed: int = 0) -> list[int]:
    """``count`` of ``num_images`` training images, the same ones for the same seed (all when fewer)."""
    if count < 1:
        raise ValueError(f"--calibration_images must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(num_images, size=min(count, num_images), replace=False).tolist())


def quantize_int8(
    model_file: str | Path,
    output: str | Path,
    inputs: Iterable[np.ndarray],
    keep_float: Sequence[str] = (),
    ops: Sequence[str] = OPS,
) -> dict:
    """Writes the INT8 copy of the float ONNX ``model_file`` to ``output``, calibrated on ``inputs`` (arrays as
    the model's ``image`` input takes them); returns what was done, for the file's metadata.

    ``keep_float``: operator kinds left in float besides the non-convolutions: ``depthwise`` (grouped
    convolutions).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = iter(inputs)

        def get_next(self):
            x = next(self.inputs, None)
            return None if x is None else {"image": x}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shapes inferred and constants folded first, as ONNX Runtime's quantization guide asks
        quant_pre_process(str(model_file), str(prepared), skip_symbolic_shape=True)
        excluded = _depthwise_convs(onnx.load(str(prepared))) if "depthwise" in keep_float else []
        quantize_static(
            str(prepared),
            str(output),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    return {**SETTINGS, "ops": list(ops), "kept_float": list(keep_float), "convs_kept_float": len(excluded)}


def _depthwise_convs(proto) -> list[str]:
    names = []
    for node in proto.graph.node:
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group > 1:
                names.append(node.name)
    return names
