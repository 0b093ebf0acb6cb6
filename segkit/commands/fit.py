"""``segkit fit``, ``validate`` and ``test``: LightningCLI's subcommands on segkit's task and DataModules, with
the class count and names linked from the data set, best and last checkpoints, SyncBatchNorm on any device and
the run's config saved in its own folder.

    segkit fit --config voc.yaml --data.root DIR
    segkit validate --config voc.yaml --ckpt_path CKPT
    segkit test --config voc.yaml --ckpt_path CKPT
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins import CheckpointIO, LayerSync

from ..data import SegmentationDataModule
from ..distributed import SyncBatchNormPlugin
from ..io.disk import DiskFullError, free_bytes, is_disk_full, names_a_file
from ..io.torch_files import read_checkpoint
from ..training.checkpoints import AtomicCheckpointIO, GracefulStop, SegkitCheckpoint, own_run_folder
from ..training.console import MultiplyAddsSummary, quiet_lightning, step_progress_bar
from ..training.task import SegmentationTask
from ..version import __version__
from ..wandb import finish_runs, wandb_run
from .config_lookup import config_sources


def run_folder(trainer: Trainer) -> str:
    """The run's own folder, as ModelCheckpoint derives it: ``<save_dir>/<name>/<version>`` of the first logger
    (``lightning_logs/version_N``, or ``<project>/<W&B run id>``); without a logger ``runs/run_N`` of its own
    under ``trainer.default_root_dir``."""
    if not trainer.loggers:
        return own_run_folder(trainer)
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return os.path.join(logger.save_dir or trainer.default_root_dir, str(logger.name), version)


def _free_path(folder: str, filename: str) -> str:
    """``folder/filename``, or ``folder/<stem>_N<ext>`` with the first free N: nothing is overwritten."""
    stem, ext = os.path.splitext(filename)
    path, n = os.path.join(folder, filename), 0
    while os.path.exists(path):
        n += 1
        path = os.path.join(folder, f"{stem}_{n}{ext}")
    return path


class SaveRunConfig(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run's own folder (next to its checkpoints; Lightning's
    default puts every W&B run's config in the same file and then refuses to start) and, for W&B, as the run's
    config and a file of the run. An existing file is never overwritten (``config_1.yaml``, ... instead). A
    folder data set's held-out validation images are listed next to it (``val_split.txt``)."""

    def __init__(self, parser, config, **kwargs) -> None:
        super().__init__(parser, config, save_to_log_dir=False, **kwargs)

    def save_config(self, trainer: Trainer, pl_module, stage: str) -> None:  # rank 0 only
        folder = run_folder(trainer)
        os.makedirs(folder, exist_ok=True)
        path = _free_path(folder, self.config_filename)
        # the header says which files the config came from (a bundled config: by name and segkit version)
        header = self.parser.dump_header or []
        self.parser.dump_header = [*header, f"segkit=={__version__}", *config_sources(self.config.get("config"))]
        try:
            self.parser.save(self.config, path, skip_none=False, multifile=self.multifile)
        finally:
            self.parser.dump_header = header or None
        held_out = getattr(trainer.datamodule, "held_out_names", lambda: None)()
        if held_out:  # the validation images a folder data set held out of its training images (val_fraction)
            with open(_free_path(folder, "val_split.txt"), "w") as f:
                f.write("".join(f"{name}\n" for name in held_out))
        run = wandb_run(trainer)
        if run is not None:
            run.config.update(self.config.as_dict(), allow_val_change=True)
            # a file in the run's files folder is uploaded with the run (run.save links it and says so)
            shutil.copyfile(path, os.path.join(run.dir, os.path.basename(path)))


