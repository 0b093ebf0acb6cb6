"""An official TensorFlow DeepLab checkpoint (the model zoo's, g3doc/model_zoo.md) as a segkit checkpoint.

The encoder, ASPP rates and the rest of the model come from the config's ``model`` section, the class count
and names from its data set; the checkpoint must fit them (:func:`segkit.models.official.convert_tf_checkpoint`
names what does not). TensorFlow is not needed. The written file has Lightning's checkpoint layout (step 0, no
optimizer state), so ``segkit validate|test|eval|predict|export --ckpt_path`` and ``--model.pretrained`` take it.
An existing output file is never overwritten.
"""

from __future__ import annotations

from pathlib import Path

import lightning

from ..data import SegmentationDataModule
from ..io.torch_files import save_atomic
from ..models.official import CheckpointError, convert_tf_checkpoint, is_tf_checkpoint
from .task import SegmentationTask


def convert(tf_checkpoint: str, output: str, model_args: dict, datamodule: SegmentationDataModule) -> str:
    """Writes ``output`` and returns a one-line report."""
    out = Path(output)
    if out.exists():
        raise FileExistsError(f"{out} exists; segkit convert does not overwrite files: choose another --output")
    if not is_tf_checkpoint(tf_checkpoint):
        raise FileNotFoundError(
            f"no TensorFlow checkpoint at {tf_checkpoint} ({tf_checkpoint}.index not found); "
            "give the prefix, e.g. .../model.ckpt for model.ckpt.index"
        )
    task = SegmentationTask(
        **{**model_args, "pretrained": None},
        num_classes=datamodule.num_classes,
        class_names=list(datamodule.class_names),
    )
    # a data set that ignores raw label 0 (ADE20K) takes an official checkpoint with that label's logit first
    converted = convert_tf_checkpoint(
        tf_checkpoint, task.model, zero_label_ignored=getattr(datamodule, "reduce_zero_label", False)
    )
    if not converted.whole_model:
        raise CheckpointError(
            f"{tf_checkpoint} holds the {converted.encoder} backbone only (an ImageNet checkpoint): "
            "there is no segmentation model to convert; fine-tune from it with "
            f"--model.pretrained {tf_checkpoint}"
        )
    task.model.load_state_dict({**task.model.state_dict(), **converted.state})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(
        {
            "epoch": 0,
            "global_step": 0,
            "pytorch-lightning_version": lightning.__version__,
            "state_dict": {f"model.{k}": v for k, v in task.model.state_dict().items()},
            "hparams_name": "kwargs",
            "hyper_parameters": dict(task.hparams),
            "segkit_data": datamodule.inference_record(),
            "converted_from": {"tf_checkpoint": str(tf_checkpoint), "dropped": converted.dropped},
        },
        out,
    )
    dropped = ", ".join(sorted(converted.dropped)) or "nothing"
    return (
        f"{tf_checkpoint} -> {out}: {converted.encoder}, {converted.num_classes} classes, "
        f"{len(converted.state)} variables converted; dropped {dropped}"
    )
