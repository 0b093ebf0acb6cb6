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
    from ..export.model_file import write_model_file
    from ..export.writers import check_new
    from ..inference import load_inference_model

    check_options(p, cfg)
    try:
        output = check_new(Path(cfg.output))
    except FileExistsError as e:
        sys.exit(f"segkit export: {e}")
    datamodule = config_datamodule(p, cfg)
    model = load_inference_model(cfg.ckpt_path, datamodule.num_classes, cfg.output_stride)
    meta = write_model_file(
        model,
        datamodule,
        output,
        checkpoint=cfg.ckpt_path,
        end_to_end=cfg.end_to_end,
        fmt=cfg.format,
        outputs=cfg.outputs,
        batched=cfg.batch,
        scales=cfg.scales,
        flip=cfg.flip,
        pad_to=cfg.pad_to,
        static=cfg.static,
        height=cfg.height,
        width=cfg.width,
        quantize=cfg.quantize,
        calibration_images=cfg.calibration_images,
        keep_float=cfg.keep_float,
        verify=cfg.verify,
        split=cfg.split,
    )
    print(f"segkit export: wrote {output} ({describe(meta)})", flush=True)
    if meta["verification"]:
        v = meta["verification"]
        print(
            f"segkit export: {v['split']} ({v['num_images']} images): mIoU {100 * v['mIoU']:.2f} "
            f"(checkpoint {100 * v['checkpoint_mIoU']:.2f}), labels equal to the checkpoint's on "
            f"{100 * v['pixel_agreement']:.3f}% of pixels; stored in the file",
            flush=True,
        )


def describe(meta: dict) -> str:
    def shape(t: dict) -> str:
        return "(" + ", ".join(str(d) for d in t["shape"]) + ")"

    (inp,) = meta["inputs"]
    outs = ", ".join(f"{o['name']} {o['dtype']} {shape(o)}" for o in meta["outputs"])
    kind = meta["form"].replace("_", "-") + (" INT8" if meta["quantization"] else "")
    s = meta["settings"]
    tta = f"scales {s['scales']}, flip {s['flip']}" + (f", padded to {s['pad_to']}" if s["pad_to"] else "")
    return f"{kind}: {inp['name']} {inp['dtype']} {shape(inp)} -> {outs}; {meta['num_classes']} classes; {tta}"
