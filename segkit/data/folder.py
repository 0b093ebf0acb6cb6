"""A data set of your own from a config alone (:class:`FolderDataModule`).

Images and masks come from folders (paired by relative path) or list files (:mod:`segkit.data.pairing`); masks
hold class indices, colours or a 0/255 foreground (:mod:`segkit.data.masks`). Images are RGB, or any number of
bands at 8 or 16 bits (``in_channels``, ``bands``; :mod:`segkit.data.bands`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io.geotiff import check_same_grid
from .bands import TIFF_SUFFIXES, Bands, read_header
from .base import IGNORE_INDEX, Sample, SegmentationDataset
from .datamodule import SegmentationDataModule
from .masks import MASK_MODES, MaskDecoder
from .multilabel import MultilabelMasks, pair_class_folders
from .nodata import Nodata
from .pairing import PairingError, pair_folders, read_pair_list
from .palette import voc_palette


class FolderSegmentation(SegmentationDataset):
    """One split of a folder data set: :class:`SegmentationDataset` reading masks with a :class:`MaskDecoder`."""

    def __init__(
        self,
        samples: list[Sample],
        num_classes: int,
        decoder: MaskDecoder,
        transform: Callable[..., dict] | None = None,
        bands: Bands | None = None,
        nodata: Nodata | None = None,
    ) -> None:
        super().__init__(samples, num_classes, transform)
        self.decoder = decoder
        self.bands = bands
        self.nodata = nodata
        self._same_grid: set[int] = set()  # the samples whose image and mask were found on one grid

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image and its mask (checked to lie on the image's grid when both are GeoTIFFs), the image's nodata
        pixels unlabelled (255) in the mask."""
        image, mask = super().load(index)
        sample = self.samples[index]
        tiffs = sample.image.suffix.lower() in TIFF_SUFFIXES and sample.mask.suffix.lower() in TIFF_SUFFIXES
        if tiffs and index not in self._same_grid:  # a pair's grids do not change: read its tags once, not every epoch
            check_same_grid(sample.image, sample.mask)
            self._same_grid.add(index)
        missing = self.nodata_pixels(index, image)
        if missing is not None and missing.any():
            mask = mask.copy()
            mask[missing] = IGNORE_INDEX  # every class of a multi-label mask
        return image, mask

    def nodata_pixels(self, index: int, image: np.ndarray) -> np.ndarray | None:
        """(H, W) booleans: image ``index``'s nodata pixels (:mod:`segkit.data.nodata`), or None."""
        return None if self.nodata is None else self.nodata.pixels(image, self.samples[index].image)

    def read_image(self, path: Path) -> np.ndarray:
        return super().read_image(path) if self.bands is None else self.bands(path)

    def read_mask(self, path: Path) -> np.ndarray:
        return self.decoder.read(path)

    def decode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return self.decoder.decode(raw, path)

    def mask_warnings(self, index: int) -> list[str]:
        """What ``segkit data check`` reports about a mask without failing (see :meth:`MaskDecoder.warnings`)."""
        path = self.samples[index].mask
        return self.decoder.warnings(self.read_mask(path), path)


