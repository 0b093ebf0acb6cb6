"""Checkpoints that survive interruptions: atomic writes, ``last.ckpt`` always the newest state, a clean stop on
Ctrl-C / SIGTERM, and no non-finite model saved.

- :func:`~segkit.io.torch_files.save_atomic`: the file is written under a temporary name in its own folder, flushed
  to disk and renamed over the destination; a reader sees the old file or the new one, never a part. (Lightning
  writes through fsspec's local transaction, whose temporary file lives in ``$TMPDIR``: on another filesystem, the
  final move is a copy, and a kill during it leaves a truncated file.) :class:`AtomicCheckpointIO` makes every
  checkpoint Lightning writes go through it.
- :class:`SegkitCheckpoint`: Lightning's ``ModelCheckpoint`` rewrites ``last.ckpt`` only when a top-k
  checkpoint was written at the same step; here ``last.ckpt`` is written after every validation and at the
  end of ``fit``. It never writes a model with a non-finite weight.
- :class:`GracefulStop`: the first Ctrl-C (SIGINT) or SIGTERM (a scheduler's preemption) stops training after
  the running step; ``last.ckpt`` is then written, the command to resume printed, and the run's exit status
  is 128 + the signal (:attr:`GracefulStop.exit_status`). A second Ctrl-C stops at once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ..io.disk import free_bytes, human
from ..io.torch_files import save_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through :func:`save_atomic` (local paths; URLs as Lightning writes them)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_atomic(checkpoint, path)


class Diverged(FloatingPointError):
    """Training diverged (a non-finite loss, or weights); the message names the step and the last checkpoint."""

    def __init__(self, trainer: pl.Trainer, what: str) -> None:
        callback = trainer.checkpoint_callback
        last = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
        advice = "Lower model.lr (or raise model.warmup_steps) and restart"
        if last:
            saved, advice = f"the last checkpoint is {last}", f"{advice}, or resume from that checkpoint"
        else:
            saved = "no checkpoint was written before"
        super().__init__(
            f"training diverged at step {trainer.global_step}: {what}. Training stopped and the "
            f"diverged weights were not saved; {saved}. {advice}"
        )


class LossWatch:
    """Stops training at the step whose (global) loss is not finite, without making the step wait for the
    device: on a GPU the flag is copied to host memory behind an event that :meth:`check` (after the step)
    waits for, while the step's backward pass is still queued, so the GPU does not idle."""

    def __init__(self) -> None:
        self._pending: tuple | None = None

    def start(self, loss: torch.Tensor) -> None:
        finite, event = torch.isfinite(loss.detach()).reshape(1), None
        if finite.is_cuda:
            finite = finite.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        self._pending = (finite, event, loss.detach())

    def check(self, trainer: pl.Trainer) -> None:
        if self._pending is None:
            return
        (finite, event, loss), self._pending = self._pending, None
        if event is not None:
            event.synchronize()
        if not finite.numpy()[0]:  # host memory: no device synchronization
            raise Diverged(trainer, f"the training loss is {float(loss)}")


def finite_model(module: torch.nn.Module) -> bool:
    """True when every floating-point parameter and buffer is finite."""
    return all(torch.isfinite(t).all() for t in [*module.parameters(), *module.buffers()] if t.is_floating_point())


def own_run_folder(trainer: pl.Trainer) -> str:
    """Without a logger, the run's own folder ``<default_root_dir>/runs/run_N`` (the first free N, claimed by
    creating it), so that two runs in one folder never mix their checkpoints and configs. Rank 0 claims it."""
    folder = getattr(trainer, "segkit_run_folder", None)
    if folder is None:
        base = Path(trainer.default_root_dir) / "runs"
        base.mkdir(parents=True, exist_ok=True)
        n = 0
        while True:
            try:
                (base / f"run_{n}").mkdir()
                break
            except FileExistsError:
                n += 1
        folder = trainer.segkit_run_folder = str(base / f"run_{n}")
    return folder


class SegkitCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``last.ckpt`` is always the newest state (after every validation, at the end of
    ``fit``, on a graceful stop), and which never writes a model with a non-finite weight."""

    _last_saved_step: int | None = None  # the step last.ckpt holds

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if not finite_model(trainer.lightning_module):
            raise Diverged(trainer, "the weights are no longer finite")
        super()._save_checkpoint(trainer, filepath)

    def save_last_now(self, trainer: pl.Trainer) -> str | None:
        """Writes ``last.ckpt`` unless it already holds this step; returns its path."""
        if not self.save_last or self.dirpath is None:
            return None
        if self._last_saved_step != trainer.global_step or not self.last_model_path:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        return self.last_model_path

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_saved_step = trainer.global_step

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None and not trainer.loggers and stage == "fit":  # Lightning: <root>/checkpoints
            folder = own_run_folder(trainer) if trainer.is_global_zero else None
            self.dirpath = os.path.join(trainer.strategy.broadcast(folder), "checkpoints")
        super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Removes what a killed write left behind (save_atomic's temporary files: the checkpoints are whole),
        then warns when the disk cannot hold the checkpoints this run keeps."""
        if trainer.is_global_zero and self.dirpath and os.path.isdir(self.dirpath):
            for leftover in Path(self.dirpath).glob(".*.ckpt.*.tmp"):
                leftover.unlink(missing_ok=True)
                print(f"segkit: removed {leftover}, an unfinished write of a killed run", flush=True)
        if trainer.is_global_zero and self.dirpath and "://" not in str(self.dirpath):  # a local folder
            warning = space_warning(self, trainer, pl_module)
            if warning:
                print(warning, flush=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if trainer.state.fn == "fit" and not trainer.sanity_checking and not trainer.fast_dev_run:
            self.save_last_now(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.fast_dev_run:
            self.save_last_now(trainer)


def checkpoint_bytes(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
    """About the size of one checkpoint: the weights and buffers, and the optimizer's state per weight (one
    tensor for SGD with momentum, two for Adam's moments)."""
    weights = sum(p.nelement() * p.element_size() for p in pl_module.parameters())
    buffers = sum(b.nelement() * b.element_size() for b in pl_module.buffers())
    states = 0
    for optimizer in trainer.optimizers:
        defaults = optimizer.defaults
        states = max(states, 2 if "betas" in defaults else int(bool(defaults.get("momentum", 0))))
    return weights * (1 + states) + buffers


def space_warning(callback: ModelCheckpoint, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str | None:
    """One line when the checkpoint folder's disk has less room than the checkpoints the run keeps at once (the
    best ``save_top_k``, ``last.ckpt``, and one being written)."""
    size = checkpoint_bytes(trainer, pl_module)
    kept = (callback.save_top_k if callback.save_top_k >= 0 else 3) + int(bool(callback.save_last)) + 1
    free = free_bytes(Path(callback.dirpath))
    if free >= kept * size:
        return None
    return (
        f"segkit: warning: {callback.dirpath} has {human(free)} free, and this run keeps up to {kept} checkpoints "
        f"of about {human(size)} at once ({human(kept * size)}): it may stop when the disk fills"
    )


class GracefulStop(Callback):
    """Turns the first SIGINT (Ctrl-C) or SIGTERM into a stop after the running training step, so that
    ``last.ckpt`` holds a whole step; a second SIGINT interrupts at once. With several processes they agree
    every ``every_n_steps`` steps (one small collective), so all stop at the same step, within that many steps
    of the signal."""

    def __init__(self, every_n_steps: int = 10) -> None:
        self.every_n_steps = every_n_steps  # with several processes, how often they agree on stopping
        self.signal: str | None = None  # what stopped the run, for the message
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        self.signal = signal.Signals(signum).name
        self.signum = signum
        print(
            f"\nsegkit: {self.signal} received: stopping after this training step and saving last.ckpt "
            "(Ctrl-C again to stop at once)",
            flush=True,
        )

    @property
    def exit_status(self) -> int | None:
        """128 + the signal's number when a signal stopped training (as a shell reports a process the signal
        ended), so that `segkit fit && ...` and job schedulers see an unfinished run; None otherwise."""
        return None if self.signum is None else 128 + self.signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: leave the signals to Lightning
            self._previous = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if trainer.world_size == 1:
            stop = self.signal is not None  # plain Python: no device operation in the step
        elif trainer.global_step % self.every_n_steps == 0:  # the processes agree (a collective, so not every step)
            flag = torch.tensor([float(self.signum or 0)], device=pl_module.device)
            received = int(trainer.strategy.reduce(flag, reduce_op="max"))
            stop = received > 0
            if stop and self.signum is None:
                self.signal, self.signum = f"{signal.Signals(received).name} in another process", received
        else:
            return
        if stop:
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        if self.signum is None:
            return
        checkpoint = trainer.checkpoint_callback
        last = checkpoint.save_last_now(trainer) if isinstance(checkpoint, SegkitCheckpoint) else None
        if not trainer.is_global_zero:
            return
        where = f" --ckpt_path {last}" if last else " (no checkpoint was written: checkpointing is off)"
        print(
            f"segkit: stopped at step {trainer.global_step} ({self.signal}); resume with the same command and{where}",
            flush=True,
        )
