"""The ``segkit`` command: LightningCLI's fit/validate/test/predict plus ``segkit summary``.

    segkit fit --config configs/voc.yaml --data.root DIR
    segkit validate --config configs/voc.yaml --ckpt_path CKPT
    segkit eval --config configs/voc.yaml --ckpt_path CKPT --scales 0.5 0.75 1.0 1.25 1.5 1.75 --flip
    segkit summary --encoder xception65 --size 513
    segkit data check --config configs/cityscapes.yaml --data.root DIR
    segkit data sbd --sbd_root DIR --voc_root DIR
"""
from __future__ import annotations

import sys

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins import LayerSync

from .data import SegmentationDataModule
from .distributed import SyncBatchNormPlugin
from .task import SegmentationTask


class SegkitCLI(LightningCLI):
    """LightningCLI with the class count and names linked from the DataModule and best/last checkpoints."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/mIoU",
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            "checkpoint.filename": "best-step{step}-mIoU{val/mIoU:.4f}",
            "checkpoint.auto_insert_metric_name": False,
            # the DataModules shard data across processes themselves, without padding evaluation shards
            "trainer.use_distributed_sampler": False,
        })

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """``trainer.sync_batchnorm: true`` installs segkit's SyncBatchNorm, which also synchronizes CPU processes."""
        config = self._get(self.config_init, "trainer", default={})
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if config.get("sync_batchnorm") and not any(isinstance(p, LayerSync) for p in plugins):
            kwargs["plugins"] = [*plugins, SyncBatchNormPlugin()]
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        cb = self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and cb is not None and cb.best_model_path:
            print(f"\nBest checkpoint (val/mIoU = {float(cb.best_model_score):.6f}): {cb.best_model_path}", flush=True)


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else args
    if argv and argv[0] == "summary":
        from jsonargparse import CLI

        from .summary import summary

        CLI(summary, args=argv[1:])
        return
    if argv and argv[0] == "eval":
        from .evaluate import main as eval_main

        eval_main(argv[1:])
        return
    if argv and argv[0] == "data":
        if len(argv) < 2 or argv[1] not in ("check", "sbd"):
            sys.exit("usage: segkit data check --config FILE [--data.root DIR] | segkit data sbd --sbd_root DIR --voc_root DIR")
        from .data import check, sbd

        (check if argv[1] == "check" else sbd).main(argv[2:])
        return
    SegkitCLI(SegmentationTask, SegmentationDataModule, subclass_mode_data=True, args=args)


if __name__ == "__main__":
    main()
