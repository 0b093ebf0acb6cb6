"""``segkit export``: the trained model as a file to run without segkit, its accuracy measured on request.

    segkit export --config voc.yaml --ckpt_path CKPT --end_to_end --output deeplab.onnx --verify
    segkit export --config voc.yaml --ckpt_path CKPT --end_to_end --quantize int8 --output deeplab-int8.onnx
    segkit export --config voc.yaml --ckpt_path CKPT --format torchscript --output deeplab.pt

The two forms, what each file takes, returns and records: :mod:`segkit.export`. ``--static`` writes a logits
ONNX model of fixed batch 1 and ``--height`` x ``--width``; otherwise these set only the example input the
logits form is traced with.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Literal

from ..io.exported_metadata import FORMATS, OUTPUTS
from .options import config_datamodule, model_parser, wants_help


def parser(help_only: bool = False):
    from jsonargparse import ActionYesNo

    p = model_parser(
        "segkit export",
        "Export a checkpoint to ONNX (end-to-end or logits, float or INT8) or TorchScript.",
        help_only=help_only,
    )
    p.add_argument("--output", type=str, required=True, help="file to write (never overwritten)")
    p.add_argument("--format", type=Literal[FORMATS], default="onnx", help="onnx or torchscript (logits form)")
    p.add_argument(
        "--end_to_end",
        action=ActionYesNo,
        default=False,
        help="uint8 RGB image in, labels out; normalization, padding, scales and flip in the graph",
    )
    p.add_argument(
        "--outputs", type=str, nargs="+", default=["labels"], help=f"end-to-end outputs: {', '.join(OUTPUTS)}"
    )
    p.add_argument(
        "--batch", action=ActionYesNo, default=False, help="end-to-end input (N, H, W, 3) instead of (H, W, 3)"
    )
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], help="end-to-end input scales, e.g. 0.75 1.0 1.25")
    p.add_argument("--flip", action=ActionYesNo, default=False, help="end-to-end: add left-right flipped inputs")
    p.add_argument(
        "--pad_to",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="end-to-end: pad to H W first, as segkit eval",
    )
    p.add_argument("--quantize", type=Literal["int8"] | None, default=None, help="int8: static INT8 for CPUs")
    p.add_argument("--calibration_images", type=int, default=100, help="training images that calibrate INT8")
    p.add_argument(
        "--keep_float",
        type=Literal["depthwise"],
        nargs="*",
        default=[],
        help="INT8: leave these convolutions float",
    )
    p.add_argument(
        "--verify", action=ActionYesNo, default=False, help="score the file against the checkpoint; stored in it"
    )
    p.add_argument("--split", default="val", help="the split --verify scores")
    p.add_argument("--height", type=int, default=513, help="logits form: height of the example input")
    p.add_argument("--width", type=int, default=513, help="logits form: width of the example input")
    p.add_argument(
        "--static", action=ActionYesNo, default=False, help="logits ONNX: fixed batch 1 and --height x --width"
    )
    return p


def check_options(p, cfg) -> None:
    tta = cfg.scales != [1.0] or cfg.flip or cfg.pad_to is not None or cfg.batch or cfg.outputs != ["labels"]
    if tta and not cfg.end_to_end:
        p.error("--scales, --flip, --pad_to, --batch and --outputs shape the end-to-end form: add --end_to_end")
    if cfg.format == "torchscript" and (cfg.end_to_end or cfg.quantize):
        p.error("--end_to_end and --quantize write ONNX: leave out --format torchscript")
    if cfg.quantize and cfg.static:
        p.error("--quantize takes the dynamic-size model: leave out --static")


def main(args: list[str]) -> None:
    p = parser(help_only=wants_help(args))
    cfg = p.parse_args(args)
    # imported once the options are read: --help answers without PyTorch
    from ..export import EndToEnd, write_end_to_end_file, write_logits_file
    from ..export.writers import check_new, write_new
    from ..head import Head
    from ..inference import load_inference_model
    from ..io.exported_metadata import end_to_end_contract, logits_contract, metadata, write_metadata

    check_options(p, cfg)
    try:
        output = check_new(Path(cfg.output))
    except FileExistsError as e:
        sys.exit(f"segkit export: {e}")
    datamodule = config_datamodule(p, cfg)
    model = load_inference_model(cfg.ckpt_path, datamodule.num_classes, cfg.output_stride)
    record = datamodule.inference_record()
    pixel_max = record["pixel_max"]
    k = datamodule.num_classes
    if cfg.end_to_end:
        module = EndToEnd(
            model,
            datamodule.mean,
            datamodule.std,
            scales=cfg.scales,
            flip=cfg.flip,
            pad_to=cfg.pad_to,
            outputs=cfg.outputs,
            batched=cfg.batch,
            pixel_max=pixel_max,
        )
        contract = end_to_end_contract(
            k,
            module.outputs,
            batched=cfg.batch,
            labels_dtype=str(module.labels_dtype).removeprefix("torch."),
            in_channels=model.in_channels,
            pixel_dtype=str(module.pixel_dtype).removeprefix("torch."),
            multilabel=model.multilabel,
        )
        settings = {"scales": module.scales, "flip": cfg.flip, "pad_to": cfg.pad_to}
    else:
        dynamic = cfg.format == "torchscript" or not cfg.static
        contract = logits_contract(
            k, dynamic=dynamic, in_channels=model.in_channels, pixel_max=pixel_max, head=Head.of(model).mode
        )
        settings = {"scales": [1.0], "flip": False, "pad_to": None}
    settings["output_stride"] = model.output_stride
    encoder = getattr(model.encoder, "arch", None) or getattr(model.encoder, "name", type(model.encoder).__name__)
    meta = metadata(
        "end_to_end" if cfg.end_to_end else "logits",
        contract,
        class_names=datamodule.class_names,
        palette=datamodule.palette,
        mean=datamodule.mean,
        std=datamodule.std,
        settings=settings,
        checkpoint=cfg.ckpt_path,
        encoder=encoder,
        image=record,
        thresholds=getattr(model, "thresholds", None),
        head=Head.of(model).mode,
    )

    def write_float(path: Path) -> None:
        if cfg.end_to_end:
            write_end_to_end_file(module, path, meta)
        else:
            write_logits_file(model, cfg.format, path, meta, height=cfg.height, width=cfg.width, dynamic=not cfg.static)

    def write(path: Path) -> None:
        if cfg.quantize:
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                float_file = Path(tmp) / "float.onnx"
                write_float(float_file)
                meta["quantization"] = quantize(float_file, path, datamodule, cfg)
                write_metadata(path, meta)
        else:
            write_float(path)
        if cfg.verify:
            from ..export.verify import verify

            dataset = datamodule.split_dataset(cfg.split)
            transform = datamodule.eval_transform()
            meta["verification"] = verify(
                path, model, dataset, settings=settings_of(meta), transform=transform, split=cfg.split
            )
            write_metadata(path, meta)

    write_new(output, write)
    print(f"segkit export: wrote {output} ({describe(meta)})", flush=True)
    if meta["verification"]:
        v = meta["verification"]
        print(
            f"segkit export: {v['split']} ({v['num_images']} images): mIoU {100 * v['mIoU']:.2f} "
            f"(checkpoint {100 * v['checkpoint_mIoU']:.2f}), labels equal to the checkpoint's on "
            f"{100 * v['pixel_agreement']:.3f}% of pixels; stored in the file",
            flush=True,
        )


def settings_of(meta: dict):
    """The file's baked-in test-time settings, as the checkpoint's model runs them to compare."""
    from ..inference import InferenceSettings

    return InferenceSettings.of(meta["settings"])


def quantize(float_file: Path, output: Path, datamodule, cfg) -> dict:
    """INT8 of ``float_file``, calibrated on ``--calibration_images`` training images chosen with seed 0."""
    import numpy as np

    from ..export.quantize import calibration_indices, quantize_int8

    dataset = datamodule.split_dataset(datamodule.train_splits()[0])
    indices = calibration_indices(len(dataset), cfg.calibration_images)
    transform = datamodule.eval_transform()

    def inputs():
        for i in indices:
            try:
                image = dataset.load(i)[0]
            except (OSError, ValueError) as e:
                raise ValueError(f"calibration image {i} of the {datamodule.train_splits()[0]} split: {e}") from None
            yield image if cfg.end_to_end else transform(image=image)["image"][None].numpy().astype(np.float32)

    report = quantize_int8(float_file, output, inputs(), cfg.keep_float)
    return {**report, "calibration_images": len(indices), "calibration_split": datamodule.train_splits()[0], "seed": 0}


def describe(meta: dict) -> str:
    def shape(t: dict) -> str:
        return "(" + ", ".join(str(d) for d in t["shape"]) + ")"

    (inp,) = meta["inputs"]
    outs = ", ".join(f"{o['name']} {o['dtype']} {shape(o)}" for o in meta["outputs"])
    kind = meta["form"].replace("_", "-") + (" INT8" if meta["quantization"] else "")
    s = meta["settings"]
    tta = f"scales {s['scales']}, flip {s['flip']}" + (f", padded to {s['pad_to']}" if s["pad_to"] else "")
    return f"{kind}: {inp['name']} {inp['dtype']} {shape(inp)} -> {outs}; {meta['num_classes']} classes; {tta}"
