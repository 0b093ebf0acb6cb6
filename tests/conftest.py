"""Fixtures: tiny synthetic data sets in the real on-disk layouts (written by segkit itself), briefly trained
checkpoints, the official graph's outputs, and W&B offline in every test. Helpers: helpers.py."""

import os

import lightning as L
import pytest
import torch
from helpers import REPO, python, randomize_batchnorm

os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory):
    """A VOC-layout directory with 12 training and 5 validation images (64-96 px)."""
    from segkit.data import make_synthetic_voc

    root = tmp_path_factory.mktemp("tiny_voc")
    make_synthetic_voc(root, num_train=12, num_val=5, size_range=(64, 96), seed=1)
    return root


@pytest.fixture(scope="session")
def official(tmp_path_factory):
    """``official(arch)``: the prefix of a checkpoint of the official DeepLabV3+ graph (tests/official_tf.py, run
    by TensorFlow in a subprocess) with random weights and batch-norm statistics, for ``xception41/65/71``;
    next to it the graph's inputs and logits at 513 and 320 px (odd and even), output strides 16 and 8
    (``image_<size>.npy``, ``logits_<size>_os<stride>.npy``, NCHW). The three graphs run once per session, in
    one TensorFlow process."""
    root = tmp_path_factory.mktemp("official")

    def reference(arch: str) -> str:
        if not (root / arch / "model.ckpt.index").exists():
            python(REPO / "tests" / "official_tf.py", root, "41,65,71", "513,320", "16,8", cwd=root, check=True)
        return str(root / arch / "model.ckpt")

    return reference


@pytest.fixture(scope="session")
def checkpoint(tiny_voc, tmp_path_factory):
    """A small VOC model (xception_tiny, decoder width 32) after 15 training steps: it predicts several classes,
    so scores are not trivial."""

    from segkit.data import VOCDataModule
    from segkit.training.task import SegmentationTask

    tmp = tmp_path_factory.mktemp("checkpoint")
    L.seed_everything(0)
    task = SegmentationTask(num_classes=21, encoder="xception_tiny", decoder_channels=32, lr=0.05)
    trainer = L.Trainer(
        max_steps=15,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp,
        enable_checkpointing=False,
    )
    trainer.fit(task, VOCDataModule(root=str(tiny_voc), batch_size=4, crop_size=48, num_workers=0))
    ckpt = tmp / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


@pytest.fixture(scope="session")
def random_bn_checkpoint(checkpoint, tmp_path_factory):
    """:func:`checkpoint` with random batch-norm statistics and scales, so that folding them is tested."""
    from segkit.training.task import SegmentationTask

    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    task = SegmentationTask(**{**data["hyper_parameters"], "pretrained": None})
    task.load_state_dict(data["state_dict"])
    data["state_dict"] = randomize_batchnorm(task).state_dict()
    path = tmp_path_factory.mktemp("random_bn") / "model.ckpt"
    torch.save(data, path)
    return path


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service():
    """A W&B run made inside the test process leaves WANDB_SERVICE (its service's socket) in os.environ;
    subprocesses started by later tests would attach to that service instead of starting their own."""
    yield
    os.environ.pop("WANDB_SERVICE", None)
