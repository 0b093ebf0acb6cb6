"""segkit.training.task: resuming from a checkpoint, the evaluation output stride, trainer.predict, frozen batch
norm, channels_last, gradient accumulation, torch.compile, and a training step without host-device syncs."""

import lightning as L
import pytest
import torch
from helpers import assert_labels_but_ties

from segkit.data import SyntheticVOCDataModule
from segkit.training.task import SegmentationTask


class _StopAt(L.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class _Record(L.Callback):
    def on_train_start(self, trainer, pl_module):
        opt, sched = trainer.optimizers[0], trainer.lr_scheduler_configs[0].scheduler
        self.step = trainer.global_step
        self.last_epoch = sched.last_epoch
        self.lrs = [g["lr"] for g in opt.param_groups]
        # in optimizer order, which is how the checkpoint numbers its state
        self.momentum = [opt.state[p]["momentum_buffer"].clone() for g in opt.param_groups for p in g["params"]]


def _setup(tmp_path, tiny_voc):
    dm = SyntheticVOCDataModule(
        root=str(tiny_voc),
        num_train=12,
        num_val=5,
        size_range=(64, 96),
        seed=1,
        batch_size=4,
        val_batch_size=5,
        crop_size=48,
        num_workers=0,
    )
    task = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32, lr=0.01, encoder_lr_mult=0.5)
    return dm, task


def test_resume_restores_step_optimizer_and_schedule(tmp_path, tiny_voc):
    L.seed_everything(0)
    dm, task = _setup(tmp_path, tiny_voc)
    kw = dict(
        max_steps=8,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer = L.Trainer(callbacks=[_StopAt(5)], enable_checkpointing=False, **kw)
    trainer.fit(task, dm)
    ckpt = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)
    assert saved["global_step"] == 5

    dm2, task2 = _setup(tmp_path, tiny_voc)
    rec = _Record()
    L.Trainer(callbacks=[rec], enable_checkpointing=False, **kw).fit(task2, dm2, ckpt_path=ckpt)
    assert rec.step == 5
    assert rec.last_epoch == 5
    factor = (1 - 5 / 8) ** 0.9
    assert rec.lrs == pytest.approx([0.01 * 0.5 * factor] * 2 + [0.01 * factor] * 2)
    state = saved["optimizer_states"][0]["state"]
    saved_buffers = [state[i]["momentum_buffer"] for i in sorted(state)]
    assert len(rec.momentum) == len(saved_buffers) == len(list(task2.parameters()))
    for got, want in zip(rec.momentum, saved_buffers):
        assert torch.equal(got, want)


def test_eval_output_stride_switches_for_validation_only():
    task = SegmentationTask(num_classes=3, encoder="xception_tiny", decoder_channels=32, eval_output_stride=8)
    assert task.model.output_stride == 16
    task.on_validation_start()
    assert task.model.output_stride == 8 and task.model.aspp.atrous_rates == (12, 24, 36)
    task.on_validation_end()
    assert task.model.output_stride == 16 and task.model.aspp.atrous_rates == (6, 12, 18)


def test_predict_returns_maps_at_original_sizes(tiny_voc):
    """The Lightning predict path (trainer.predict): the val split, one uint8 map per image at its own size,
    through segkit.inference like segkit predict and eval."""
    from segkit.data import VOCDataModule, pad_collate

    task = SegmentationTask(num_classes=3, encoder="xception_tiny", decoder_channels=32).eval()
    samples = [
        {"image": torch.randn(3, 40, 48), "mask": torch.zeros(40, 48, dtype=torch.long), "name": "a"},
        {"image": torch.randn(3, 64, 56), "mask": torch.zeros(64, 56, dtype=torch.long), "name": "b"},
    ]
    with torch.no_grad():
        preds = task.predict_step(pad_collate(samples), 0)
        alone = task(samples[1]["image"][None]).softmax(1)[0]
    assert [tuple(p.shape) for p in preds] == [(40, 48), (64, 56)]
    assert preds[0].dtype == torch.uint8 and int(preds[0].max()) < 3
    # the largest image is not padded, so its prediction is whole-image inference (a batch of two runs other
    # kernels than one image: ties within float rounding may go either way)
    assert_labels_but_ties(preds[1], alone)

    dm = VOCDataModule(root=str(tiny_voc), val_batch_size=2, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    batches = trainer.predict(task, datamodule=dm)
    sizes = [tuple(dm.val_set.load(i)[1].shape) for i in range(len(dm.val_set))]
    assert [tuple(p.shape) for batch in batches for p in batch] == sizes  # 5 images in batches of 2, 2 and 1


def _fit_steps(tmp_path, tiny_voc, task, steps=2, **trainer_kw):
    dm = SyntheticVOCDataModule(
        root=str(tiny_voc),
        num_train=12,
        num_val=5,
        size_range=(64, 96),
        seed=1,
        batch_size=4,
        val_batch_size=5,
        crop_size=48,
        num_workers=0,
    )
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        **trainer_kw,
    )
    trainer.fit(task, dm)
    return trainer