class FolderDataModule(SegmentationDataModule):
    """Your own data set from a config alone; other arguments as :class:`SegmentationDataModule`.

    Args:
        root: the data set's folder; the folders and list files below are relative to it.
        classes: the class names, in class-index order.
        train_images: folder of the training images (searched recursively; jpg, png, bmp, tif)...
        train_masks: ... and of their masks (png, bmp, tif), paired by relative path without extension.
        val_images: folder of the validation images...
        val_masks: ... and of their masks.
        train_list: instead of the folders, a file of ``image_path mask_path`` lines, relative to ``root``.
        val_list: the same for the validation set.
        palette: class colours ``[[r, g, b], ...]``, one per class: how ``rgb`` masks are read, and the colours
            of predicted masks and overlays (default: the Pascal VOC colour map).
        mask_mode: ``index`` (class indices, 8 or 16 bit; palette PNGs read as indices), ``rgb`` (colours, read
            through ``palette``) or ``binary`` (2 classes: 0 -> 0, above half the maximum value -> 1; 0/255 masks).
            ``multilabel``: overlapping classes, one folder of binary masks per class under ``train_masks`` /
            ``val_masks`` (``masks/<class>/<relative path>.png``; :mod:`segkit.data.multilabel`).
        label_map: ``index`` masks: ``{raw value: class index}`` (255: ignored); raw values not named are ignored.
        reduce_zero_label: ``index`` masks: raw 0 is ignored and k becomes class k-1 (the ADE20K convention).
        ignore_index: ``index`` masks: the raw value of unlabelled pixels (default 255); ``multilabel`` masks: the
            value of pixels not labelled for a class (default none).
        ignore_colors: ``rgb`` masks: colours of unlabelled pixels.
        mask_suffix: the end of a mask's name that its image's name lacks (``a.jpg`` and ``a_mask.png``: ``_mask``).
        val_fraction: without a validation set, the fraction of the training pairs held out for it (at least
            one), chosen by ``split_seed``; the CLI writes their names to the run's folder (``val_split.txt``).
        split_seed: the seed of that choice.
        in_channels: the bands of every image (3: RGB, read as :func:`~segkit.data.base.read_image` reads
            colour images; other counts: TIFF, PNG or JPEG files of exactly that many bands, 8 or 16 bits).
        bands: instead, the bands to read, by index (0-based, in this order), e.g. ``[2, 1, 0, 3]`` for a
            BGR + near-infrared file read as RGB + NIR; ``[0, 1, 2]`` reads 16-bit RGB files at full depth. Put
            the red, green and blue bands first so that RGB-pretrained weights see them (docs/data.md).
        display_bands: the three bands shown as red, green and blue in overlays and W&B images (default the
            first three; the first band as grey with fewer than three).
        nodata: the pixel value of nodata pixels (a satellite scene's border), ``file`` for each image file's own
            (a GeoTIFF's GDAL_NODATA tag; the default), or null: such pixels are unlabelled in training and
            scoring, and left out of ``segkit data check``'s statistics (:mod:`segkit.data.nodata`).
        nodata_bands: ``all`` (a pixel is nodata when every band read holds the value) or ``any``.
        mean: normalization mean per band, in units of the pixel type's maximum (values / 255 or / 65535);
            ``segkit data check`` prints them. Default 0.5 per band for 8-bit images; 16-bit images need them.
        std: normalization std per band, in the same units.
        batch_size: the global training batch.
        crop_size: square training crop.
    """

    def __init__(
        self,
        root: str,
        classes: list[str],
        train_images: str | None = None,
        train_masks: str | None = None,
        val_images: str | None = None,
        val_masks: str | None = None,
        train_list: str | None = None,
        val_list: str | None = None,
        palette: list[list[int]] | None = None,
        mask_mode: str = "index",
        label_map: dict[int, int] | None = None,
        reduce_zero_label: bool = False,
        ignore_index: int | None = None,
        ignore_colors: list[list[int]] | None = None,
        mask_suffix: str = "",
        val_fraction: float = 0.1,
        split_seed: int = 0,
        in_channels: int | None = None,
        bands: list[int] | None = None,
        display_bands: list[int] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        nodata: float | str | None = "file",
        nodata_bands: str = "all",
        batch_size: int = 16,
        crop_size: int = 513,
        **kwargs,
    ) -> None:
        n = _checked_band_count(in_channels, bands)
        if (mean is None) != (std is None):
            raise ValueError("data.mean and data.std go together: give both (segkit data check prints them)")
        self.statistics_given = mean is not None
        super().__init__(
            root=root,
            batch_size=batch_size,
            crop_size=crop_size,
            mean=tuple(mean) if mean is not None else (0.5,) * n,
            std=tuple(std) if std is not None else (0.5,) * n,
            **kwargs,
        )
        if self.in_channels != n:
            raise ValueError(f"data.mean and data.std give {self.in_channels} values for {n} bands: one per band")
        self.bands = list(bands) if bands is not None else None
        self._band_reader = Bands(n, self.bands) if n != 3 or bands is not None else None
        self.display_bands = _checked_display_bands(display_bands, n)
        self.class_names = _checked_classes(classes)
        self.nodata = None if nodata is None else Nodata(nodata, nodata_bands)
        k = len(self.class_names)
        self.sources = {
            "train": _source("train", train_images, train_masks, train_list),
            "val": _source("val", val_images, val_masks, val_list, optional=True),
        }
        if self.sources["val"] is None and not 0 < val_fraction < 1:
            raise ValueError(
                "no validation set: give data.val_images and data.val_masks, or data.val_list, or a "
                f"data.val_fraction between 0 and 1 (got {val_fraction})"
            )
        colours = _checked_palette(palette, k, mask_mode)
        self.palette = voc_palette()
        if colours is not None:
            self.palette[:k] = colours
        self.multilabel = mask_mode == "multilabel"
        if ignore_index is None and not self.multilabel:
            ignore_index = IGNORE_INDEX
        _check_mask_options(mask_mode, k, label_map, reduce_zero_label, ignore_index)
        if self.multilabel and (train_list or val_list):
            raise ValueError("data.mask_mode: multilabel reads class folders: give data.train_masks, not list files")
        self.ignore_index = ignore_index
        self.decoder = None
        if not self.multilabel:
            self.decoder = MaskDecoder(mask_mode, k, colours, label_map, reduce_zero_label, ignore_index, ignore_colors)
        self.mask_suffix = mask_suffix
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.reduce_zero_label = reduce_zero_label  # raw 0 ignored, k -> class k-1 (segkit convert reads it)

    def prepare_data(self) -> None:
        """Pairs every split (errors name each unpaired file) before anything is trained."""
        if not Path(self.root).is_dir():
            raise FileNotFoundError(f"data.root={self.root} is not a folder")
        for split in ("train", "val"):
            self.split_samples(split)
        self._check_bands()
        if self.decoder is not None and self.decoder.plain:
            self._check_not_binary()

    def _check_bands(self) -> None:
        """Multi-band images: every image's header has the bands asked for and the pixel type of the others
        (one line naming the first that does not), and 16-bit images come with their statistics."""
        reader = self._band_reader
        if reader is None or reader.dtype is not None:
            return
        for split in ("train", "val"):
            for sample in self.split_samples(split):
                reader.check_header(sample.image, read_header(sample.image))
        if reader.dtype == np.uint16 and not self.statistics_given:
            raise ValueError(
                f"the images are 16-bit ({reader.first}): give data.mean and data.std per band, in units of "
                "65535 (segkit data check --config ... prints them)"
            )

    def _check_not_binary(self, n: int = 16) -> None:
        """0/255 foreground masks read as class indices have every foreground pixel ignored (255), and train a
        model that predicts background everywhere, silently: refused when none of ``n`` training masks spread
        over the set holds a class other than 0 while they do hold ignored pixels."""
        samples = self.split_samples("train")
        dataset = FolderSegmentation(samples[:: max(1, len(samples) // n)][:n], self.num_classes, self.decoder)
        hist = sum(np.bincount(dataset.load_mask(i).ravel(), minlength=256) for i in range(len(dataset)))
        if hist[1 : self.num_classes].sum() == 0 and hist[IGNORE_INDEX] > 0:
            raise ValueError(
                f"{len(dataset)} training masks (e.g. {samples[0].mask}) hold only class 0 and the "
                f"ignored value {self.decoder.ignore_index}: 0/255 foreground masks? set "
                "data.mask_mode: binary (or data.ignore_index to the value that means unlabelled)"
            )

    @property
    def pixel_max(self) -> int:
        """65535 for 16-bit bands, else 255 (read from the images' headers, :meth:`_check_bands`)."""
        if self._band_reader is None:
            return 255
        self._check_bands()
        return 65535 if self._band_reader.dtype == np.uint16 else 255

    def make_split(self, split: str, transform=None) -> FolderSegmentation:
        try:
            samples = self.split_samples(split)
        except PairingError as e:  # segkit data check goes on with the pairs that were found
            decoder = self._decoder(split)
            e.dataset = FolderSegmentation(
                e.samples, self.num_classes, decoder, transform, self._band_reader, self.nodata
            )
            raise
        decoder = self._decoder(split)
        return FolderSegmentation(samples, self.num_classes, decoder, transform, self._band_reader, self.nodata)

    def _decoder(self, split: str):
        """The mask reader of ``split``: one for every split, or for multi-label masks its class folders."""
        if not self.multilabel:
            return self.decoder
        source = self.sources[split] or self.sources["train"]
        return MultilabelMasks(Path(self.root) / source[1], self.class_names, self.ignore_index)

    def split_samples(self, split: str) -> list[Sample]:
        """The pairs of ``split`` ("train" or "val"); without a validation set, "val" is the held-out part."""
        if split not in self.sources:
            raise ValueError(f"a folder data set has the splits train and val, not {split!r}")
        if self.sources["val"] is not None:
            return self._pairs(split)
        held = set(self.held_out_names() or ())
        return [s for s in self._pairs("train") if (s.name in held) == (split == "val")]

    def held_out_names(self) -> list[str] | None:
        """The training pairs held out for validation (``val_fraction``), by name; None with a validation set."""
        if self.sources["val"] is not None:
            return None
        samples = self._pairs("train")
        n = max(1, round(len(samples) * self.val_fraction))
        if n >= len(samples):
            raise ValueError(
                f"data.val_fraction={self.val_fraction} of {len(samples)} training pairs leaves none to train on"
            )
        chosen = np.random.default_rng(self.split_seed).choice(len(samples), n, replace=False)
        return [samples[i].name for i in sorted(chosen)]

    def _pairs(self, split: str) -> list[Sample]:
        root, (images, masks, listing) = Path(self.root), self.sources[split]
        if listing is not None:
            samples, problems = read_pair_list(root, root / listing)
            where = str(root / listing)
        else:
            samples, problems = (
                pair_class_folders(root / images, root / masks, self.class_names, self.mask_suffix)
                if self.multilabel
                else pair_folders(root / images, root / masks, self.mask_suffix)
            )
            where = f"{root / images} and {root / masks}"
        if problems:
            more = f"; and {len(problems) - 5} more (segkit data check lists them all)" if len(problems) > 5 else ""
            raise PairingError(
                f"{len(problems)} problem(s) pairing the {split} files: {'; '.join(problems[:5])}{more}",
                problems,
                samples,
            )
        if not samples:
            raise ValueError(f"the {split} split is empty: no image and mask pair in {where}")
        return samples


def _source(split: str, images: str | None, masks: str | None, listing: str | None, optional: bool = False):
    """(images, masks, list) of a split, checked: two folders or one list file."""
    if listing is not None and (images or masks):
        raise ValueError(f"give data.{split}_list or data.{split}_images with data.{split}_masks, not both")
    if listing is None and (images is None) != (masks is None):
        raise ValueError(f"data.{split}_images and data.{split}_masks go together: give both")
    if listing is None and images is None:
        if optional:
            return None
        raise ValueError(f"no {split} set: give data.{split}_images and data.{split}_masks, or data.{split}_list")
    return images, masks, listing


def _checked_band_count(in_channels: int | None, bands: list[int] | None) -> int:
    if bands is not None:
        if not bands or min(bands) < 0 or len(set(bands)) != len(bands):
            raise ValueError(f"data.bands lists band indices (0-based, each once), got {bands}")
        if in_channels is not None and in_channels != len(bands):
            raise ValueError(f"data.in_channels={in_channels} but data.bands lists {len(bands)} bands: give one")
        return len(bands)
    if in_channels is not None and in_channels < 1:
        raise ValueError(f"data.in_channels must be >= 1, got {in_channels}")
    return in_channels or 3


def _checked_display_bands(display_bands: list[int] | None, n: int) -> tuple[int, int, int]:
    if display_bands is None:
        return (0, 1, 2) if n >= 3 else (0, 0, 0)
    if len(display_bands) != 3 or not all(0 <= b < n for b in display_bands):
        raise ValueError(f"data.display_bands names 3 of the {n} input bands (0-{n - 1}), got {display_bands}")
    return tuple(display_bands)


def _checked_classes(classes) -> tuple[str, ...]:
    names = tuple(str(c) for c in classes or ())
    if not names:
        raise ValueError("data.classes is empty: list the class names in class-index order")
    if len(names) > 255:
        raise ValueError(f"data.classes has {len(names)} names; segkit's masks hold at most 255 classes (255: ignored)")
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"data.classes names {doubled} more than once")
    return names


def _checked_palette(palette, k: int, mask_mode: str) -> np.ndarray | None:
    if palette is None:
        if mask_mode == "rgb":
            raise ValueError("data.mask_mode: rgb reads masks through data.palette: give one colour per class")
        return None
    colours = np.asarray(palette)
    if colours.ndim != 2 or colours.shape != (k, 3) or colours.min() < 0 or colours.max() > 255:
        raise ValueError(f"data.palette must hold one [r, g, b] (0-255) per class: {k} colours, got {palette}")
    if len({tuple(c) for c in colours.tolist()}) < k and mask_mode == "rgb":
        raise ValueError("data.palette gives one colour to two classes: rgb masks could not tell them apart")
    return colours.astype(np.uint8)


def _check_mask_options(mode: str, k: int, label_map, reduce_zero_label: bool, ignore_index: int) -> None:
    if mode not in MASK_MODES:
        raise ValueError(f"data.mask_mode must be one of {', '.join(MASK_MODES)}, got {mode!r}")
    if mode == "binary" and k != 2:
        raise ValueError(f"data.mask_mode: binary has 2 classes (background, foreground); data.classes has {k}")
    if mode == "multilabel":
        if label_map or reduce_zero_label:
            raise ValueError("data.label_map and data.reduce_zero_label apply to index masks (data.mask_mode: index)")
        if ignore_index is not None and not 2 <= ignore_index <= 65535:
            raise ValueError(f"data.ignore_index of multilabel masks is a value other than 0 and 1, got {ignore_index}")
        return
    if mode != "index" and (label_map or reduce_zero_label):
        raise ValueError("data.label_map and data.reduce_zero_label apply to index masks (data.mask_mode: index)")
    if label_map and reduce_zero_label:
        raise ValueError("give data.label_map or data.reduce_zero_label, not both (a label_map says it all)")
    for raw, cls in (label_map or {}).items():
        if not 0 <= int(raw) <= 65535 or not (0 <= int(cls) < k or int(cls) == IGNORE_INDEX):
            raise ValueError(f"data.label_map {raw}: {cls}: raw values are 0-65535, classes 0-{k - 1} or 255 (ignored)")
    if not 0 <= ignore_index <= 65535:
        raise ValueError(f"data.ignore_index must be a mask value (0-65535), got {ignore_index}")
    if (
        mode == "index"
        and not label_map
        and ignore_index < k + int(reduce_zero_label)
        and not (reduce_zero_label and ignore_index == 0)
    ):
        raise ValueError(f"data.ignore_index={ignore_index} is also a class value: choose a value above the classes")
