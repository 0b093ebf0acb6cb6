"""segkit.training.checkpoints and the training safeguards: last.ckpt always the newest state, atomic writes that a
kill cannot truncate, a clean stop on SIGINT/SIGTERM, training stopped on a non-finite loss with nothing
non-finite saved, and exact resume with dropout."""

import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp
from helpers import SignalAt

from segkit.data import SyntheticVOCDataModule
from segkit.io.torch_files import save_atomic
from segkit.training.checkpoints import (
    AtomicCheckpointIO,
    Diverged,
    GracefulStop,
    SegkitCheckpoint,
    finite_model,
    own_run_folder,
)
from segkit.training.task import SegmentationTask


def _data(root):
    return SyntheticVOCDataModule(
        root=str(root),
        num_train=12,
        num_val=3,
        size_range=(64, 80),
        seed=1,
        batch_size=4,
        val_batch_size=3,
        crop_size=48,
        num_workers=0,
    )


def _task(**kw):
    return SegmentationTask(**{"num_classes": 5, "encoder": "xception_tiny", "decoder_channels": 32, "lr": 0.01, **kw})


def _trainer(tmp_path, callbacks=(), checkpoint=None, **kw):
    kw = {
        "max_steps": 6,
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": tmp_path,
        "plugins": [AtomicCheckpointIO()],
        **kw,
    }
    if checkpoint is not None:
        callbacks = [*callbacks, checkpoint]
    return L.Trainer(callbacks=list(callbacks), enable_checkpointing=checkpoint is not None, **kw)


def _step(path):
    return torch.load(path, weights_only=False, map_location="cpu")["global_step"]


class _FallingScore(SegmentationTask):
    """A monitored score that never improves after the first validation."""

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val/score", -float(self.global_step))


def test_last_checkpoint_is_the_newest_state_also_when_the_score_falls(tmp_path):
    data = tmp_path / "data"
    for cls in (SegkitCheckpoint, L.pytorch.callbacks.ModelCheckpoint):
        L.seed_everything(0)
        folder = tmp_path / cls.__name__
        checkpoint = cls(dirpath=folder, monitor="val/score", mode="max", save_last=True, filename="best-{step}")
        task = _FallingScore(num_classes=5, encoder="xception_tiny", decoder_channels=32)
        _trainer(tmp_path, checkpoint=checkpoint, val_check_interval=2, check_val_every_n_epoch=None, max_steps=5).fit(
            task, _data(data)
        )  # validations at steps 2 and 4; the end at 5
        best = [p.name for p in folder.glob("best-*.ckpt")]
        assert best == ["best-step=2.ckpt"]
        if cls is SegkitCheckpoint:
            assert _step(folder / "last.ckpt") == 5  # after the last validation (4) and at the end of fit (5)
        else:
            assert _step(folder / "last.ckpt") == 2, "Lightning's behaviour changed: revisit SegkitCheckpoint"


def test_save_atomic_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_atomic({"step": 1}, path)
    assert torch.load(path)["step"] == 1 and path.stat().st_mode & 0o777 == 0o666 & ~_umask()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    monkeypatch.setattr(torch, "save", lambda obj, f: (f.write(b"partial"), crash()))
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"step": 2}, path)
    assert torch.load(path)["step"] == 1  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_after_the_step_saves_last_and_resumes_exactly(tmp_path, signum, capsys):
    """Stopped by a signal after step 3 of 6, resumed from last.ckpt: the weights of the uninterrupted run,
    in float64, with the default dropout (0.1) and augmentations."""
    data = tmp_path / "data"
    L.seed_everything(0)
    whole = _task()
    _trainer(tmp_path, precision="64-true", limit_val_batches=0).fit(whole, _data(data))

    L.seed_everything(0)
    first = _task()
    checkpoint = SegkitCheckpoint(dirpath=tmp_path / "run", save_last=True, save_top_k=0)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)  # ignored under nohup
    stop = GracefulStop()
    assert stop.exit_status is None
    _trainer(tmp_path, [SignalAt(3, signum), stop], checkpoint, precision="64-true", limit_val_batches=0).fit(
        first, _data(data)
    )
    assert stop.exit_status == 128 + signum  # what `segkit fit` exits with: 130 for SIGINT, 143 for SIGTERM
    out = capsys.readouterr().out
    last = tmp_path / "run" / "last.ckpt"
    assert f"{signal.Signals(signum).name} received: stopping after this training step" in out
    assert (
        f"stopped at step 3 ({signal.Signals(signum).name}); resume with the same command and --ckpt_path {last}" in out
    )
    assert _step(last) == 3
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # handlers given back

    L.seed_everything(0)
    resumed = _task()
    _trainer(tmp_path, precision="64-true", limit_val_batches=0).fit(resumed, _data(data), ckpt_path=last)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert a.dtype != torch.float32 and torch.equal(a, b), name