class _BatchNormState(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, *args):
        bn = pl_module.model.decoder.refine[1].bn_pw  # the last batch norm: a clear gradient
        self.training_flags = {m.training for m in pl_module.modules() if isinstance(m, torch.nn.BatchNorm2d)}
        self.weight_grad = bn.weight.grad.clone() if bn.weight.grad is not None else None


def test_frozen_batch_norm_keeps_statistics_and_trains_scale_and_shift(tmp_path, tiny_voc):
    L.seed_everything(0)
    task = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32, lr=0.01, freeze_bn=True)
    before = {k: v.clone() for k, v in task.state_dict().items() if "running_" in k}
    weight = task.model.decoder.refine[1].bn_pw.weight.detach().clone()
    probe = _BatchNormState()
    _fit_steps(tmp_path, tiny_voc, task, callbacks=[probe])
    after = {k: v for k, v in task.state_dict().items() if "running_" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)  # statistics untouched by training
    assert probe.training_flags == {False}  # every batch norm normalizes with its running statistics
    assert probe.weight_grad is not None and probe.weight_grad.abs().sum() > 0
    assert not torch.equal(
        task.model.decoder.refine[1].bn_pw.weight, weight
    )  # scale still trained (official behaviour)

    L.seed_everything(0)
    task = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32, lr=0.01)
    _fit_steps(tmp_path, tiny_voc, task)
    assert not torch.equal(before["model.aspp.project.bn.running_mean"], task.model.aspp.project.bn.running_mean)


def test_channels_last_gives_the_same_logits_and_trains(tmp_path, tiny_voc):
    torch.manual_seed(0)
    plain = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32).eval()
    fast = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32, channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    conv = fast.model.encoder.stem[0].conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x = torch.randn(2, 3, 65, 65)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)
    _fit_steps(tmp_path, tiny_voc, fast.train())
    assert fast.model.encoder.stem[0].conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_gradient_accumulation_splits_the_global_batch(tmp_path, tiny_voc, capsys):
    task = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32, lr=0.01)
    trainer = _fit_steps(tmp_path, tiny_voc, task, steps=2, accumulate_grad_batches=2)
    assert "global batch 4 = 1 process(es) x 2 images x 2 accumulation step(s)" in capsys.readouterr().out
    assert trainer.global_step == 2 and trainer.fit_loop.total_batch_idx + 1 == 4  # 2 micro-batches a step


@pytest.mark.slow
def test_compile_trains_and_keeps_checkpoint_keys(tmp_path, tiny_voc):
    """`compile: true` compiles the model in place (about 2 minutes of compilation on 2 CPU cores)."""
    task = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32, lr=0.01, compile=True)
    keys = set(task.state_dict())
    trainer = _fit_steps(tmp_path, tiny_voc, task, steps=1)
    assert task.model._compiled_call_impl is not None  # nn.Module.compile() was applied
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    assert set(torch.load(tmp_path / "c.ckpt", weights_only=False)["state_dict"]) == keys


