"""`segkit data check`: walk every split of a configured data set and report its contents and problems
(the command itself is in :mod:`segkit.commands.data`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch.utils.data import DataLoader, Dataset

from .bands import pixel_max
from .datamodule import SegmentationDataModule
from .pairing import PairingError
from .sampling import as_is


class _Inspect(Dataset):
    """Loads one sample strictly and returns its statistics, or the error it raised (never raises)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        try:
            image, mask = self.dataset.load(index)
        except Exception as e:  # reported, not swallowed: check() lists every one and exits non-zero
            return {"error": f"{type(e).__name__}: {e}"}
        warnings = self.dataset.mask_warnings(index) if hasattr(self.dataset, "mask_warnings") else []
        missing = self.dataset.nodata_pixels(index, image) if hasattr(self.dataset, "nodata_pixels") else None
        return {
            "size": image.shape[:2],
            "hist": self.dataset.mask_histogram(mask),
            "warnings": warnings,
            "bands": BandStatistics.of(image, missing),
        }


class BandStatistics:
    """Per-band pixel count, sum, sum of squares (float64), minimum and maximum, added image by image: the
    ``data.mean`` and ``data.std`` a data set needs, in units of its pixel type's maximum."""

    def __init__(self, sums: np.ndarray, squares: np.ndarray, low: np.ndarray, high: np.ndarray, count: int, top: int):
        self.sums, self.squares, self.low, self.high, self.count, self.top = sums, squares, low, high, count, top

    @classmethod
    def of(cls, image: np.ndarray, missing: np.ndarray | None = None) -> BandStatistics | None:
        """The statistics of ``image``'s pixels but its ``missing`` (nodata) ones; None when none is left."""
        pixels = image.reshape(-1, image.shape[-1] if image.ndim == 3 else 1)
        if missing is not None:
            pixels = pixels[~missing.reshape(-1)]
        if not len(pixels):
            return None
        values = pixels.astype(np.float64)
        return cls(
            values.sum(0),
            (values * values).sum(0),
            pixels.min(0).astype(np.int64),
            pixels.max(0).astype(np.int64),
            len(pixels),
            pixel_max(image.dtype),
        )

    def __add__(self, other: BandStatistics | None) -> BandStatistics:
        if other is None:
            return self
        if len(other.sums) != len(self.sums) or other.top != self.top:
            raise ValueError("images of different bands or pixel types")  # the data set's own checks name the file
        return BandStatistics(
            self.sums + other.sums,
            self.squares + other.squares,
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
            self.count + other.count,
            self.top,
        )

    __radd__ = __add__

    @property
    def mean(self) -> np.ndarray:
        """Per band, in units of the pixel type's maximum (values / 255 or / 65535)."""
        return self.sums / self.count / self.top

    @property
    def std(self) -> np.ndarray:
        variance = self.squares / self.count - (self.sums / self.count) ** 2
        return np.sqrt(np.maximum(variance, 0)) / self.top

    def report(self) -> str:
        """The lines to paste into a config's data section, and each band's value range."""
        bits = 16 if self.top == 65535 else 8
        ranges = ", ".join(f"{b}: {lo}-{hi}" for b, (lo, hi) in enumerate(zip(self.low, self.high)))
        return (
            f"per-band statistics of the training images ({len(self.sums)} band(s), {bits}-bit; values / "
            f"{self.top}), for the config's data section:\n"
            f"  mean: [{', '.join(f'{m:.4f}' for m in self.mean)}]\n"
            f"  std: [{', '.join(f'{v:.4f}' for v in self.std)}]\n"
            f"value range per band (of 0-{self.top}): {ranges}"
        )