def test_divergence_stops_training_and_nothing_non_finite_is_saved(tmp_path):
    """lr 1e6 overflows the weights within a few updates: validating every step, the checkpoint callback finds
    them when it is about to write; without validation, the next step's loss is non-finite and training stops
    before that step's update."""
    L.seed_everything(0)
    task = _task(lr=1e6)
    checkpoint = SegkitCheckpoint(dirpath=tmp_path / "run", monitor="val/mIoU", mode="max", save_last=True)
    with pytest.raises(
        Diverged,
        match=r"training diverged at step (\d+): the weights are no longer finite\. "
        r"Training stopped and the diverged weights were not saved",
    ) as err:
        _trainer(tmp_path, checkpoint=checkpoint, val_check_interval=1, check_val_every_n_epoch=None, max_steps=60).fit(
            task, _data(tmp_path / "data")
        )
    step = int(str(err.value).split(" at step ")[1].split(":")[0])
    assert 1 <= step < 60 and not finite_model(task)
    saved = sorted((tmp_path / "run").glob("*.ckpt"))
    assert saved and f"the last checkpoint is {tmp_path / 'run' / 'last.ckpt'}" in str(err.value)
    for path in saved:  # every file written holds a finite model from before the divergence
        state = torch.load(path, weights_only=False)
        assert state["global_step"] < step
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()), path

    L.seed_everything(0)
    task = _task(lr=1e6)
    with pytest.raises(
        Diverged,
        match=r"training diverged at step (\d+): the training loss is (nan|inf)\. .* no "
        r"checkpoint was written before",
    ):
        _trainer(tmp_path, limit_val_batches=0, max_steps=60).fit(task, _data(tmp_path / "data"))


KILLED_RUN = r"""
import io, os, signal, sys
import lightning as L
import torch
from segkit.training.checkpoints import AtomicCheckpointIO, SegkitCheckpoint
from segkit.data import SyntheticVOCDataModule
from segkit.training.task import SegmentationTask

data, run, kill_save_step, kill_train_step, resume = sys.argv[1:6]
torch.set_num_threads(1)
real_save = torch.save


def save(obj, f, *args, **kwargs):  # SIGKILL halfway through writing last.ckpt at the given step
    if ".last.ckpt." in getattr(f, "name", "") and obj.get("global_step") == int(kill_save_step):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)


torch.save = save


class Kill(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == int(kill_train_step):
            os.kill(os.getpid(), signal.SIGKILL)


L.seed_everything(0)
task = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32, lr=0.01)
dm = SyntheticVOCDataModule(root=data, num_train=12, num_val=3, size_range=(64, 80), seed=1, batch_size=4,
                            val_batch_size=3, crop_size=48, num_workers=0)
checkpoint = SegkitCheckpoint(dirpath=run, monitor="val/mIoU", mode="max", save_last=True)
trainer = L.Trainer(max_steps=8, val_check_interval=2, check_val_every_n_epoch=None, accelerator="cpu",
                    logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                    callbacks=[checkpoint, Kill()], plugins=[AtomicCheckpointIO()])
trainer.fit(task, dm, ckpt_path=None if resume == "none" else resume)
print("finished at step", trainer.global_step)
"""


