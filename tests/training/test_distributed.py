"""DDP on CPU (gloo): the process helpers, synchronized batch norm against one batch norm over the whole batch,
`segkit fit` on 2 processes against 1 (loss curves, resuming on another process count, repeatability) and
`segkit validate` on 2 processes against 1."""

import csv
import re

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import CONFIGS, TINY_VOC_ARGS, one_thread, run_here, segkit
from torch import nn

from segkit.distributed import CPUSyncBatchNorm, convert_sync_batchnorm, is_main, rank_and_world


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 6, generator=g) * 3 + 1
    w = torch.randn(4, 3, 5, 6, generator=g)  # loss = sum(out * w)
    return x, w


def _sync_bn_worker(rank, world, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    helpers = (rank_and_world(), is_main())
    torch.manual_seed(0)
    bn = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3, momentum=0.3)), cpu=True)[0]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    x, w = _data()
    part = slice(rank * 2, rank * 2 + 2)  # two images each
    xr = x[part].clone().requires_grad_()
    out = bn(xr)
    (out * w[part]).sum().backward()
    for p in (bn.weight, bn.bias):
        dist.all_reduce(p.grad)  # DDP would average; the sum is the whole batch's gradient
    torch.save(
        {
            "type": type(bn),
            "out": out.detach(),
            "x_grad": xr.grad,
            "w_grad": bn.weight.grad,
            "b_grad": bn.bias.grad,
            "mean": bn.running_mean,
            "var": bn.running_var,
            "helpers": helpers,
        },
        f"{out_dir}/{rank}.pt",
    )
    dist.destroy_process_group()


@pytest.mark.slow  # two processes / a tool's quick run: after the default set
def test_sync_batchnorm_on_two_cpu_processes_equals_one_batchnorm_over_the_batch(tmp_path):
    mp.spawn(_sync_bn_worker, args=(2, 29531, str(tmp_path)), nprocs=2)
    got = [torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in range(2)]
    assert got[0]["type"] is CPUSyncBatchNorm
    assert [g["helpers"] for g in got] == [((0, 2), True), ((1, 2), False)]
    assert rank_and_world() == (0, 1) and is_main()  # no process group here

    bn = nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    x, w = _data()
    x = x.clone().requires_grad_()
    out = bn(x)
    (out * w).sum().backward()

    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([g["out"] for g in got]), out.detach(), **close)
    torch.testing.assert_close(torch.cat([g["x_grad"] for g in got]), x.grad, **close)
    for g in got:
        torch.testing.assert_close(g["w_grad"], bn.weight.grad, **close)
        torch.testing.assert_close(g["b_grad"], bn.bias.grad, **close)
        torch.testing.assert_close(g["mean"], bn.running_mean, **close)
        torch.testing.assert_close(g["var"], bn.running_var, **close)  # unbiased, over all 4 images


def test_sync_batchnorm_without_processes_is_batchnorm():
    bn, sync = nn.BatchNorm2d(3), convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), cpu=True)[0]
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(sync(x), bn(x))
    torch.testing.assert_close(sync.running_var, bn.running_var)


# --- `segkit fit` with DDP on 2 CPU processes ---------------------------------------------------------------
def _fit(tiny_voc, out, devices, *extra, capsys=None):
    """6 steps of `segkit fit` (global batch 4, 12 images: 3 steps an epoch), validated and saved every 2 steps;
    on 2 processes started by a command of their own, on 1 in this process (given ``capsys``).

    float64 (precision 64-true): DeepLabV3+ gradients are ill-conditioned enough at these tiny sizes that
    float32 rounding alone makes two exact-in-theory runs drift by 1e-3 within a few steps; in float64 the
    comparison shows what the code does."""
    args = (
        "fit",
        "--config",
        CONFIGS / "voc.yaml",
        "--data.root",
        tiny_voc,
        *TINY_VOC_ARGS,
        "--model.dropout",
        "0",
        "--model.lr",
        "0.01",
        "--trainer.devices",
        devices,
        "--trainer.strategy",
        "ddp" if devices > 1 else "auto",
        "--trainer.precision",
        "64-true",
        "--trainer.max_steps",
        "6",
        "--trainer.val_check_interval",
        "2",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.logger",
        "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        out,
        "--checkpoint.save_top_k",
        "-1",
        *extra,
    )
    if capsys is not None and devices == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as each DDP process runs: with 2 threads, float64 rounding drifted to 3e-8
        try:
            proc = run_here(capsys, *args, cwd=out.parent)
        finally:
            torch.set_num_threads(threads)
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        proc = segkit(*args, cwd=out.parent, threads=1, check=True)
    (metrics_file,) = out.rglob("metrics.csv")
    metrics = list(csv.DictReader(metrics_file.open()))
    losses = {int(r["step"]): float(r["train/loss"]) for r in metrics if r["train/loss"]}
    return proc.stdout, losses