class SegkitCLI(LightningCLI):
    """LightningCLI with the class count and names linked from the DataModule and best/last checkpoints."""

    def __init__(self, *args, args_list: list[str], **kwargs) -> None:
        self._argv = list(args_list)  # the command line, for the checks of --ckpt_path against --model.*
        with warnings.catch_warnings():  # the command line is passed on purpose (with --config NAME resolved)
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            # configuration errors reach segkit.commands.main as exceptions, which says them in a line or two
            strict = {"exit_on_error": False}
            parser_kwargs = {"prog": "segkit", "description": HELP, **strict, "fit": strict, "validate": strict}
            super().__init__(*args, args=args_list, parser_kwargs={**parser_kwargs, "test": strict}, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit, validate and test: ``segkit predict`` is segkit's own command."""
        return {name: keys for name, keys in LightningCLI.subcommands().items() if name != "predict"}

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")
        parser.link_arguments("data.multilabel", "model.multilabel", apply_on="instantiate")
        parser.add_lightning_class_args(SegkitCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/mIoU",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-step{step}-mIoU{val/mIoU:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                # the DataModules shard data across processes themselves, without padding evaluation shards
                "trainer.use_distributed_sampler": False,
            }
        )

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """``trainer.sync_batchnorm: true`` installs segkit's SyncBatchNorm, which also synchronizes CPU processes;
        checkpoints are written atomically (unless another CheckpointIO is configured)."""
        config = self._get(self.config_init, "trainer", default={})
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if config.get("sync_batchnorm") and not any(isinstance(p, LayerSync) for p in plugins):
            plugins.append(SyncBatchNormPlugin())
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs["plugins"] = plugins
        self._add_console_callbacks(config)
        return super().instantiate_trainer(**kwargs)

    def _add_console_callbacks(self, config: dict) -> None:
        """A progress bar that counts steps to max_steps and a model summary with multiply-adds, where the config
        asks for neither its own nor none (``enable_progress_bar``/``enable_model_summary: false``)."""
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        defaults = self.trainer_defaults.setdefault("callbacks", [])
        if config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in [*configured, *defaults]
        ):
            defaults.append(step_progress_bar())
        if config.get("enable_model_summary") is not False and not any(
            isinstance(c, ModelSummary) for c in [*configured, *defaults]
        ):
            defaults.append(MultiplyAddsSummary())

    def _run_subcommand(self, subcommand: str) -> None:
        """Lightning's; a full disk met by a writer that names no file (a logger's ``write``) is said as the run
        folder's, where the logs and checkpoints go."""
        try:
            super()._run_subcommand(subcommand)
        except Exception as e:
            if not is_disk_full(e) or isinstance(e, DiskFullError) or names_a_file(e):
                raise
            folder = run_folder(self.trainer)
            raise DiskFullError(folder, None, free_bytes(folder)) from e

    def _parse_ckpt_path(self) -> None:
        """Lightning's: the checkpoint's model hyper-parameters replace the config's. Here the file is read with
        one-line errors, and a ``--model.X`` given on the command line that the checkpoint would replace is an
        error instead of being ignored silently."""
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if not path or path in ("last", "best", "hpc", "registry") or str(path).startswith("registry:"):
            return
        checkpoint = read_checkpoint(path)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        for key, value in _command_line_values(self._argv, "model").items():
            if key in hparams and key not in RUN_SETTINGS and hparams[key] != value:
                sys.exit(
                    f"segkit {sub}: --model.{key} {value} differs from the checkpoint's {hparams[key]} ({path}), "
                    "which would replace it: drop the option or give another checkpoint"
                )
        self._checkpoint_hparams = hparams
        if hparams:
            self.config = self.parser.parse_object({sub: {"model": hparams}}, self.config)

    def _check_checkpoint_fits(self) -> None:
        """The data set's class count against the checkpoint's, before any weights are loaded."""
        hparams = getattr(self, "_checkpoint_hparams", None) or {}
        theirs, ours = hparams.get("num_classes"), getattr(self.datamodule, "num_classes", None)
        if theirs is not None and ours is not None and theirs != ours:
            path = self.config[self.subcommand].get("ckpt_path")
            sys.exit(
                f"segkit {self.subcommand}: checkpoint {path} predicts {theirs} classes, the config's data set "
                f"has {ours}: use the config the model was trained with"
            )

    def _check_data(self) -> None:
        """The data set's files, in the launching process before DDP starts the others: ``prepare_data`` (VOC and
        Cityscapes check their layout, the synthetic sets write themselves), once per node as Lightning does."""
        if getattr(self, "datamodule", None) is not None and self.trainer.local_rank == 0:
            self.datamodule.prepare_data()

    def before_fit(self) -> None:
        self._check_checkpoint_fits()
        # the global batch over processes and accumulation steps, checked before DDP starts its processes
        parts = self.trainer.world_size * self.trainer.accumulate_grad_batches
        batch = getattr(self.datamodule, "batch_size", None)
        if isinstance(batch, int) and batch % parts:
            sys.exit(
                f"segkit fit: data.batch_size={batch} is the global batch and must divide evenly over "
                f"{self.trainer.world_size} process(es) x {self.trainer.accumulate_grad_batches} accumulation "
                f"step(s) (trainer.devices x trainer.num_nodes x trainer.accumulate_grad_batches); choose a "
                f"multiple of {parts}"
            )
        self._check_data()

    def before_validate(self) -> None:
        self._check_checkpoint_fits()
        self._check_data()

    def before_test(self) -> None:
        self._check_checkpoint_fits()
        self._check_data()

    def after_fit(self) -> None:
        cb = self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and cb is not None and cb.best_model_path:
            print(f"\nBest checkpoint (val/mIoU = {float(cb.best_model_score):.6f}): {cb.best_model_path}", flush=True)
        finish_runs(self.trainer)
        # a run a signal stopped before its end is not finished: 128 + the signal, as the shell reports one
        stopped = [c.exit_status for c in self.trainer.callbacks if isinstance(c, GracefulStop) and c.exit_status]
        if stopped:
            sys.exit(stopped[0])

    def after_validate(self) -> None:
        finish_runs(self.trainer)

    def after_test(self) -> None:
        finish_runs(self.trainer)


