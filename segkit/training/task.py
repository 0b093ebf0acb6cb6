"""The LightningModule: DeepLabV3+ with the paper's training recipe.

Loss: pixel-wise cross-entropy ignoring label 255 (the paper's), optionally with hard-pixel mining (the official
``top_k_percent_pixels``: keep the largest k% of the pixel losses), class weights and label smoothing, alone or
summed with smp's Dice, Focal, Lovasz, Jaccard or Tversky loss (:mod:`segkit.training.losses`). Optimizer: SGD with
momentum 0.9 and weight decay on convolution weights (official DeepLab regularizes neither batch norm, biases nor
depthwise weights), a "poly" learning rate ``lr * (1 - step / max_steps) ** 0.9`` stepped every iteration, optional
linear warmup and an encoder LR multiplier. Metrics: one confusion matrix over the whole split. A non-finite
training loss stops training at its step (:class:`~segkit.training.checkpoints.LossWatch`); each step seeds
dropout's random numbers from (seed, step, rank), so a resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

import os

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import IGNORE_INDEX
from ..distributed import CPUSyncBatchNorm
from ..evaluation.metrics import format_iou_table, head_counts, head_scores
from ..head import Head
from ..models import DeepLabV3Plus
from .checkpoints import LossWatch
from .losses import SegmentationLoss, enet_class_weights
from .optim import sgd_poly


class SegmentationTask(L.LightningModule):
    """Trains and evaluates a :class:`~segkit.models.DeepLabV3Plus`.

    Args:
        num_classes: number of classes (linked from the DataModule by the CLI).
        class_names: class names for logs and tables (linked from the DataModule by the CLI).
        in_channels: input bands (linked from the DataModule by the CLI; 3 for RGB).
        multilabel: overlapping labels (linked from the DataModule by the CLI): one sigmoid per class, masks
            (B, K, H, W) of 0, 1 and 255, the loss ``binary_cross_entropy`` by default, per-class IoU from each
            class's binary counts (:class:`~segkit.evaluation.metrics.MultilabelCounts`) at the thresholds
            :attr:`thresholds` (0.5 each; ``segkit eval --tune_thresholds`` chooses them).
        head: ``softmax`` (one output per class; single-label masks) or ``sigmoid``: for two classes, one output
            (the foreground's probability, binary cross-entropy by default); for multilabel masks, one per class.
            Default: ``sigmoid`` for multilabel masks, else ``softmax``.
        encoder: encoder name (see DeepLabV3Plus).
        output_stride: training output stride (16 in the paper's recipe).
        pretrained: encoder weights (file, timm name or smp weights name), or None.
        atrous_rates: ASPP rates; default 6/12/18 at OS16, 12/24/36 at OS8.
        decoder_channels: ASPP and decoder width (256 in the paper).
        dropout: dropout rate after the ASPP projection (0.1 in the official code).
        eval_output_stride: output stride for validation/test (e.g. 8 for a model trained at 16); default: same.
        lr: base learning rate (0.007 for VOC in the paper).
        momentum: SGD momentum.
        weight_decay: L2 weight decay on convolution weights (4e-5 in the official Xception recipe).
        poly_power: exponent of the poly schedule.
        warmup_steps: linear warmup iterations.
        encoder_lr_mult: LR multiplier for the encoder parameters.
        top_k_percent_pixels: hard-pixel mining of the cross-entropy; 100 = every pixel.
        loss: the training loss, ``{name: weight}`` summed (``cross_entropy``, ``dice``, ``focal``, ``lovasz``,
            ``jaccard``, ``tversky``), e.g. ``{cross_entropy: 1.0, dice: 0.5}``, or one name; default cross-entropy.
        loss_options: arguments of smp's losses, e.g. ``{focal: {gamma: 3.0}}``.
        class_weights: cross-entropy class weights: one per class, or ``auto`` (from the training set's class
            pixel histogram, :func:`segkit.training.losses.enet_class_weights`; printed and logged when training
            starts).
        label_smoothing: label smoothing of the cross-entropy.
        freeze_bn: keep batch-norm statistics fixed during training (the official ``fine_tune_batch_norm=False``,
            for batches too small to estimate them, e.g. fine-tuning at OS8); scale and shift still train.
        channels_last: run the model in channels-last memory format (faster convolutions on recent GPUs).
        compile: compile the model with ``torch.compile`` when training starts.
        ema_decay: keep an exponential moving average of the weights (and batch-norm statistics), updated after
            every optimizer step as ``ema = decay * ema + (1 - decay) * weights``: validation, the best-checkpoint
            choice and the checkpoints' ``state_dict`` (so eval, predict and export) use it, and training ends
            with it; the raw weights travel in the checkpoint too, so a resumed run continues both exactly
            (Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging`). None: off.
    """

    def __init__(
        self,
        num_classes: int = 21,
        class_names: list[str] | None = None,
        in_channels: int = 3,
        multilabel: bool = False,
        head: str | None = None,
        encoder: str = "xception65",
        output_stride: int = 16,
        pretrained: str | None = None,
        atrous_rates: list[int] | None = None,
        decoder_channels: int = 256,
        dropout: float = 0.1,
        eval_output_stride: int | None = None,
        lr: float = 0.007,
        momentum: float = 0.9,
        weight_decay: float = 4e-5,
        poly_power: float = 0.9,
        warmup_steps: int = 0,
        encoder_lr_mult: float = 1.0,
        top_k_percent_pixels: float = 100.0,
        loss: dict[str, float] | str | None = None,
        loss_options: dict[str, dict] | None = None,
        class_weights: list[float] | str | None = None,
        label_smoothing: float = 0.0,
        freeze_bn: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        ema_decay: float | None = None,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"model.class_names has {len(class_names)} names for num_classes={num_classes}")
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise ValueError(f"model.ema_decay must be in [0, 1) (e.g. 0.999), or null for none; got {ema_decay}")
        if not 0 < top_k_percent_pixels <= 100:
            raise ValueError(f"model.top_k_percent_pixels must be in (0, 100], got {top_k_percent_pixels}")
        head = head or ("sigmoid" if multilabel else "softmax")
        if head not in ("softmax", "sigmoid") or (multilabel and head == "softmax"):
            raise ValueError(
                f"model.head must be softmax or sigmoid (multilabel masks: sigmoid), got {head!r}"
                if head not in ("softmax", "sigmoid")
                else "model.head: softmax gives one class per pixel; multilabel masks need sigmoid"
            )
        binary = head == "sigmoid" and not multilabel
        if binary and num_classes != 2:
            raise ValueError(
                f"model.head: sigmoid with single-label masks is for two classes (one output: the foreground's "
                f"probability); the data set has {num_classes}: use softmax, or multilabel masks"
            )
        if binary and class_weights is not None:
            raise ValueError(
                "model.class_weights weight the softmax head's classes; the sigmoid head has one output: set "
                "model.class_weights: null (for imbalance, add dice to model.loss)"
            )
        if multilabel and class_weights == "auto":
            raise ValueError(
                "model.class_weights: auto is computed for single-label masks; give one weight per class for "
                "multilabel masks (they weight the binary cross-entropy)"
            )
        if isinstance(class_weights, str) and class_weights != "auto":
            raise ValueError(
                f"model.class_weights must be a list of {num_classes} numbers or auto, got {class_weights!r}"
            )
        self.save_hyperparameters()
        self.class_names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
        self.model = DeepLabV3Plus(
            num_classes=num_classes,
            encoder=encoder,
            output_stride=output_stride,
            pretrained=pretrained,
            atrous_rates=atrous_rates,
            decoder_channels=decoder_channels,
            dropout=dropout,
            in_channels=in_channels,
            multilabel=multilabel,
            binary=binary,
        )
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.train()  # with freeze_bn, batch norm in eval mode from the start (Lightning keeps modules' modes)
        kind = Head.of(self.model)  # what the outputs mean: their count, the default loss, the counts
        self.val_confmat, self.test_confmat = head_counts(kind), head_counts(kind)
        self.last_val: tuple[torch.Tensor, dict] | None = None  # (confusion matrix, scores) of the last validation
        # sigmoid heads decide where a probability is above its threshold: one per class of a multilabel model,
        # one for the foreground of a binary one (segkit eval --tune_thresholds chooses them,
        # segkit.evaluation.thresholds)
        self.thresholds = [0.5] * (1 if head == "sigmoid" and not multilabel else num_classes)
        self._step_seed: int | None = None  # see on_train_batch_start
        self._loss_watch = LossWatch()
        self.sigmoid = head == "sigmoid"  # one sigmoid per output: multilabel masks, or one output for 2 classes
        terms = {loss: 1.0} if isinstance(loss, str) else dict(loss or {kind.default_loss: 1.0})
        fixed = None if class_weights is None or class_weights == "auto" else torch.tensor(class_weights)
        self.criterion = SegmentationLoss(
            terms,
            kind.outputs,
            fixed,
            label_smoothing,
            top_k_percent_pixels,
            loss_options,
            self.sigmoid,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def configure_callbacks(self) -> list[L.Callback]:
        if self.hparams.ema_decay is None:
            return []
        from lightning.pytorch.callbacks import EMAWeightAveraging

        return [EMAWeightAveraging(decay=self.hparams.ema_decay)]

    def configure_model(self) -> None:
        if self.hparams.compile:
            self.model.compile()  # in place: parameter names (and checkpoints) stay as they are

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Seeds the random numbers of this step (dropout) from (seed, step, rank): a run resumed from a
        checkpoint draws what the uninterrupted run drew, with no random-number state to save."""
        if self._step_seed is None:
            self._step_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # seed_everything's seed
        torch.manual_seed((self._step_seed * 1_000_003 + self.global_step * 4_099 + self.global_rank) % 2**63)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["segkit_step_seed"] = self._step_seed
        if self.sigmoid:
            checkpoint["segkit_thresholds"] = list(self.thresholds)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if hasattr(datamodule, "inference_record"):  # normalization, classes and colours, for Segmenter
            checkpoint["segkit_data"] = datamodule.inference_record()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._step_seed = checkpoint.get("segkit_step_seed", self._step_seed)
        self.thresholds = list(checkpoint.get("segkit_thresholds", self.thresholds))
        # Lightning restores the weights before converting the model to the run's precision: with
        # precision 64-true convert first, or the float64 weights of the checkpoint would be rounded to float32
        if self._trainer is not None and self.trainer.precision == "64-true":
            self.double()

    def train(self, mode: bool = True) -> SegmentationTask:
        super().train(mode)
        if mode and self.hparams.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()  # normalize with, and keep, the running statistics
        return self

    # training -----------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])  # (B, K, H, W); (B, 1, H, W) for a binary sigmoid head
        loss = self.training_loss(logits, self._target(batch["mask"]))
        # the loss of the whole global batch (the mean over processes of the scaled losses below)
        global_loss = loss.detach()
        if self.trainer.world_size > 1:
            global_loss = self.trainer.strategy.reduce(global_loss, reduce_op="mean")
        self._loss_watch.start(global_loss)
        self.log("train/loss", global_loss, prog_bar=True)
        # a device tensor filled from the Python float: self.log(float) would copy it from the host, and a
        # copy from pageable host memory waits for the device to finish the queued forward pass
        lr = self.trainer.optimizers[0].param_groups[-1]["lr"]
        self.log("train/lr", torch.full((), lr, device=self.device))
        return loss

    def _target(self, mask: torch.Tensor) -> torch.Tensor:
        """Masks travel as uint8 and are widened on the device; a binary sigmoid head's (B, H, W) class indices
        become its one output's targets (B, 1, H, W): 1 for the foreground, 0, or 255 (ignored)."""
        mask = mask.long()
        return mask[:, None] if self.model.binary else mask

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        self._loss_watch.check(self.trainer)  # a non-finite loss stops training at this step

    def training_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """This process's share of the loss of the global batch (:class:`~segkit.training.losses.SegmentationLoss`)."""
        world = self.trainer.world_size
        if world == 1:
            return self.criterion(logits, target)
        return self.criterion(logits, target, lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"), world)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.class_weights == "auto":
            self.criterion.class_weights = torch.tensor(self._auto_class_weights(), device=self.device)

    def _auto_class_weights(self) -> list[float]:
        """``class_weights: auto``: counted on the training set by process 0, the same for all."""
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "class_pixel_counts"):
            raise ValueError("model.class_weights: auto needs a segkit DataModule (it counts the training masks)")
        counts = datamodule.class_pixel_counts() if self.trainer.is_global_zero else None
        counts = self.trainer.strategy.broadcast(counts)
        weights = enet_class_weights(counts)
        if self.trainer.is_global_zero:
            share = counts / max(counts.sum(), 1)
            rows = "\n".join(f"{n:<20} {100 * p:8.3f}% {w:8.3f}" for n, p, w in zip(self.class_names, share, weights))
            print(
                f"segkit: class weights (auto: 1 / ln(1.02 + share), mean 1 over the training pixels)\n"
                f"{'class':<20} {'pixels':>9} {'weight':>8}\n{rows}",
                flush=True,
            )
            for logger in self.loggers:
                logger.log_hyperparams({f"class_weights/{n}": float(w) for n, w in zip(self.class_names, weights)})
        return weights.tolist()

    def on_train_start(self) -> None:
        if not self.trainer.is_global_zero:
            return
        sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        world = self.trainer.world_size
        lines = []
        if hasattr(sampler, "description"):  # segkit's TrainBatchSampler: how the global batch is split
            lines.append(sampler.description)
        bn = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        synced = [m for m in bn if isinstance(m, (nn.SyncBatchNorm, CPUSyncBatchNorm))]
        if self.hparams.freeze_bn:
            lines.append(f"batch norm frozen: {len(bn)} layers keep their running statistics")
        elif synced:
            lines.append(
                f"batch norm synchronized over {world} process(es): {len(synced)} {type(synced[0]).__name__} layers"
            )
        elif world > 1:
            lines.append("batch norm NOT synchronized: statistics per process (set trainer.sync_batchnorm true)")
        print("\n".join(f"segkit: {line}" for line in lines), flush=True)

    def configure_optimizers(self):
        hp = self.hparams
        head = nn.ModuleList([self.model.aspp, self.model.decoder])
        return sgd_poly(
            [(self.model.encoder, hp.lr * hp.encoder_lr_mult), (head, hp.lr)],
            hp.momentum,
            hp.weight_decay,
            self.trainer.estimated_stepping_batches,
            hp.poly_power,
            hp.warmup_steps,
        )

    # evaluation ---------------------------------------------------------------------------------------
    def _set_eval_stride(self, evaluating: bool) -> None:
        eval_os = self.hparams.eval_output_stride
        if eval_os is not None:
            self.model.set_output_stride(eval_os if evaluating else self.hparams.output_stride)

    def on_validation_start(self) -> None:
        self._set_eval_stride(True)

    def on_validation_end(self) -> None:
        self._set_eval_stride(False)

    def on_test_start(self) -> None:
        self._set_eval_stride(True)

    def on_predict_start(self) -> None:
        self._set_eval_stride(True)

    @property
    def head(self) -> Head:
        """The model's :class:`~segkit.head.Head` at the task's thresholds."""
        return Head.of(self.model, self.thresholds)

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) logits -> class indices (B, H, W), or for multilabel masks (B, K, H, W) booleans: each
        class's probability above its threshold (:meth:`~segkit.head.Head.decide_logits`)."""
        return self.head.decide_logits(logits)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits, target = self(batch["image"]), self._target(batch["mask"])
        if self.sigmoid:
            labelled = target != IGNORE_INDEX
            bce = F.binary_cross_entropy_with_logits(logits, (target == 1).to(logits.dtype), reduction="none")
            loss = (bce * labelled).sum() / labelled.sum().clamp(min=1)
        else:
            loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
        self.log("val/loss", loss, batch_size=len(batch["name"]), sync_dist=True)
        self.val_confmat.update(self.decide(logits), batch["mask"])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_confmat.update(self.decide(self(batch["image"])), batch["mask"])

    def predict_step(self, batch: dict, batch_idx: int) -> list[torch.Tensor]:
        """``trainer.predict``: class-index maps (H, W) uint8, one per image at its original size; multilabel
        masks: (K, H, W) booleans."""
        if self.hparams.multilabel:
            decided = self.decide(self(batch["image"]))
            return [d[:, :h, :w] for d, (h, w) in zip(decided, batch["size"].tolist())]
        return [d[:h, :w] for d, (h, w) in zip(self.decide(self(batch["image"])), batch["size"].tolist())]

    def _log_scores(self, metric, prefix: str) -> None:
        """Logs and prints the scores of ``metric`` (:func:`~segkit.evaluation.metrics.head_counts`) and resets it."""
        confmat = metric.compute()  # summed over all processes
        scores = head_scores(self.head, confmat)
        metric.reset()
        if prefix == "val":
            self.last_val = (confmat.cpu(), scores)  # for callbacks (the W&B dashboard)
        self.log(f"{prefix}/mIoU", scores["mIoU"])
        self.log(f"{prefix}/pixel_acc", scores["pixel_acc"])
        for name, iou in zip(self.class_names, scores["per_class_iou"].tolist()):
            self.log(f"{prefix}/IoU/{name}", iou)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            step = f" after step {self.global_step}" if self.trainer.state.fn == "fit" else ""
            heading = f"{prefix}: per-class IoU{step}, {int(scores['num_pixels'])} labelled pixels"
            print("\n" + format_iou_table(self.class_names, scores, prefix, heading), flush=True)

    def on_validation_epoch_end(self) -> None:
        self._log_scores(self.val_confmat, "val")

    def on_test_epoch_end(self) -> None:
        self._log_scores(self.test_confmat, "test")
