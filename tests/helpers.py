"""What the test modules share: the repository's paths, the arguments of a tiny `segkit fit`, running
segkit in this process or in a subprocess, and references (the official graph's tolerance, randomized batch
norm, a trained module). Fixtures are in conftest.py."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

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


def segkit_torchrun(*argv, port: int, cwd, processes: int = 2):
    """``segkit ARGV`` under ``torchrun`` with ``processes`` gloo processes of one thread each (:func:`python`)."""
    args = ("-m", "torch.distributed.run", "--nproc_per_node", processes, "--master_port", port, "-m", "segkit")
    return python(*args, *argv, cwd=cwd, threads=1)


def cli(*words, **options) -> list[str]:
    """A segkit command line from keywords, instead of a long literal list:
    ``cli("eval", config=CONFIGS / "voc.yaml", data__root=root, scales=[0.5, 1.0], flip=True)`` is
    ``["eval", "--config", ".../voc.yaml", "--data.root", "...", "--scales", "0.5", "1.0", "--flip"]``. A double
    underscore is a dot; True gives the bare flag, None leaves the option out; a list or tuple gives its values
    one after another; everything else its ``str``."""
    argv = [str(w) for w in words]
    for key, value in options.items():
        if value is None:
            continue
        flag = "--" + key.replace("__", ".")
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


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


def assert_official(logits, want, what: str) -> None:
    """Logits (numpy, NCHW) as the official graph's: within 1e-4 of the largest logit (float32), and at least
    99.99% of the argmaxes agree."""
    rel = abs(logits - want).max() / abs(want).max()
    agree = (logits.argmax(1) == want.argmax(1)).mean()
    assert rel <= 1e-4 and agree >= 0.9999, f"{what}: relative difference {rel:.2e}, argmax agreement {agree:.6f}"


class SignalAt(L.Callback):
    """Sends this process a signal after training step ``step``, as a user's Ctrl-C (2) or a scheduler's
    SIGTERM (15) would; only in process ``rank`` when given. Usable from a config as ``helpers.SignalAt``."""

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


def trained_module(ckpt) -> nn.Module:
    """The checkpoint's model as trained (batch norm not folded), in eval mode: the reference for inference."""
    from segkit.training.task import SegmentationTask

    return SegmentationTask.load_from_checkpoint(ckpt, map_location="cpu", pretrained=None).model.eval()


def assert_labels_but_ties(labels, probs, gap: float = 1e-4) -> None:
    """``labels`` (H, W) are the most probable classes of ``probs`` (K, H, W), but where the two most probable
    classes lie within ``gap`` of each other: the labels of another float computation of the same probabilities
    (another batch size's kernels, another summation order) may go either way there."""
    import numpy as np

    probs = torch.as_tensor(np.asarray(probs)) if not torch.is_tensor(probs) else probs
    labels = torch.as_tensor(np.asarray(labels)).long()
    differ = labels != probs.argmax(0)
    top2 = probs.topk(2, 0).values
    assert differ.float().mean() < 1e-3 and (top2[0] - top2[1])[differ].le(gap).all(), int(differ.sum())


@contextlib.contextmanager
def one_thread():
    """``with one_thread():`` runs PyTorch on one thread, the arithmetic of :func:`segkit_torchrun`'s processes
    (other thread counts split sums otherwise, so the last bits of probabilities, and labels at ties, differ)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# each export form: its options, and whether the file runs at the checkpoint's float precision
EXPORT_FORMS = {
    "end_to_end": (cli(end_to_end=True, outputs=["labels", "probs"]), True),
    "logits_onnx": ([], True),
    "logits_torchscript": (cli(format="torchscript"), True),
    "int8_end_to_end": (
        cli(end_to_end=True, outputs=["labels", "probs"], quantize="int8", calibration_images=4),
        False,
    ),
}


def fit_best(capsys, *config) -> tuple[str, str]:
    """``segkit fit CONFIG`` run here: its best checkpoint and the per-class IoU table printed at that step."""
    import re

    out = segkit_here(capsys, "fit", *config, "--trainer.enable_progress_bar", "false")
    ckpt = re.search(r"Best checkpoint \(val/mIoU = [\d.]+\): (\S+)", out).group(1)
    step = re.search(r"-step(\d+)-", ckpt).group(1)
    return ckpt, out[out.index(f"per-class IoU after step {step}") :]
