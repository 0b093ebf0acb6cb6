"""What the commands that run a trained model share: reading a segkit config for its data section alone, and
the options of ``segkit eval``, ``segkit predict`` and ``segkit export``.

Those commands (and ``segkit data check``) take the same ``--config`` as ``segkit fit``; they build only its
DataModule (jsonargparse would otherwise also build the trainer's logger, which starts W&B), so that its
class names, colours, normalization and splits come from the config the model was trained with.
"""

from __future__ import annotations

from typing import Any

# the sections of a segkit fit config that the data-only commands skip
IGNORED_SECTIONS = ("seed_everything", "trainer", "model", "checkpoint", "optimizer", "lr_scheduler")


def wants_help(args: list[str]) -> bool:
    """Whether the command line asks for help only (``-h``, ``--help``)."""
    return any(a in ("-h", "--help") for a in args)


# --data in a help-only parser, which imports neither PyTorch nor the data sets (help in a second, not ten)
DATA_HELP = (
    "the data set: the config's data section, a DataModule's class_path (VOCDataModule, "
    "CityscapesDataModule, ADE20KDataModule, FolderDataModule, ...) and init_args; --data.KEY VALUE overrides "
    "one, --data.help CLASS lists a class's options"
)


def data_config_parser(prog: str, description: str, ignore: tuple[str, ...] = ("ckpt_path",), help_only: bool = False):
    """A parser that reads a segkit config's ``data`` section (``--data.*`` overrides work) and ignores the rest;
    ``help_only``: one that only prints the help, ``--data`` described in a line instead of read from the
    DataModule classes."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="a segkit config (its data section is used)")
    if help_only:
        parser.add_argument("--data", type=Any, default=None, help=DATA_HELP)
    else:
        from ..data import SegmentationDataModule

        parser.add_subclass_arguments(SegmentationDataModule, "data", required=True)
    for other in IGNORED_SECTIONS + tuple(ignore):
        parser.add_argument(f"--{other}", type=Any, default=None, help="ignored here")
    return parser


def config_datamodule(parser, cfg):
    """The DataModule of a parsed config; nothing else is built (the trainer's logger would be, otherwise)."""
    cfg = cfg.clone()
    for section in IGNORED_SECTIONS:
        cfg[section] = None
    return parser.instantiate(cfg).data


def model_parser(prog: str, description: str, ckpt_required: bool = True, help_only: bool = False):
    """:func:`data_config_parser` with the checkpoint and the output stride to run it at."""
    parser = data_config_parser(prog, description, ignore=(), help_only=help_only)
    parser.add_argument(
        "--ckpt_path",
        type=str if ckpt_required else str | None,
        required=ckpt_required,
        default=None,
        help="checkpoint written by segkit fit",
    )
    parser.add_argument(
        "--output_stride",
        type=int | None,
        default=None,
        help="run the model at this output stride (e.g. 8 for a model trained at 16)",
    )
    return parser


def add_inference_options(parser) -> None:
    """Test-time augmentation and the device, as :func:`segkit.inference.predict_probs` takes them."""
    from jsonargparse import ActionYesNo

    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="input scales, e.g. 0.75 1.0 1.25")
    parser.add_argument("--flip", action=ActionYesNo, default=False, help="add left-right flipped inputs")
    parser.add_argument("--window", type=int | None, default=None, help="sliding-window size for large images")
    parser.add_argument("--overlap", type=float, default=1 / 3, help="sliding-window overlap")
    parser.add_argument(
        "--pad_to",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="pad each image (bottom/right, mean pixel) to H W first, as the official evaluation "
        "does (its eval_crop_size: 513 513 for VOC, 1025 2049 for Cityscapes)",
    )
    parser.add_argument(
        "--device",
        type=str | None,
        default=None,
        help="cuda, cuda:1, cpu, ... (default: cuda when available, else cpu)",
    )


def run_device(cfg) -> str:
    """``--device``, or by default cuda when PyTorch sees a GPU, else cpu."""
    if cfg.device is not None:
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def inference_settings(parser, cfg):
    """The parsed test-time options as :class:`~segkit.inference.InferenceSettings`; a bad value is a parser error
    naming it."""
    from ..inference.settings import InferenceSettings

    try:
        return InferenceSettings(tuple(cfg.scales), cfg.flip, cfg.window, cfg.overlap, cfg.pad_to)
    except ValueError as e:
        parser.error(f"--{e}")  # InferenceSettings names the field first: "--window must be at least 1 pixel, ..."


def add_memory_options(parser, max_pixels: bool = True) -> None:
    """The memory budget above which an image is predicted band by band, and (``max_pixels``) the
    decompression-bomb limit."""
    parser.add_argument(
        "--memory_budget",
        type=str | None,
        default=None,
        help="memory one image may take, e.g. 4GB (default: half the available memory); a larger image is "
        "predicted in --window tiles (513 px when not given), band by band",
    )
    if not max_pixels:
        return
    parser.add_argument(
        "--max_pixels",
        type=int | None,
        default=None,
        help="refuse images whose header claims more pixels, before decoding them (default: 2^30, OpenCV's own "
        "decoding limit)",
    )


def memory_budget(parser, cfg) -> int | None:
    """``--memory_budget`` in bytes (None: the default), or a parser error naming the option."""
    from ..inference.memory import parse_size

    if cfg.get("max_pixels") is not None and cfg.max_pixels < 1:
        parser.error(f"--max_pixels must be positive, got {cfg.max_pixels}")
    if cfg.memory_budget is None:
        return None
    try:
        return parse_size(cfg.memory_budget)
    except ValueError as e:
        parser.error(f"--memory_budget: {e}")
