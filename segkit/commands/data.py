"""``segkit data``: check a configured data set, build VOC's augmented training set from SBD, or write the
folder-layout demo set.

    segkit data check --config cityscapes.yaml --data.root DIR   every split's files; exit status 1 on a problem
    segkit data sbd --sbd_root DIR --voc_root DIR                SegmentationClassAug and train_aug.txt
    segkit data synthetic [--kind KIND] [--root DIR]             a demo set: two classes in JPEGs
                                                                 (folder: demo_folder.yaml), 4-band 16-bit
                                                                 TIFFs (multiband), overlapping classes
                                                                 (multilabel)
"""

from __future__ import annotations

import sys

USAGE = (
    "usage: segkit data check --config FILE [--data.root DIR] | "
    "segkit data sbd --sbd_root DIR --voc_root DIR | segkit data synthetic [--kind KIND] [--root DIR]"
)


def main(args: list[str]) -> None:
    subcommands = {"check": check, "sbd": sbd, "synthetic": synthetic}
    if not args or args[0] not in subcommands:
        sys.exit(USAGE)
    subcommands[args[0]](args[1:])


def check(args: list[str]) -> None:
    """``segkit data check --config FILE [--data.root DIR]``; exits 1 when a problem was found."""
    from .options import config_datamodule, data_config_parser, wants_help

    parser = data_config_parser(
        "segkit data check", "Check every split of the configured data set.", help_only=wants_help(args)
    )
    cfg = parser.parse_args(args)
    from ..data.check import check
    from ..training.losses import enet_class_weights

    datamodule = config_datamodule(parser, cfg)
    sys.exit(1 if check(datamodule, enet_class_weights) else 0)


def sbd(args: list[str]) -> None:
    """``segkit data sbd --sbd_root DIR --voc_root DIR``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="segkit data sbd", description="Build SegmentationClassAug and train_aug.txt from SBD."
    )
    parser.add_argument("--sbd_root", required=True, help="the SBD release folder (holding benchmark_RELEASE/dataset)")
    parser.add_argument("--voc_root", required=True, help="the folder holding VOCdevkit/VOC2012")
    cfg = parser.parse_args(args)
    from ..data.sbd import convert_sbd

    counts = convert_sbd(cfg.sbd_root, cfg.voc_root)
    print(
        f"train_aug.txt: {counts['train_aug']} images; SegmentationClassAug: {counts['written']} written, "
        f"{counts['kept']} already there"
    )


def synthetic(args: list[str]) -> None:
    """``segkit data synthetic [--kind folder|multiband|multilabel] [--root DIR]``: a demo set in a folder layout."""
    from jsonargparse import ArgumentParser

    kinds = {  # kind: default image count, what segkit.data.synthetic.make_synthetic_<kind> writes
        "folder": (240, "images and their 0/255 masks (demo_folder.yaml)"),
        "multiband": (
            160,
            "4-band 16-bit TIFFs (red, green, blue, near-infrared) and their class masks (demo_multiband.yaml)",
        ),
        "multilabel": (200, "images and one 0/255 mask per class, overlapping (demo_multilabel.yaml)"),
        "geo": (160, "4-band GeoTIFFs with nodata borders, their class masks, and scenes/ to predict (demo_geo.yaml)"),
    }
    parser = ArgumentParser(
        prog="segkit data synthetic",
        description="Write a demo set in a plain folder layout: folder: two classes, images/part_{a,b}/*.jpg and "
        "masks/part_{a,b}/*.png (0/255); multiband: three classes, images/*.tif (4 bands, 16 bits) and "
        "masks/*.png (class indices); multilabel: images/*.jpg and masks/<class>/*.png (overlapping classes); geo: "
        "the multiband set as GeoTIFFs with nodata borders, and scenes/*.tif to predict.",
    )
    parser.add_argument("--kind", choices=list(kinds), default="folder")
    parser.add_argument("--root", default=None, help="the folder to write it in (default data/synthetic_<kind>)")
    parser.add_argument(
        "--num_images",
        type=int,
        default=None,
        help="default 240 (folder), 160 (multiband, geo), 200 (multilabel)",
    )
    parser.add_argument("--seed", type=int, default=0)
    cfg = parser.parse_args(args)
    from ..data import synthetic as demo_sets

    count, what = kinds[cfg.kind]
    make = getattr(demo_sets, f"make_synthetic_{cfg.kind}")
    count = cfg.num_images or count
    root = make(cfg.root or f"data/synthetic_{cfg.kind}", count, seed=cfg.seed)
    print(f"{count} {what} in {root / 'images'} and {root / 'masks'}")
