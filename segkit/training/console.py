"""What ``segkit fit`` shows on the console: Lightning's own lines less its advertisements and library
deprecation notices, a model summary with the multiply-adds at the training crop size, and a progress bar that
counts optimizer steps to ``max_steps`` in step-based runs (Lightning's reads "Epoch 0/-2" there).
"""

from __future__ import annotations

import logging
import warnings

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelSummary, RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE

from ..models.complexity import complexity_table

# Lightning 2.6 advertises its cloud products on every run ("💡 Tip: For seamless cloud logging ..."), and says
# that it adds no model summary of its own when segkit's is there
DROPPED_LINES = ("💡 Tip:", "Trainer already configured with model summary callbacks")


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(DROPPED_LINES)


def quiet_lightning() -> None:
    """Drops Lightning's advertisement lines (:data:`DROPPED_LINES`) and a deprecation notice that PyTorch raises
    inside Lightning's own code (``_pytree.py``: nothing a segkit user can act on)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def _step_based(trainer: pl.Trainer) -> bool:
    return trainer.max_steps > 0 and trainer.max_epochs in (None, -1)


class StepProgressBar(RichProgressBar):
    """Rich's progress bar; in a step-based run (``max_steps`` set, no ``max_epochs``) one training bar over the
    whole run, ``completed/max_steps`` optimizer steps, instead of one bar per epoch."""

    def _get_train_description(self, current_epoch: int) -> str:
        if not _step_based(self.trainer):
            return super()._get_train_description(current_epoch)
        return "Step".ljust(len(self.validation_description))

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if _step_based(self.trainer) else super().total_train_batches

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if _step_based(trainer) and self.train_progress_bar_id is not None:
            return  # the one bar of the run goes on
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if _step_based(trainer):
            self._update(self.train_progress_bar_id, trainer.global_step)


class StepTQDMProgressBar(TQDMProgressBar):
    """The same for the tqdm bar that Lightning uses where Rich is not installed."""

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if _step_based(self.trainer) else super().total_train_batches

    def on_train_epoch_start(self, trainer: pl.Trainer, *_) -> None:
        if not _step_based(trainer):
            return super().on_train_epoch_start(trainer, *_)
        if self.train_progress_bar.total != trainer.max_steps:
            self.train_progress_bar.reset(total=trainer.max_steps)
            self.train_progress_bar.initial = trainer.global_step
            self.train_progress_bar.set_description("Step")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if not _step_based(trainer):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.train_progress_bar.n = trainer.global_step
        self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
        self.train_progress_bar.refresh()


def step_progress_bar() -> RichProgressBar | TQDMProgressBar:
    """The progress bar Lightning would choose (Rich where it is installed), counting steps in step-based runs."""
    return StepProgressBar() if _RICH_AVAILABLE else StepTQDMProgressBar()


class MultiplyAddsSummary(ModelSummary):
    """The model's parameters and multiply-adds per module (encoder, ASPP, decoder) at the training crop size,
    counted as :func:`segkit.models.complexity.count_macs` counts them; Lightning's own summary has a FLOPs
    column of zeros unless the module carries an example input."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        crop = getattr(trainer.datamodule, "crop_size", None)
        model = getattr(pl_module, "model", None)
        if not trainer.is_global_zero or model is None or crop is None:
            return
        table = complexity_table(model, (crop, crop))
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        print(f"{table}\ntrainable parameters: {trainable / 1e6:.2f} M")