@pytest.fixture(scope="module")
def two_process_run(tiny_voc, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "two"
    return out, *_fit(tiny_voc, out, 2)


@pytest.mark.slow
def test_ddp_fit_on_two_processes_equals_one_process(tiny_voc, tmp_path, two_process_run, capsys):
    """Global batch 4 as 2 x 2 with synchronized batch norm and the loss normalized over the global batch: the
    same loss curve as 1 x 4, across an epoch boundary and validations; checkpoints written once."""
    out, stdout, two = two_process_run
    assert "global batch 4 = 2 process(es) x 2 images" in stdout
    assert "batch norm synchronized over 2 process(es)" in stdout and "CPUSyncBatchNorm" in stdout
    ckpts = sorted(re.sub(r"mIoU[\d.]+\.ckpt", "mIoU.ckpt", p.name) for p in out.rglob("*.ckpt"))
    assert ckpts == ["best-step2-mIoU.ckpt", "best-step4-mIoU.ckpt", "best-step6-mIoU.ckpt", "last.ckpt"]
    assert [p.parent.name for p in out.rglob("metrics.csv")] == ["version_0"]  # one run, one folder

    stdout1, one = _fit(tiny_voc, tmp_path / "one", 1, capsys=capsys)
    assert "global batch 4 = 1 process(es) x 4 images" in stdout1
    assert sorted(one) == sorted(two) == list(range(6))
    for step in one:
        # float64 rounding differs between the two (reductions over 2 processes vs 1) and grows with the steps:
        # measured 7e-16, 8e-14, 1e-12, 2e-10, 4e-9, 3e-8 relative at steps 0-5 (voc.yaml's stepped scales; with
        # continuous ones it reached 1.1e-9); a DDP error would show at 1e-3
        assert two[step] == pytest.approx(one[step], rel=1e-6, abs=0), step


@pytest.mark.slow
def test_every_training_extra_on_two_processes_equals_one_process(tiny_voc, tmp_path, capsys):
    """Photometric augmentation, the rare-class crop and the weights' moving average (all seeded per image or
    per step, none per process): the same loss curve and the same validation mIoU (of the averaged weights) on
    2 processes as on 1."""
    extras = ("--data.photometric", "true", "--data.cat_max_ratio", "0.75", "--model.ema_decay", "0.9")
    stdout2, two = _fit(tiny_voc, tmp_path / "two", 2, *extras)
    stdout1, one = _fit(tiny_voc, tmp_path / "one", 1, *extras, capsys=capsys)
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-6, abs=0), step
    best = [float(re.search(r"Best checkpoint \(val/mIoU = ([\d.]+)\)", out).group(1)) for out in (stdout1, stdout2)]
    assert best[0] == pytest.approx(best[1], abs=1e-6)
    validated = [re.findall(r"^val/mIoU +([\d.]+)", out, re.M) for out in (stdout1, stdout2)]
    assert validated[0] == validated[1] and len(validated[0]) == 3


@pytest.mark.slow
def test_same_seed_same_loss_curve_on_two_processes(tiny_voc, tmp_path, two_process_run):
    _, _, first = two_process_run
    _, again = _fit(tiny_voc, tmp_path / "again", 2)
    assert again == first  # exactly
    assert len(set(first.values())) == len(first) == 6  # a curve that moves (test_sampling: other seeds, other data)


@pytest.mark.slow
def test_resume_two_process_checkpoint_on_one_process(tiny_voc, tmp_path, two_process_run, capsys):
    """Stopped after step 2 of 6 (mid-epoch) on 2 processes, resumed on 1: the same data, schedule and updates."""
    out, _, two = two_process_run
    ckpt = next(out.rglob("best-step2-*.ckpt"))
    _, resumed = _fit(tiny_voc, tmp_path / "resumed", 1, "--ckpt_path", str(ckpt), capsys=capsys)
    assert sorted(resumed) == [2, 3, 4, 5]
    for step in resumed:
        assert resumed[step] == pytest.approx(two[step], rel=1e-9, abs=0), step


@pytest.mark.slow
def test_validate_on_two_processes_equals_one(tiny_voc, checkpoint, tmp_path, capsys):
    """`segkit validate` with DDP on 2 CPU processes (gloo) over the odd-sized split: the same val/mIoU exactly."""

    def validate(devices):
        args = (
            "validate",
            "--config",
            CONFIGS / "voc.yaml",
            "--data.root",
            tiny_voc,
            *TINY_VOC_ARGS,
            "--ckpt_path",
            checkpoint,
            "--trainer.devices",
            devices,
            "--trainer.strategy",
            "ddp" if devices > 1 else "auto",
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            tmp_path / f"d{devices}",
        )
        if devices == 1:  # in this process, on one thread as each DDP process; DDP starts them from a command
            with one_thread():
                proc = run_here(capsys, *args, cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:
            proc = segkit(*args, cwd=tmp_path, threads=1, check=True)
        table = proc.stdout[proc.stdout.index("val: per-class IoU") : proc.stdout.index("val/mean_acc")]
        # Lightning's results table, plain or drawn with rich's box characters (when rich is installed)
        return re.findall(r"^\W*val/(?:mIoU|pixel_acc)\W+(\d\.\d+)\W*$", proc.stdout, re.M), table

    scores1, table1 = validate(1)
    scores2, table2 = validate(2)
    assert len(scores1) == 2 and scores1 == scores2  # val/mIoU and val/pixel_acc, full precision
    assert float(scores1[0]) > 0
    assert table1 == table2  # per-class IoU and accuracy, and the labelled-pixel count: every pixel once
