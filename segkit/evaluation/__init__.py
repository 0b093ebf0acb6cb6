"""Scoring segmentation models the way the benchmarks do, for every head.

- :mod:`.loop`: :func:`evaluate` (a model on a split, one image at a time, summed across processes) and
  :func:`score_predictions` (a folder of prediction files);
- :mod:`.predictors`: what it scores, a checkpoint's model with its test-time settings or an exported file;
- :mod:`.metrics`: the counts (a confusion matrix, or per-class counts of overlapping labels) and the scores;
- :mod:`.thresholds` and :mod:`.tuning`: the thresholds of sigmoid heads, chosen on a split and written with the
  model;
- :mod:`.analysis`: where a model fails (per image, near boundaries, calibration, plots).
"""

from .loop import evaluate, save_confusion, score_predictions, scores_json
from .metrics import ConfusionMatrix, MultilabelCounts, head_counts, head_scores
from .predictors import CheckpointPredictor, ExportedPredictor
from .tuning import ThresholdTuning

__all__ = [
    "CheckpointPredictor",
    "ConfusionMatrix",
    "ExportedPredictor",
    "MultilabelCounts",
    "ThresholdTuning",
    "evaluate",
    "head_counts",
    "head_scores",
    "save_confusion",
    "score_predictions",
    "scores_json",
]
