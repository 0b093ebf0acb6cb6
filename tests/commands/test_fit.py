"""CLI tests: the configs parse with their overrides, `segkit fit` trains on a VOC-layout folder, the demo."""

import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from helpers import CONFIGS, TINY_VOC_ARGS, print_config, run_here, segkit

from segkit import __version__ as segkit_version
from segkit.commands import main

CONFIG_NAMES = ["demo.yaml", "voc.yaml", "voc_aug.yaml", "ade20k.yaml", "demo_folder.yaml"]


def test_voc_config_holds_the_paper_recipe(capsys):
    cfg = print_config(capsys, "--config", str(CONFIGS / "voc.yaml"))
    model, data = cfg["model"], cfg["data"]["init_args"]
    assert model["encoder"] == "xception65" and model["output_stride"] == 16
    assert model["atrous_rates"] == [6, 12, 18]
    assert model["lr"] == 0.007 and model["momentum"] == 0.9 and model["poly_power"] == 0.9
    assert data["crop_size"] == 513 and data["batch_size"] == 16 and data["scale_range"] == [0.5, 2.0]
    assert data["scale_step"] == 0.25  # official train.py's scale_factor_step_size
    assert cfg["trainer"]["max_steps"] == 30000
    # every visible GPU, synchronized batch norm, bf16; the batch of 16 is the global one
    trainer = cfg["trainer"]
    assert (trainer["devices"], trainer["sync_batchnorm"], trainer["precision"]) == ("auto", True, "bf16-mixed")
    aug = print_config(capsys, "--config", str(CONFIGS / "voc_aug.yaml"))
    assert aug["data"]["init_args"]["augmented"] is True and aug["model"] == model


def test_ade20k_config_holds_the_official_command(capsys):
    """g3doc/ade20k.md's train.py flags, and train.py's defaults for those it leaves out."""
    cfg = print_config(capsys, "--config", str(CONFIGS / "ade20k.yaml"))
    model, data = cfg["model"], cfg["data"]["init_args"]
    assert cfg["data"]["class_path"] == "segkit.data.ADE20KDataModule"
    assert (model["encoder"], model["output_stride"], model["atrous_rates"]) == ("xception65", 16, [6, 12, 18])
    assert (model["lr"], model["momentum"], model["weight_decay"], model["poly_power"]) == (1e-4, 0.9, 4e-5, 0.9)
    assert (data["batch_size"], data["crop_size"], data["scale_range"], data["scale_step"]) == (
        4,
        513,
        [0.5, 2.0],
        0.25,
    )
    assert (data["resize_to_range"], data["resize_factor"]) == ([513, 513], 16)
    assert cfg["trainer"]["max_steps"] == 150000 and model["freeze_bn"] is False
    assert "classes" not in data and "reduce_zero_label" not in data  # fixed by the layout, not settable


