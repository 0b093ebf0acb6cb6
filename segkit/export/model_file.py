"""A checkpoint's model as a new model file for its data set: the form and format asked for, its metadata, and
optionally its INT8 copy and its verification, as ``segkit export`` writes it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from ..head import Head
from ..inference.settings import InferenceSettings
from ..io.exported_metadata import end_to_end_contract, logits_contract, metadata, write_metadata
from .end_to_end import EndToEnd
from .quantize import calibration_indices, quantize_int8
from .writers import write_end_to_end_file, write_logits_file, write_new


def write_model_file(
    model: nn.Module,
    datamodule,
    output: Path,
    *,
    checkpoint: str | Path,
    end_to_end: bool = False,
    fmt: str = "onnx",
    outputs: Sequence[str] = ("labels",),
    batched: bool = False,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    pad_to: Sequence[int] | None = None,
    static: bool = False,
    height: int = 513,
    width: int = 513,
    quantize: str | None = None,
    calibration_images: int = 100,
    keep_float: Sequence[str] = (),
    verify: bool = False,
    split: str = "val",
) -> dict:
    """Writes ``model`` (an inference model of ``checkpoint``, :func:`~segkit.inference.load_inference_model`) for
    ``datamodule``'s images and classes at ``output``, a new file (nothing is replaced; a file is whole or absent),
    and returns its metadata.

    The end-to-end form (``end_to_end``: ONNX, its ``outputs``, ``batched`` input, test-time ``scales``, ``flip``
    and ``pad_to`` in the graph) or the logits form (``fmt`` onnx or torchscript; ``static``: a fixed batch of 1
    and ``height`` x ``width``, the size it is traced at). ``quantize="int8"``: static INT8 for CPUs, calibrated on
    ``calibration_images`` training images chosen with seed 0, ``keep_float`` convolutions left float.
    ``verify``: the file's labels scored against the checkpoint's on ``split``, recorded in the file.
    """
    record = datamodule.inference_record()
    head = Head.of(model)
    k = datamodule.num_classes
    if end_to_end:
        module = EndToEnd(
            model,
            datamodule.mean,
            datamodule.std,
            scales=scales,
            flip=flip,
            pad_to=pad_to,
            outputs=outputs,
            batched=batched,
            pixel_max=record["pixel_max"],
        )
        contract = end_to_end_contract(
            k,
            module.outputs,
            batched=batched,
            labels_dtype=str(module.labels_dtype).removeprefix("torch."),
            in_channels=model.in_channels,
            pixel_dtype=str(module.pixel_dtype).removeprefix("torch."),
            multilabel=model.multilabel,
        )
        settings = {"scales": module.scales, "flip": flip, "pad_to": pad_to}
    else:
        dynamic = fmt == "torchscript" or not static
        contract = logits_contract(
            k, dynamic=dynamic, in_channels=model.in_channels, pixel_max=record["pixel_max"], head=head.mode
        )
        settings = {"scales": [1.0], "flip": False, "pad_to": None}
    settings["output_stride"] = model.output_stride
    encoder = getattr(model.encoder, "arch", None) or getattr(model.encoder, "name", type(model.encoder).__name__)
    meta = metadata(
        "end_to_end" if end_to_end else "logits",
        contract,
        class_names=datamodule.class_names,
        palette=datamodule.palette,
        mean=datamodule.mean,
        std=datamodule.std,
        settings=settings,
        checkpoint=checkpoint,
        encoder=encoder,
        image=record,
        thresholds=getattr(model, "thresholds", None),
        head=head.mode,
    )

    def write_float(path: Path) -> None:
        if end_to_end:
            write_end_to_end_file(module, path, meta)
        else:
            write_logits_file(model, fmt, path, meta, height=height, width=width, dynamic=not static)

    def write(path: Path) -> None:
        if quantize:
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                float_file = Path(tmp) / "float.onnx"
                write_float(float_file)
                train = datamodule.train_splits()[0]
                dataset = datamodule.split_dataset(train)
                indices = calibration_indices(len(dataset), calibration_images)
                transform = None if end_to_end else datamodule.eval_transform()
                report = quantize_int8(
                    float_file, path, _calibration_inputs(dataset, train, indices, transform), keep_float
                )
                meta["quantization"] = {
                    **report,
                    "calibration_images": len(indices),
                    "calibration_split": train,
                    "seed": 0,
                }
                write_metadata(path, meta)
        else:
            write_float(path)
        if verify:
            from .verify import verify as verify_file

            meta["verification"] = verify_file(
                path,
                model,
                datamodule.split_dataset(split),
                settings=InferenceSettings.of(meta["settings"]),
                transform=datamodule.eval_transform(),
                split=split,
            )
            write_metadata(path, meta)

    write_new(output, write)
    return meta


def _calibration_inputs(dataset, split: str, indices: list[int], transform) -> Iterator[np.ndarray]:
    """The images at ``indices`` of the training ``split`` as stored (the end-to-end graph's input), or with the
    evaluation ``transform`` as a (1, C, H, W) float32 batch (the logits form's)."""
    for i in indices:
        try:
            image = dataset.load(i)[0]
        except (OSError, ValueError) as e:
            raise ValueError(f"calibration image {i} of the {split} split: {e}") from None
        yield image if transform is None else transform(image=image)["image"][None].numpy().astype(np.float32)
