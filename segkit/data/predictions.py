"""Prediction files as a data set's benchmark takes them: their names, their encoding, and reading them back.

A DataModule declares its :class:`PredictionFiles` (``datamodule.prediction_files``); ``segkit eval
--save_predictions`` writes them and ``segkit eval --predictions`` scores them, so a new data set needs no
edits in the commands. The default is ``<name>.png`` holding class indices (Pascal VOC's format);
Cityscapes writes label ids instead (:class:`segkit.data.cityscapes.CityscapesPredictionFiles`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import IGNORE_INDEX, check_values, read_label_png, write_label_png


class PredictionFiles:
    """``<name>.png``: class indices 0..K-1 (255: no prediction) in a grayscale PNG; read back from grayscale
    or palette PNGs."""

    def file_name(self, name: str) -> str:
        return f"{name}.png"

    def encode(self, labels: np.ndarray) -> np.ndarray:
        """Class indices (H, W) -> the values written to the file."""
        return labels

    def decode(self, raw: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
        """The values of a file -> class indices (255 = void); raises naming the file for values it cannot hold."""
        check_values(raw, np.r_[np.arange(num_classes), IGNORE_INDEX], path)
        return raw

    def key(self, path: Path) -> str:
        """The name of the sample a prediction file belongs to (``path`` relative to the prediction folder: a
        sample of a folder data set may be named ``sub/folder/name``)."""
        return path.with_suffix("").as_posix()

    def write(self, folder: Path, name: str, labels: np.ndarray) -> Path:
        path = Path(folder) / self.file_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_label_png(path, self.encode(labels))
        return path

    def read(self, path: Path, num_classes: int) -> np.ndarray:
        return self.decode(read_label_png(path), Path(path), num_classes)

    def match(self, names: list[str], folder: Path) -> list[Path]:
        """The prediction file of every sample name, in that order; raises naming missing, extra or doubled
        files."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"prediction folder not found: {folder}")
        found: dict[str, list[Path]] = {}
        for path in sorted(folder.rglob("*.png")):
            found.setdefault(self.key(path.relative_to(folder)), []).append(path)
        known = set(names)
        missing = [n for n in names if n not in found]
        extra = sorted(str(p) for key, paths in found.items() if key not in known for p in paths)
        doubled = sorted(str(p) for paths in found.values() if len(paths) > 1 for p in paths)
        problems = []
        if missing:
            problems.append(f"{len(missing)} images have no prediction in {folder}: {missing[:10]}")
        if extra:
            problems.append(f"{len(extra)} prediction files match no image of the split: {extra[:10]}")
        if doubled:
            problems.append(f"several prediction files for one image: {doubled[:10]}")
        if problems:
            raise ValueError("; ".join(problems))
        return [found[n][0] for n in names]