HELP = (
    "DeepLabV3+ semantic segmentation. fit, validate and test are LightningCLI's (below); segkit's own: eval, "
    "predict, export, convert, summary, data check|sbd|synthetic, configs (`segkit COMMAND --help` for each), "
    "and `segkit --version`. --config takes a file, or the name of a config bundled with segkit where no such "
    "file exists (`segkit configs` lists them)."
)

# model options a run may change on a checkpoint without changing what the weights mean
RUN_SETTINGS = {
    "lr",
    "momentum",
    "weight_decay",
    "poly_power",
    "warmup_steps",
    "encoder_lr_mult",
    "top_k_percent_pixels",
    "freeze_bn",
    "channels_last",
    "compile",
    "eval_output_stride",
    "pretrained",
    "class_names",
    "loss",
    "loss_options",
    "class_weights",
    "label_smoothing",
}


def _command_line_values(argv: list[str], section: str) -> dict[str, str]:
    """``--section.key value`` and ``--section.key=value`` pairs given on the command line, values read as YAML."""
    import yaml

    values, prefix = {}, f"--{section}."
    for i, arg in enumerate(argv):
        if arg.startswith(prefix):
            key, eq, value = arg[len(prefix) :].partition("=")
            if not eq and i + 1 < len(argv):
                value = argv[i + 1]
            try:
                values[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                values[key] = value
    return values


def main(argv: list[str]) -> None:
    """``segkit fit|validate|test ...``: LightningCLI with segkit's task, DataModules and callbacks."""
    quiet_lightning()
    SegkitCLI(
        SegmentationTask,
        SegmentationDataModule,
        subclass_mode_data=True,
        args_list=argv,
        save_config_callback=SaveRunConfig,
        trainer_defaults={"callbacks": [GracefulStop()]},
    )
