"""``segkit export``: the trained model as ONNX or TorchScript, to run without segkit.

    segkit export --config voc.yaml --ckpt_path CKPT --format onnx --output deeplab.onnx
    segkit export --config voc.yaml --ckpt_path CKPT --format torchscript --output deeplab.pt

What the file takes, returns and stores: :mod:`segkit.export`. ``--static`` writes an ONNX model of fixed batch 1
and ``--height`` x ``--width``; otherwise these set only the example input the model is traced with.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..export import FORMATS, export, metadata
from ..inference import load_inference_model
from .options import config_datamodule, model_parser


def main(args: list[str]) -> None:
    from jsonargparse import ActionYesNo

    parser = model_parser("segkit export", "Export a checkpoint to ONNX or TorchScript.")
    parser.add_argument("--format", type=str, required=True, choices=FORMATS, help="onnx or torchscript")
    parser.add_argument("--output", type=str, required=True, help="file to write (never overwritten)")
    parser.add_argument("--height", type=int, default=513, help="height of the example input")
    parser.add_argument("--width", type=int, default=513, help="width of the example input")
    parser.add_argument(
        "--static",
        action=ActionYesNo,
        default=False,
        help="ONNX: fixed batch 1 and --height x --width instead of dynamic sizes",
    )
    cfg = parser.parse_args(args)
    datamodule = config_datamodule(parser, cfg)
    model = load_inference_model(cfg.ckpt_path, datamodule.num_classes, cfg.output_stride)
    encoder = getattr(model.encoder, "arch", None) or getattr(model.encoder, "name", type(model.encoder).__name__)
    meta = metadata(datamodule.class_names, datamodule.mean, datamodule.std, model.output_stride, encoder)
    try:
        export(model, cfg.format, Path(cfg.output), meta, cfg.height, cfg.width, dynamic=not cfg.static)
    except FileExistsError as e:
        sys.exit(f"segkit export: {e}")
    print(
        f"segkit export: wrote {cfg.output} ({cfg.format}, input (N, 3, H, W) normalized with mean "
        f"{list(datamodule.mean)} and std {list(datamodule.std)}, {datamodule.num_classes} classes)",
        flush=True,
    )
