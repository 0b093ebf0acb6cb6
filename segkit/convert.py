"""``segkit convert``: an official TensorFlow DeepLab checkpoint (the model zoo's, g3doc/model_zoo.md) as a
segkit checkpoint that every command takes with the same config:

    segkit convert --tf_checkpoint deeplabv3_pascal_train_aug/model.ckpt --config voc.yaml \\
        --output xception65_coco_voc_trainaug.ckpt
    segkit eval --config voc.yaml --ckpt_path xception65_coco_voc_trainaug.ckpt

The encoder, ASPP rates and the rest of the model come from the config's ``model`` section, the class count
and names from its data set; the checkpoint must fit them (:func:`segkit.models.official.convert_tf_checkpoint`
names what does not). TensorFlow is not needed. The written file has Lightning's checkpoint layout (step 0, no
optimizer state), so ``segkit validate|test|eval|predict|export --ckpt_path`` and ``--model.pretrained`` take it.
An existing output file is never overwritten.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning

from .checkpointing import save_atomic
from .data import SegmentationDataModule
from .models.official import CheckpointError, convert_tf_checkpoint, is_tf_checkpoint
from .task import SegmentationTask

OTHER_SECTIONS = ("seed_everything", "trainer", "checkpoint", "optimizer", "lr_scheduler", "ckpt_path")


def parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog="segkit convert", description="Convert an official TensorFlow DeepLab checkpoint.")
    p.add_argument("--config", action=ActionConfigFile, help="the segkit config the model is used with")
    p.add_argument("--tf_checkpoint", type=str, required=True,
                   help="checkpoint prefix as TensorFlow names it: .../model.ckpt for model.ckpt.index and "
                        "model.ckpt.data-00000-of-00001")
    p.add_argument("--output", type=str, required=True, help="the segkit checkpoint to write (.ckpt)")
    p.add_class_arguments(SegmentationTask, "model", skip={"num_classes", "class_names"})
    p.add_subclass_arguments(SegmentationDataModule, "data", required=True)
    for other in OTHER_SECTIONS:
        p.add_argument(f"--{other}", type=Any, default=None, help="ignored here")
    return p


def convert(tf_checkpoint: str, output: str, model_args: dict, datamodule: SegmentationDataModule) -> str:
    """Writes ``output`` and returns a one-line report."""
    out = Path(output)
    if out.exists():
        raise FileExistsError(f"{out} exists; segkit convert does not overwrite files: choose another --output")
    if not is_tf_checkpoint(tf_checkpoint):
        raise FileNotFoundError(f"no TensorFlow checkpoint at {tf_checkpoint} ({tf_checkpoint}.index not found); "
                                "give the prefix, e.g. .../model.ckpt for model.ckpt.index")
    task = SegmentationTask(**{**model_args, "pretrained": None}, num_classes=datamodule.num_classes,
                            class_names=list(datamodule.class_names))
    # a data set that ignores raw label 0 (ADE20K) takes an official checkpoint with that label's logit first
    converted = convert_tf_checkpoint(tf_checkpoint, task.model,
                                      zero_label_ignored=getattr(datamodule, "reduce_zero_label", False))
    if not converted.whole_model:
        raise CheckpointError(f"{tf_checkpoint} holds the {converted.encoder} backbone only (an ImageNet checkpoint): "
                              "there is no segmentation model to convert; fine-tune from it with "
                              f"--model.pretrained {tf_checkpoint}")
    task.model.load_state_dict({**task.model.state_dict(), **converted.state})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({
        "epoch": 0, "global_step": 0, "pytorch-lightning_version": lightning.__version__,
        "state_dict": {f"model.{k}": v for k, v in task.model.state_dict().items()},
        "hparams_name": "kwargs", "hyper_parameters": dict(task.hparams),
        "converted_from": {"tf_checkpoint": str(tf_checkpoint), "dropped": converted.dropped},
    }, out)
    dropped = ", ".join(sorted(converted.dropped)) or "nothing"
    return (f"{tf_checkpoint} -> {out}: {converted.encoder}, {converted.num_classes} classes, "
            f"{len(converted.state)} variables converted; dropped {dropped}")


def main(args: list[str]) -> None:
    p = parser()
    cfg = p.parse_args(args)
    for section in OTHER_SECTIONS:  # a trainer's logger would be built (and W&B started) otherwise
        cfg[section] = None
    init = p.instantiate_classes(cfg, instantiate_groups=False)  # the DataModule; the model section stays args
    # errors (CheckpointError, FileNotFoundError, FileExistsError) reach the user in one line through cli.main
    print(convert(cfg.tf_checkpoint, cfg.output, dict(vars(init.model)), init.data), flush=True)