class _HostSyncOps(L.Callback):
    """Records, from the second training batch on, every op that makes a GPU wait for the host or the host
    for the GPU: reading a value (``.item()``, ``float()``, ``bool()``), data-dependent shapes (``nonzero``,
    boolean indexing, ``unique``) and tensors made from Python numbers (on a GPU, a blocking copy from
    pageable memory). Ops are seen through a TorchDispatchMode, so the check works on the CPU."""

    SYNC_OPS = {
        "aten::_local_scalar_dense",
        "aten::is_nonzero",
        "aten::equal",
        "aten::nonzero",
        "aten::masked_select",
        "aten::_unique2",
        "aten::unique_dim",
        "aten::lift_fresh",
    }

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        seen = self.seen = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func._schema.name in _HostSyncOps.SYNC_OPS:
                    seen.append(func._schema.name)
                return func(*args, **(kwargs or {}))

        self.mode_cls, self.mode, self.batches = Mode, None, 0

    def on_train_batch_start(self, trainer, *args):
        self.batches += 1
        if self.batches > 1:  # the first step creates Lightning's logging state from Python numbers, once
            self.mode = self.mode_cls()
            self.mode.__enter__()

    def on_train_batch_end(self, trainer, *args):
        if self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.mode = None


def test_training_step_makes_no_host_device_syncs(tmp_path, tiny_voc):
    """Forward, loss, logging of train/loss and train/lr, backward and the SGD + poly-LR step: no op that would
    synchronize a GPU with the host (the logger's own writes, every log_every_n_steps, come after the step)."""
    from lightning.pytorch.loggers import CSVLogger

    dm = SyntheticVOCDataModule(
        root=str(tiny_voc),
        num_train=12,
        num_val=5,
        size_range=(64, 96),
        seed=1,
        batch_size=4,
        val_batch_size=5,
        crop_size=48,
        num_workers=0,
    )
    task = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32, lr=0.01)
    rec = _HostSyncOps()
    L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_checkpointing=False,
        callbacks=[rec],
    ).fit(task, dm)
    assert rec.batches == 3
    assert rec.seen == []
    # and the check does see them: logging a Python float is a host-to-device copy, .item() a read-back
    with rec.mode_cls():
        torch.tensor(0.5).item()
    assert rec.seen == ["aten::lift_fresh", "aten::_local_scalar_dense"]


class _SaveAndStopAt(L.pytorch.callbacks.Checkpoint):
    """Saves a checkpoint after step ``step`` inside the training loop, then stops; a checkpoint callback, so that
    Lightning runs it after the others (the average is updated first), as segkit's last.ckpt is written."""

    def __init__(self, step, path):
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def _fit_ema(tmp_path, tiny_voc, decay, stop=None, ckpt=None, save=None):
    """6 steps of the task with ``model.ema_decay`` = ``decay``; stopped after ``stop`` steps and saved to
    ``save`` then, or resumed from ``ckpt``. Returns the task (the averaged weights at the end of training)."""
    L.seed_everything(0)
    dm, _ = _setup(tmp_path, tiny_voc)
    task = SegmentationTask(num_classes=5, encoder="xception_tiny", decoder_channels=32, lr=0.05, ema_decay=decay)
    trainer = L.Trainer(
        max_steps=6,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_checkpointing=bool(stop),
        default_root_dir=tmp_path,
        callbacks=[_SaveAndStopAt(stop, save)] if stop else [],
    )
    trainer.fit(task, dm, ckpt_path=ckpt)
    return task


def test_ema_decay_zero_is_the_raw_model_and_a_resumed_run_ends_with_the_same_average(tmp_path, tiny_voc):
    raw = _fit_ema(tmp_path, tiny_voc, None).state_dict()
    zero = _fit_ema(tmp_path, tiny_voc, 0.0).state_dict()
    assert all(torch.equal(raw[k], zero[k]) for k in raw)
    whole = _fit_ema(tmp_path, tiny_voc, 0.7).state_dict()
    weights = [k for k in raw if k.endswith("weight")]
    assert any(not torch.allclose(raw[k], whole[k]) for k in weights)  # the average is not the last weights

    mid = tmp_path / "mid.ckpt"
    _fit_ema(tmp_path, tiny_voc, 0.7, stop=3, save=mid)
    saved = torch.load(mid, weights_only=False)
    assert "current_model_state" in saved and saved["global_step"] == 3  # raw weights beside the average
    resumed = _fit_ema(tmp_path, tiny_voc, 0.7, ckpt=mid).state_dict()
    for k in whole:
        assert torch.allclose(resumed[k].double(), whole[k].double(), atol=1e-6), k
