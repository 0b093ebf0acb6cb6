"""``segkit data``: check a configured data set, build VOC's augmented training set from SBD, or write the
folder-layout demo set.

    segkit data check --config cityscapes.yaml --data.root DIR   every split's files; exit status 1 on a problem
    segkit data sbd --sbd_root DIR --voc_root DIR                SegmentationClassAug and train_aug.txt
    segkit data synthetic [--root DIR]                           the two-class demo set (demo_folder.yaml)
"""

from __future__ import annotations

import sys

USAGE = (
    "usage: segkit data check --config FILE [--data.root DIR] | "
    "segkit data sbd --sbd_root DIR --voc_root DIR | segkit data synthetic [--root DIR]"
)


def main(args: list[str]) -> None:
    subcommands = {"check": check, "sbd": sbd, "synthetic": synthetic}
    if not args or args[0] not in subcommands:
        sys.exit(USAGE)
    subcommands[args[0]](args[1:])


def check(args: list[str]) -> None:
    """``segkit data check --config FILE [--data.root DIR]``; exits 1 when a problem was found."""
    from ..data.check import check
    from ..training.losses import enet_class_weights
    from .options import config_datamodule, data_config_parser

    parser = data_config_parser("segkit data check", "Check every split of the configured data set.")
    datamodule = config_datamodule(parser, parser.parse_args(args))
    sys.exit(1 if check(datamodule, enet_class_weights) else 0)


def sbd(args: list[str]) -> None:
    """``segkit data sbd --sbd_root DIR --voc_root DIR``."""
    from jsonargparse import ArgumentParser

    from ..data.sbd import convert_sbd

    parser = ArgumentParser(
        prog="segkit data sbd", description="Build SegmentationClassAug and train_aug.txt from SBD."
    )
    parser.add_argument("--sbd_root", required=True, help="the SBD release folder (holding benchmark_RELEASE/dataset)")
    parser.add_argument("--voc_root", required=True, help="the folder holding VOCdevkit/VOC2012")
    cfg = parser.parse_args(args)
    counts = convert_sbd(cfg.sbd_root, cfg.voc_root)
    print(
        f"train_aug.txt: {counts['train_aug']} images; SegmentationClassAug: {counts['written']} written, "
        f"{counts['kept']} already there"
    )


def synthetic(args: list[str]) -> None:
    """``segkit data synthetic [--root DIR]``: the folder-layout demo set (demo_folder.yaml)."""
    from jsonargparse import ArgumentParser

    from ..data.synthetic import make_synthetic_folder

    parser = ArgumentParser(
        prog="segkit data synthetic",
        description="Write the two-class demo set in a plain folder layout: images/part_{a,b}/*.jpg and "
        "masks/part_{a,b}/*.png (0/255).",
    )
    parser.add_argument("--root", default="data/synthetic_folder", help="the folder to write it in")
    parser.add_argument("--num_images", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    cfg = parser.parse_args(args)
    root = make_synthetic_folder(cfg.root, cfg.num_images, seed=cfg.seed)
    print(f"{cfg.num_images} images and their 0/255 masks in {root / 'images'} and {root / 'masks'}")
