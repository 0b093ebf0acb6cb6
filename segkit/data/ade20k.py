"""ADE20K SceneParsing (the MIT Scene Parsing Benchmark's ``ADEChallengeData2016``) in its own layout: a folder
data set (:class:`~segkit.data.folder.FolderDataModule`) with the challenge's folders and 150 classes.

Layout (``root`` holds ``ADEChallengeData2016``, or is that folder)::

    images/{training,validation}/ADE_*.jpg
    annotations/{training,validation}/ADE_*.png     raw values 0 (unlabelled) and 1..150
"""

from __future__ import annotations

from pathlib import Path

from .folder import FolderDataModule

# ADE20K SceneParsing's 150 classes, raw values 1-150 (0: unlabelled), by the first name of each in the
# challenge's objectInfo150 table
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet", "sidewalk",
    "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water", "painting", "sofa",
    "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand",
    "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat",
    "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight",
    "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator",
    "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)


class ADE20KDataModule(FolderDataModule):
    """ADE20K SceneParsing (the MIT Scene Parsing Benchmark's ``ADEChallengeData2016``): 20,210 training and
    2,000 validation images, 150 classes; raw 0 (unlabelled) is ignored and k becomes class k-1, as the official
    DeepLab's 151 logits with ignore label 0 do. Other arguments as :class:`SegmentationDataModule`.

    Args:
        root: the folder holding ``ADEChallengeData2016`` (or that folder itself), with
            ``images/{training,validation}/*.jpg`` and ``annotations/{training,validation}/*.png``.
        batch_size: the global training batch.
        crop_size: square training crop (513 in the official recipe).
    """

    def __init__(self, root: str = "data/ade20k", batch_size: int = 16, crop_size: int = 513, **kwargs) -> None:
        inner = Path(root) / "ADEChallengeData2016"
        super().__init__(root=str(inner if inner.is_dir() else root), classes=list(ADE20K_CLASSES),
                         train_images="images/training", train_masks="annotations/training",
                         val_images="images/validation", val_masks="annotations/validation", mask_mode="index",
                         reduce_zero_label=True, batch_size=batch_size, crop_size=crop_size, **kwargs)