@pytest.mark.slow
def test_killed_at_any_moment_resumes_from_a_whole_checkpoint(tmp_path):
    """SIGKILL halfway through writing last.ckpt (TMPDIR on another filesystem, as on clusters), then during
    a training step: each time last.ckpt is a whole checkpoint of an earlier step, and the run resumes from it
    to the end."""
    from helpers import python

    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else str(tmp_path / "tmp")
    os.makedirs(tmpdir, exist_ok=True)
    env = {"TMPDIR": tmpdir}
    data, run = tmp_path / "data", tmp_path / "run"
    last = run / "last.ckpt"

    def fit(kill_save_step, kill_train_step, resume):
        return python(
            "-c", KILLED_RUN, data, run, kill_save_step, kill_train_step, resume, cwd=tmp_path, env=env, threads=1
        )

    killed = fit(4, -1, "none")  # killed while writing last.ckpt at step 4
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _step(last) == 2  # the previous last.ckpt, whole
    assert len(list(run.glob(".last.ckpt.*.tmp"))) == 1  # the unfinished write, under a temporary name
    killed = fit(-1, 6, str(last))  # resumed at 2; killed during step 6, before its validation
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "an unfinished write of a killed run" in killed.stdout
    assert _step(last) == 4
    done = fit(-1, -1, str(last))
    assert done.returncode == 0 and "finished at step 8" in done.stdout, done.stderr[-2000:]
    assert not list(run.glob(".*.tmp"))
    assert _step(last) == 8
    assert not [p for p in os.listdir(tmpdir) if "ckpt" in p]  # nothing of the checkpoints went through TMPDIR


def test_runs_without_a_logger_get_folders_of_their_own(tmp_path):
    data = tmp_path / "data"
    folders = []
    for _ in range(2):
        L.seed_everything(0)
        checkpoint = SegkitCheckpoint(save_last=True, save_top_k=0)
        _trainer(tmp_path, checkpoint=checkpoint, max_steps=2, limit_val_batches=0).fit(_task(), _data(data))
        folders.append(checkpoint.dirpath)
    assert folders == [str(tmp_path / "runs" / f"run_{n}" / "checkpoints") for n in (0, 1)]
    assert all(_step(os.path.join(f, "last.ckpt")) == 2 for f in folders)
    assert not (tmp_path / "checkpoints").exists()


def test_runs_started_at_once_claim_different_folders(tmp_path):
    barrier, folders = threading.Barrier(8), []

    def start():
        barrier.wait()
        folders.append(own_run_folder(SimpleNamespace(default_root_dir=str(tmp_path))))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(folders) == sorted(str(tmp_path / "runs" / f"run_{n}") for n in range(8))


def _graceful_worker(rank, world, port, root, out):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        NODE_RANK="0",
    )
    torch.set_num_threads(1)
    L.seed_everything(0)
    checkpoint = SegkitCheckpoint(dirpath=out, save_last=True, save_top_k=0)
    trainer = _trainer(
        out,
        callbacks=[GracefulStop(every_n_steps=2), SignalAt(3, signal.SIGTERM, rank=1)],
        checkpoint=checkpoint,
        max_steps=20,
        devices=world,
        strategy="ddp",
        limit_val_batches=0,
        use_distributed_sampler=False,
    )
    trainer.fit(_task(), _data(root))
    Path(out, f"rank{rank}.step").write_text(str(trainer.global_step))


@pytest.mark.slow
def test_signal_in_one_of_two_processes_stops_both_at_the_same_step(tmp_path):
    """A SIGTERM that only process 1 receives (after step 3): both agree at the next check (every 2 steps here)
    and stop after step 4, and last.ckpt holds step 4."""
    _data(tmp_path / "data").prepare_data()
    mp.spawn(_graceful_worker, args=(2, 29533, str(tmp_path / "data"), str(tmp_path / "run")), nprocs=2)
    assert [(tmp_path / "run" / f"rank{r}.step").read_text() for r in (0, 1)] == ["4", "4"]
    assert _step(tmp_path / "run" / "last.ckpt") == 4


def test_divergence_message_points_only_to_a_checkpoint_that_exists():
    from types import SimpleNamespace

    def message(last: str) -> str:
        callback = SimpleNamespace(last_model_path=last, best_model_path="")
        return str(Diverged(SimpleNamespace(checkpoint_callback=callback, global_step=7), "the training loss is nan"))

    assert message("") == (
        "training diverged at step 7: the training loss is nan. Training stopped and the diverged weights were not "
        "saved; no checkpoint was written before. Lower model.lr (or raise model.warmup_steps) and restart"
    )
    assert message("run/last.ckpt").endswith(
        "the last checkpoint is run/last.ckpt. Lower model.lr (or raise model.warmup_steps) and restart, or resume "
        "from that checkpoint"
    )
