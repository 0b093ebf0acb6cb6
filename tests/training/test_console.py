"""segkit.training.console: what `segkit fit` shows. No third-party advertisement or deprecation lines, a model
summary with multiply-adds at the crop size (no column of zeros), a progress bar counting steps to max_steps."""

import re

import pytest
from helpers import CONFIGS, segkit

from segkit.models import DeepLabV3Plus
from segkit.models.complexity import count_macs

NOISE = ("💡", "litlogger", "litmodels", "deprecated", "Epoch 0/-2", "FLOPs", "Trainer already configured")


def _fit_args(tmp_path, *extra):
    return (
        "fit",
        "--config",
        CONFIGS / "demo.yaml",
        "--data.root",
        tmp_path / "data",
        "--data.num_train",
        "8",
        "--data.num_val",
        "2",
        "--data.batch_size",
        "4",
        "--trainer.max_steps",
        "3",
        "--trainer.val_check_interval",
        "2",
        "--trainer.logger",
        "false",
        *extra,
    )


def test_fit_prints_no_noise_a_real_summary_and_steps(tmp_path):
    """As a user sees it: a process of its own, W&B off, Rich's progress bar."""
    proc = segkit(*_fit_args(tmp_path), cwd=tmp_path, threads=2, env={"WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = proc.stdout + proc.stderr
    assert not [n for n in NOISE if n in shown], shown
    # the summary: the demo model's parameters and multiply-adds at its 96x96 crop, per module and in total
    model = DeepLabV3Plus(5, "xception_tiny", 16, decoder_channels=128)  # the demo model
    macs = count_macs(model, (96, 96))
    assert "mult-adds (G) at 96x96" in proc.stdout
    for name, module in [*model.named_children(), ("total", model)]:
        row = re.search(rf"^{name}\s+([\d.]+)\s+([\d.]+)$", proc.stdout, re.M)
        assert row, proc.stdout
        assert float(row.group(1)) == pytest.approx(sum(p.numel() for p in module.parameters()) / 1e6, abs=0.005)
        assert float(row.group(2)) == pytest.approx(macs[name] / 1e9, abs=0.005)
    # one bar for the whole run, in optimizer steps: 3 of max_steps 3 (the set has 2 batches per epoch)
    assert re.search(r"Step\s+\S+ 3/3 ", proc.stdout), proc.stdout[-2000:]


def test_the_tqdm_bar_counts_steps_across_epochs(tmp_path, capsys, monkeypatch):
    """Where Rich is not installed, Lightning's tqdm bar: the same count, over 2 epochs of 2 batches."""
    from segkit.training import console

    monkeypatch.setattr(console, "_RICH_AVAILABLE", False)
    from helpers import run_here

    proc = run_here(capsys, *_fit_args(tmp_path, "--trainer.max_steps", "4"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bars = re.findall(r"Step: +\d+%\|[^|]*\| (\d+)/(\d+)", proc.stdout)  # Lightning's tqdm writes to stdout
    assert bars and {total for _, total in bars} == {"4"} and bars[-1][0] == "4", proc.stdout[-2000:]
    assert "Epoch" not in proc.stdout and not [n for n in NOISE if n in proc.stdout + proc.stderr]