def check_split(dataset, num_workers: int = 0) -> dict:
    """Image count, size range, per-class pixel histogram (train ids, 255 last) and problems of one split."""
    sizes, hist, problems, warnings, bands = [], np.zeros(256, np.int64), [], [], None
    loader = DataLoader(_Inspect(dataset), batch_size=None, num_workers=num_workers, collate_fn=as_is)
    for item in loader:
        if "error" in item:
            problems.append(item["error"])
        else:
            sizes.append(tuple(item["size"]))
            hist += item["hist"]
            warnings += item["warnings"]
            try:
                bands = bands if item["bands"] is None else item["bands"] + bands
            except ValueError as e:  # read as the data set reads them (RGB), images cannot differ; reported
                problems.append(f"{e}")
    return {
        "images": len(dataset),
        "sizes": sizes,
        "hist": hist,
        "problems": problems,
        "warnings": warnings,
        "bands": bands,
    }


def format_report(split: str, result: dict, class_names: tuple[str, ...], multilabel: bool = False) -> str:
    """The split's lines; overlapping (multilabel) classes: each class's share of all pixels (they may add up
    to more than 100%), and as ignored the pixels not labelled for some class."""
    lines = [f"[{split}] {result['images']} images"]
    if result["sizes"]:
        hs, ws = zip(*result["sizes"])
        lines[0] += f", height {min(hs)}-{max(hs)}, width {min(ws)}-{max(ws)}"
    total = sum(h * w for h, w in result["sizes"]) if multilabel else int(result["hist"].sum())
    if total:
        lines.append(f"  {'class':<22}{'pixels':>14}{'share':>9}")
        for i, name in enumerate(class_names):
            lines.append(f"  {name:<22}{int(result['hist'][i]):>14}{100 * result['hist'][i] / total:8.2f}%")
        lines.append(f"  {'(ignored, 255)':<22}{int(result['hist'][255]):>14}{100 * result['hist'][255] / total:8.2f}%")
    for problem in result["problems"]:
        lines.append(f"  PROBLEM {problem}")
    for warning in result.get("warnings", []):
        lines.append(f"  WARNING {warning}")
    return "\n".join(lines)


def check(datamodule: SegmentationDataModule, class_weights: Callable[[np.ndarray], np.ndarray] | None = None) -> int:
    """Prints the report of every split, and the class weights ``class_weights`` computes from the training
    histogram; returns the number of problems found (warnings do not count)."""
    problems, warnings = 0, 0
    try:
        datamodule.prepare_data()
    except PairingError:
        pass  # reported file by file below
    except Exception as e:
        print(f"PROBLEM {type(e).__name__}: {e}")
        return 1
    train_hist, train_bands = np.zeros(256, np.int64), None
    for split in [*datamodule.train_splits(), "val"]:
        paired = []
        try:
            dataset = datamodule.split_dataset(split)
        except PairingError as e:
            paired, dataset = e.problems, getattr(e, "dataset", None)
        except Exception as e:
            print(f"[{split}]\n  PROBLEM {type(e).__name__}: {e}")
            problems += 1
            continue
        result = (
            check_split(dataset, datamodule.num_workers)
            if dataset is not None
            else {"images": 0, "sizes": [], "hist": np.zeros(256, np.int64), "problems": [], "warnings": []}
        )
        result["problems"] = paired + result["problems"]
        print(format_report(split, result, datamodule.class_names, datamodule.multilabel), flush=True)
        problems += len(result["problems"])
        warnings += len(result["warnings"])
        if split != "val":
            train_hist += result["hist"]
            if result.get("bands") is not None:
                train_bands = result["bands"] + train_bands
    counts = train_hist[: datamodule.num_classes]
    if class_weights is not None and counts.sum() and not datamodule.multilabel:
        rows = "\n".join(f"  {n:<22}{w:>9.3f}" for n, w in zip(datamodule.class_names, class_weights(counts)))
        print(f"\nclass weights that model.class_weights: auto would use (from the training histogram)\n{rows}")
    if train_bands is not None:
        print(f"\n{train_bands.report()}")
    summary = f"{problems} problem(s) found" if problems else "no problems found"
    print(f"\n{summary}" + (f", {warnings} warning(s)" if warnings else ""))
    return problems
