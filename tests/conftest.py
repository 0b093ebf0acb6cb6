"""Shared fixtures: tiny synthetic data sets in the real on-disk layouts (written by segkit itself) and briefly
trained checkpoints; and the helpers test modules import (``from conftest import segkit, TINY_VOC_ARGS``)."""

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# a `segkit fit|validate` on the tiny VOC set: the small encoder, small crops, one process, no downloads
TINY_VOC_ARGS = (
    "--data.num_workers",
    "0",
    "--data.batch_size",
    "4",
    "--data.crop_size",
    "48",
    "--model.encoder",
    "xception_tiny",
    "--model.decoder_channels",
    "32",
    "--model.pretrained",
    "null",
    "--trainer.accelerator",
    "cpu",
    "--trainer.enable_progress_bar",
    "false",
)


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory):
    """A VOC-layout directory with 12 training and 5 validation images (64-96 px)."""
    from segkit.data import make_synthetic_voc

    root = tmp_path_factory.mktemp("tiny_voc")
    make_synthetic_voc(root, num_train=12, num_val=5, size_range=(64, 96), seed=1)
    return root


def python(*args, cwd, threads: int | None = None, env: dict | None = None, check: bool = False):
    """``python ARGS`` in a subprocess; ``threads`` limits each of its processes' threads (DDP workers side by
    side would otherwise slow each other down many times over on 2 cores). ``check``: assert it succeeded."""
    env = {**os.environ, **(env or {})}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def run_here(capsys, *argv, cwd=None) -> subprocess.CompletedProcess:
    """``segkit ARGV`` in this process, as :func:`segkit` runs it in a subprocess: the exit status, standard output
    and standard error (a message given to sys.exit there, as Python prints it), in the folder ``cwd``; without
    a subprocess's start-up (importing PyTorch and Lightning: about 8 s on 2 cores)."""
    from segkit.commands import main

    capsys.readouterr()  # what earlier steps printed
    code, before = 0, os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    finally:
        os.chdir(before)
    out, err = capsys.readouterr()
    if isinstance(code, str):
        code, err = 1, err + code + "\n"
    return subprocess.CompletedProcess(["segkit", *map(str, argv)], code or 0, out, err)


def segkit_here(capsys, *argv) -> str:
    """``segkit ARGV`` run in this process (:func:`run_here`), which must succeed; its standard output."""
    proc = run_here(capsys, *argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def print_config(capsys, *args) -> dict:
    """The config ``segkit fit ARGS --print_config`` prints (run in this process), read back."""
    import yaml

    from segkit.commands import main

    with pytest.raises(SystemExit) as exit:
        main(["fit", *map(str, args), "--print_config"])
    assert exit.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def segkit(*args, **kwargs):
    """``python -m segkit ARGS`` in a subprocess (the ``segkit`` command), as :func:`python`."""
    return python("-m", "segkit", *args, **kwargs)


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


def assert_official(logits, want, what: str) -> None:
    """Logits (numpy, NCHW) as the official graph's: within 1e-4 of the largest logit (float32), and at least
    99.99% of the argmaxes agree."""
    rel = abs(logits - want).max() / abs(want).max()
    agree = (logits.argmax(1) == want.argmax(1)).mean()
    assert rel <= 1e-4 and agree >= 0.9999, f"{what}: relative difference {rel:.2e}, argmax agreement {agree:.6f}"


class SignalAt(L.Callback):
    """Sends this process a signal after training step ``step``, as a user's Ctrl-C (2) or a scheduler's
    SIGTERM (15) would; only in process ``rank`` when given. Usable from a config as ``conftest.SignalAt``."""

    def __init__(self, step: int, signum: int, rank: int | None = None) -> None:
        self.step, self.signum, self.rank = step, signum, rank

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            os.kill(os.getpid(), self.signum)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random batch-norm statistics and affine parameters, so that identity batch norms hide nothing (parity,
    folding)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


@pytest.fixture(scope="session")
def checkpoint(tiny_voc, tmp_path_factory):
    """A small VOC model (xception_tiny, decoder width 32) after 15 training steps: it predicts several classes,
    so scores are not trivial."""
    import lightning as L

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


def trained_module(ckpt) -> nn.Module:
    """The checkpoint's model as trained (batch norm not folded), in eval mode: the reference for inference."""
    from segkit.training.task import SegmentationTask

    return SegmentationTask.load_from_checkpoint(ckpt, map_location="cpu", pretrained=None).model.eval()


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service():
    """A W&B run made inside the test process leaves WANDB_SERVICE (its service's socket) in os.environ;
    subprocesses started by later tests would attach to that service instead of starting their own."""
    yield
    os.environ.pop("WANDB_SERVICE", None)
