"""``segkit predict``: segment your own images with a trained checkpoint.

    segkit predict --config voc.yaml --ckpt_path CKPT --input photos/ --output out/
    segkit predict --config cityscapes.yaml --ckpt_path CKPT --input "frames/**/*.png" --output out/ \\
        --scales 0.75 1.0 1.25 --flip

For every image ``<stem>.png`` (class indices, a palette PNG coloured like the data set's masks) and
``<stem>_overlay.jpg`` (the image blended with the colour mask) are written at the image's own resolution;
``--confidence`` adds ``<stem>_confidence.png`` and ``<stem>_entropy.png``, 16-bit maps of the top class
probability and of the entropy over log(classes), from the probabilities the mask comes from (a multi-label
model: ``<stem>_<class>_confidence.png``, each class's probability). The files: :mod:`segkit.inference.outputs`.
The config's data section gives the class names and the colours; the checkpoint's record of its data (segkit
fit writes it) the bands read, their normalization and the bands shown in the overlay. Images of the same size
are batched together (sorted by size first), so each prediction equals that of the image alone; an image
that cannot be read is reported by name and skipped, and the command then exits with status 1 after writing
all the others.

A video file (``--input clip.mp4``, any format OpenCV's FFmpeg backend reads) or a folder of frames with
``--fps`` gives ``<stem>_overlay.mp4`` at the input's frame rate and size (``--every N``: every N-th frame, at
the frame rate / N) and with ``--masks`` a mask PNG per frame in ``<stem>_masks/``.

Memory is bounded by ``--memory_budget`` (default half the available memory), not by the image: an image
that would need more is predicted in overlapping ``--window`` tiles, band by band, and the command says so;
an image whose header claims more than ``--max_pixels`` is refused unread (docs/large_images.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .options import (
    add_inference_options,
    add_memory_options,
    config_datamodule,
    inference_settings,
    memory_budget,
    model_parser,
    run_device,
    wants_help,
)


def parser(help_only: bool = False):
    from jsonargparse import ActionYesNo

    p = model_parser("segkit predict", "Segment images, or a video, with a checkpoint.", help_only=help_only)
    p.add_argument(
        "--input", type=str, required=True, help="an image folder, a glob pattern, one image, or a video file"
    )
    p.add_argument(
        "--output",
        type=str,
        required=True,
        help="folder for <stem>.png and <stem>_overlay.jpg (a video: <stem>_overlay.mp4; a georeferenced TIFF: "
        "<stem>_labels.tif on its grid)",
    )
    add_inference_options(p)
    add_memory_options(p)
    p.add_argument("--batch_size", type=int, default=4, help="images of one size predicted together")
    p.add_argument("--num_workers", type=int, default=2, help="image-decoding processes")
    p.add_argument(
        "--confidence",
        action=ActionYesNo,
        default=False,
        help="also write <stem>_confidence.png and <stem>_entropy.png (16-bit: top class probability and "
        "entropy / log(classes), times 65535); a multi-label model: <stem>_<class>_confidence.png, each class's "
        "probability",
    )
    p.add_argument("--overwrite", action=ActionYesNo, default=False, help="replace existing output files")
    p.add_argument(
        "--nodata",
        type=int,
        default=255,
        help="georeferenced TIFFs: the labels' value where the input has no data in any band the model reads",
    )
    p.add_argument(
        "--fps",
        type=float | None,
        default=None,
        help="treat --input, a folder of frames in name order, as a video at this frame rate",
    )
    p.add_argument("--every", type=int, default=1, help="video: segment every N-th frame (frame rate / N)")
    p.add_argument(
        "--masks", action=ActionYesNo, default=False, help="video: also write one mask PNG per frame (<stem>_masks/)"
    )
    return p


def main(args: list[str]) -> None:
    p = parser(help_only=wants_help(args))
    cfg = p.parse_args(args)
    # imported once the options are read: --help answers without PyTorch
    from ..data.transforms import eval_transform
    from ..inference.image_files import find_images, predict_folder
    from ..inference.memory import MAX_PIXELS
    from ..inference.outputs import output_paths
    from ..inference.rasters import raster_paths
    from ..inference.video import is_video
    from ..io.geotiff import has_geotags

    cfg.device = run_device(cfg)
    if cfg.batch_size < 1:
        p.error(f"--batch_size must be at least 1, got {cfg.batch_size}")
    if not 0 <= cfg.nodata <= 255:
        p.error(f"--nodata is a label value, 0-255, got {cfg.nodata}")
    budget = memory_budget(p, cfg)
    settings = inference_settings(p, cfg)
    datamodule = config_datamodule(p, cfg)
    if is_video(cfg.input) or cfg.fps is not None:
        predict_video_file(p, cfg, datamodule)
        return
    files = find_images(cfg.input)
    output = Path(cfg.output)
    names = list(datamodule.class_names) if datamodule.multilabel else None

    def outputs(image: Path) -> tuple[Path, ...]:
        if has_geotags(image):  # segmented on its grid, as GeoTIFFs
            return raster_paths(output, image, cfg.confidence)
        return output_paths(output, image, cfg.confidence, names)

    existing = [p for f in files for p in outputs(f) if p.exists()]
    if existing and not cfg.overwrite:
        shown = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        sys.exit(
            f"segkit predict: {len(existing)} output file(s) already exist ({shown}); "
            "choose another --output or pass --overwrite"
        )
    model, image_format = checkpoint_and_format(cfg, datamodule)
    failed = predict_folder(
        model,
        files,
        output,
        transform=eval_transform(image_format.mean, image_format.std, image_format.pixel_max),
        palette=datamodule.palette,
        settings=settings,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        device=cfg.device,
        confidence=cfg.confidence,
        memory_budget=budget,
        max_pixels=MAX_PIXELS if cfg.max_pixels is None else cfg.max_pixels,
        read=image_format.reader(),
        display=None if image_format.rgb else image_format.display,
        class_names=list(datamodule.class_names),
        bands=(0, 1, 2) if image_format.rgb else image_format.bands,
        pixel_max=image_format.pixel_max,
        nodata=cfg.nodata,
    )
    print(f"segkit predict: wrote {len(files) - len(failed)} of {len(files)} image(s) to {output}", flush=True)
    if failed:
        print(f"segkit predict: {len(failed)} image(s) not predicted:", file=sys.stderr)
        for _, reason in failed:
            print(f"  {reason}", file=sys.stderr)
        sys.exit(1)


def checkpoint_and_format(cfg, datamodule):
    """The checkpoint's model as inference runs it, how its input images are read (:class:`ImageFormat`: the
    checkpoint's record of its data, or the config's data set for a checkpoint without one)."""
    from ..data.bands import ImageFormat
    from ..inference.predict import checkpoint_model
    from ..io.torch_files import read_checkpoint

    checkpoint = read_checkpoint(cfg.ckpt_path)
    model = checkpoint_model(checkpoint, cfg.ckpt_path, datamodule.num_classes, cfg.output_stride)
    image_format = ImageFormat.from_record(checkpoint.get("segkit_data") or datamodule.inference_record())
    return model, image_format


def predict_video_file(p, cfg, datamodule) -> None:
    """The overlay video (and masks) of a video file or a folder of frames; exit 1 when it ends early."""
    from tqdm import tqdm

    from ..data.transforms import eval_transform
    from ..inference.video import VideoFrames, predict_video, video_outputs

    settings = inference_settings(p, cfg)
    if cfg.every < 1:
        p.error(f"--every must be at least 1, got {cfg.every}")
    if cfg.fps is not None and cfg.fps <= 0:
        p.error(f"--fps must be positive, got {cfg.fps}")
    if cfg.confidence:
        p.error("--confidence writes maps per image; for a video, give its frames as images (a folder, no --fps)")
    output = Path(cfg.output)
    frames = VideoFrames(cfg.input, cfg.fps)
    existing = [f for f in video_outputs(output, frames.source, cfg.masks) if f.exists()]
    if existing and not cfg.overwrite:
        sys.exit(f"segkit predict: {existing[0]} already exists; choose another --output or pass --overwrite")
    model, image_format = checkpoint_and_format(cfg, datamodule)
    if not image_format.rgb:
        sys.exit(f"segkit predict: the model reads {image_format.in_channels} band(s), video frames are RGB")
    total = -(-frames.count // cfg.every) if frames.count > 0 else None
    with tqdm(total=total, desc="predict", unit="frame", dynamic_ncols=True) as bar:
        result = predict_video(
            model,
            frames,
            output,
            transform=eval_transform(image_format.mean, image_format.std),
            palette=datamodule.palette,
            settings=settings,
            batch_size=cfg.batch_size,
            device=cfg.device,
            every=cfg.every,
            masks=cfg.masks,
            progress=bar.update,
            class_names=list(datamodule.class_names) if datamodule.multilabel else None,
        )
    masks = (
        f" and {result.frames_written} masks to {video_outputs(output, frames.source, True)[1]}" if cfg.masks else ""
    )
    wrote = f"wrote {result.frames_written} frames to {result.video}{masks}"
    if result.error:
        sys.exit(f"segkit predict: {result.error}; {wrote}")
    print(f"segkit predict: {wrote} ({frames.fps / cfg.every:g} frames/s)", flush=True)