@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_overrides_work_in_every_config(capsys, config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the bundled config by its name, from a folder without it
    cfg = print_config(
        capsys,
        "--config",
        config,
        "--data.root",
        str(tmp_path),
        "--data.batch_size",
        "3",
        "--data.crop_size",
        "65",
        "--data.num_workers",
        "0",
        "--model.encoder",
        "resnet18",
        "--model.output_stride",
        "8",
        "--model.pretrained",
        "weights.pth",
        "--trainer.max_steps",
        "7",
        "--trainer.accelerator",
        "cpu",
    )
    data = cfg["data"]["init_args"]
    assert (data["root"], data["batch_size"], data["crop_size"], data["num_workers"]) == (str(tmp_path), 3, 65, 0)
    assert (cfg["model"]["encoder"], cfg["model"]["output_stride"], cfg["model"]["pretrained"]) == (
        "resnet18",
        8,
        "weights.pth",
    )
    assert cfg["trainer"]["max_steps"] == 7 and cfg["trainer"]["accelerator"] == "cpu"


def test_fit_voc_config_on_voc_layout(tiny_voc, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "--config",
            "voc.yaml",
            "--data.root",
            str(tiny_voc),
            "--trainer.max_steps",
            "2",
            "--model.encoder",
            "xception_tiny",
            "--model.pretrained",
            "null",
            "--data.crop_size",
            "64",
            "--data.batch_size",
            "2",
            "--data.num_workers",
            "0",
            "--trainer.accelerator",
            "cpu",
            "--trainer.val_check_interval",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger",
            "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "val: per-class IoU after step 2" in out
    for name in ("background", "aeroplane", "tvmonitor", "val/mIoU", "val/pixel_acc"):
        assert name in out
    best = re.search(r"Best checkpoint \(val/mIoU = ([\d.]+)\): (\S+)", out)
    assert best and Path(best.group(2)).is_file()
    ckpt = torch.load(best.group(2), weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 2
    assert any(
        k.startswith("val/IoU/") for k in Path(best.group(2)).parents[1].joinpath("metrics.csv").read_text().split(",")
    )
    assert (Path(best.group(2)).parent / "last.ckpt").is_file()
    # the run's saved config says it came from the bundled voc.yaml, and of which segkit
    header = Path(best.group(2)).parents[1].joinpath("config.yaml").read_text().split("\n")[:3]
    assert header[1:] == [
        f"# segkit=={segkit_version}",
        f"# --config voc.yaml: the config bundled with segkit {segkit_version} ({CONFIGS / 'voc.yaml'})",
    ]


def test_fit_stops_on_sigterm_with_last_checkpoint_and_diverges_in_one_line(tiny_voc, tmp_path, capsys):
    """Through `segkit fit`: SIGTERM after step 3 of 8 ends the run cleanly with last.ckpt at step 3 and the
    resume command; a learning rate of 1e6 ends it with status 1 and one line."""
    common = [
        "fit",
        "--config",
        str(CONFIGS / "voc.yaml"),
        "--data.root",
        str(tiny_voc),
        *TINY_VOC_ARGS,
        "--trainer.max_steps",
        "8",
        "--trainer.val_check_interval",
        "4",
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(tmp_path),
    ]
    with pytest.raises(SystemExit) as exit:  # an unfinished run: 128 + SIGTERM, as a shell reports it
        main(
            [
                *common,
                "--trainer.callbacks+",
                '{"class_path": "helpers.SignalAt", "init_args": {"step": 3, "signum": 15}}',
            ]
        )
    assert exit.value.code == 128 + signal.SIGTERM
    out = capsys.readouterr().out
    resume = re.search(
        r"segkit: stopped at step 3 \(SIGTERM\); resume with the same command and --ckpt_path (\S+)", out
    )
    assert resume and torch.load(resume.group(1), weights_only=False)["global_step"] == 3
    assert Path(resume.group(1)).name == "last.ckpt"
    with pytest.raises(SystemExit) as exit:
        main([*common, "--model.lr", "1e6"])
    message = str(exit.value.code)
    assert re.fullmatch(r"segkit fit: training diverged at step \d+: .*", message) and "\n" not in message


def test_uneven_global_batch_is_refused_before_ddp_starts(tiny_voc, tmp_path):
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit:
        main(
            [
                "fit",
                "--config",
                str(CONFIGS / "voc.yaml"),
                "--data.root",
                str(tiny_voc),
                *TINY_VOC_ARGS,
                "--data.batch_size",
                "5",
                "--trainer.devices",
                "3",
                "--trainer.strategy",
                "ddp",
                "--trainer.logger",
                "false",
                "--trainer.default_root_dir",
                str(tmp_path),
            ]
        )
    assert str(exit.value.code) == (
        "segkit fit: data.batch_size=5 is the global batch and must divide evenly over 3 process(es) x 1 "
        "accumulation step(s) (trainer.devices x trainer.num_nodes x trainer.accumulate_grad_batches); choose a "
        "multiple of 3"
    )
    assert time.perf_counter() - started < 30  # no process was started


def test_missing_data_is_reported_before_ddp_starts_and_lightning_errors_in_one_line(tmp_path):
    """The data set's files are checked in the launching process, before DDP starts any other; Lightning's
    configuration errors (here an accelerator this machine lacks) end in one line too."""
    common = [
        "--config",
        str(CONFIGS / "voc.yaml"),
        "--data.root",
        str(tmp_path / "nowhere"),
        *TINY_VOC_ARGS,
        "--trainer.logger",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    for command in ("fit", "validate", "test"):
        with pytest.raises(SystemExit) as exit:
            main([command, *common, "--data.batch_size", "6", "--trainer.devices", "3", "--trainer.strategy", "ddp"])
        assert str(exit.value.code).startswith(
            f"segkit {command}: no Pascal VOC 2012 data under data.root={tmp_path / 'nowhere'}: expected "
        ), command
        assert "\n" not in str(exit.value.code)
    if not torch.backends.mps.is_available():
        with pytest.raises(SystemExit) as exit:
            main(["fit", *common, "--trainer.accelerator", "mps"])
        message = str(exit.value.code)
        assert message.startswith("segkit fit: ") and "MPSAccelerator" in message and "\n" not in message, message


@pytest.mark.slow
def test_demo_trains_to_080_miou_and_validates_the_same(tmp_path, capsys):
    """The README's demo, `segkit fit --config demo.yaml` (about 3.5 minutes on 2 CPU cores), without its W&B
    logger (tests/test_wandb.py covers W&B; the logger does not touch the random stream: the same val/mIoU with
    either, measured). Its own process, as users start it; the validation in this one. Under .ci/run, which runs
    the README's command first, that run's console (``SEGKIT_DEMO_LOG``) and folder are checked instead."""
    if os.environ.get("SEGKIT_DEMO_LOG"):  # .ci/run ran the README's command in its folder: that run is checked
        log = Path(os.environ["SEGKIT_DEMO_LOG"])
        out, tmp_path = log.read_text(), log.parent
    else:
        start = time.perf_counter()
        out = segkit(
            "fit",
            "--config",
            "demo.yaml",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger",
            "false",
            cwd=tmp_path,
            check=True,
        ).stdout
        print(f"demo fit took {time.perf_counter() - start:.0f} s")
    best = re.search(r"Best checkpoint \(val/mIoU = ([\d.]+)\): (\S+)", out)
    assert best, out[-2000:]
    score, ckpt = float(best.group(1)), tmp_path / best.group(2)  # printed relative to the run's folder
    assert score >= 0.80, out[-2000:]
    assert ckpt.is_file()
    assert "checkerboard" in out  # the per-class table was printed

    proc = run_here(
        capsys, "validate", "--config", "demo.yaml", "--ckpt_path", ckpt, "--trainer.logger", "false", cwd=tmp_path
    )  # the demo's data.root is relative to the working folder
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    validated = re.findall(r"^\W*val/mIoU\W+(0\.\d{5,}|1\.0+)\W*$", out, re.M)
    assert validated, out[-2000:]
    assert abs(float(validated[-1]) - score) < 1e-6
