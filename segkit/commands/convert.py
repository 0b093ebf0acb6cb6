"""``segkit convert``: an official TensorFlow DeepLab checkpoint (the model zoo's, g3doc/model_zoo.md) as a
segkit checkpoint that every command takes with the same config:

    segkit convert --tf_checkpoint deeplabv3_pascal_train_aug/model.ckpt --config voc.yaml \\
        --output xception65_coco_voc_trainaug.ckpt
    segkit eval --config voc.yaml --ckpt_path xception65_coco_voc_trainaug.ckpt

What the conversion takes and writes: :mod:`segkit.training.convert`.
"""

from __future__ import annotations

from typing import Any

from .options import DATA_HELP, wants_help

MODEL_HELP = (
    "the model: the config's model section, segkit fit's (encoder, output_stride, ...; --model.KEY VALUE "
    "overrides one; `segkit fit --help` lists them)"
)
OTHER_SECTIONS = ("seed_everything", "trainer", "checkpoint", "optimizer", "lr_scheduler", "ckpt_path")


def parser(help_only: bool = False):
    """The options; ``help_only``: a parser that prints them, the model and data sections described in a line
    each instead of read from their classes (which imports PyTorch and Lightning)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(
        prog="segkit convert", description="Convert an official TensorFlow DeepLab checkpoint.", exit_on_error=False
    )
    p.add_argument("--config", action=ActionConfigFile, help="the segkit config the model is used with")
    p.add_argument(
        "--tf_checkpoint",
        type=str,
        required=True,
        help="checkpoint prefix as TensorFlow names it: .../model.ckpt for model.ckpt.index and "
        "model.ckpt.data-00000-of-00001",
    )
    p.add_argument("--output", type=str, required=True, help="the segkit checkpoint to write (.ckpt)")
    if help_only:
        p.add_argument("--model", type=Any, default=None, help=MODEL_HELP)
        p.add_argument("--data", type=Any, default=None, help=DATA_HELP)
    else:
        from ..data import SegmentationDataModule
        from ..training.task import SegmentationTask

        p.add_class_arguments(SegmentationTask, "model", skip={"num_classes", "class_names"})
        p.add_subclass_arguments(SegmentationDataModule, "data", required=True)
    for other in OTHER_SECTIONS:
        p.add_argument(f"--{other}", type=Any, default=None, help="ignored here")
    return p


def main(args: list[str]) -> None:
    p = parser(help_only=wants_help(args))
    cfg = p.parse_args(args)
    # imported once the options are read: --help answers without PyTorch
    from ..training.convert import convert

    for section in OTHER_SECTIONS:  # a trainer's logger would be built (and W&B started) otherwise
        cfg[section] = None
    init = p.instantiate(cfg, instantiate_groups=False)  # the DataModule; the model section stays args
    # errors (CheckpointError, FileNotFoundError, FileExistsError) reach the user in one line through cli.main
    print(convert(cfg.tf_checkpoint, cfg.output, dict(vars(init.model)), init.data), flush=True)
