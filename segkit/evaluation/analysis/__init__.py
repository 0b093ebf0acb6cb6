"""Where a model fails: per-image scores and the worst images, accuracy near boundaries (the DeepLabV3+ paper's
trimap and Boundary IoU), calibration of the class probabilities, and the plots that show them.

Each measurement accumulates over a split as the confusion matrix does (integer counts, or float64 sums, summed
across processes), so it is the same on one process and on several. :class:`EvalAnalysis` runs the chosen ones
beside ``segkit eval`` (:func:`segkit.evaluation.evaluate`).
"""

from .boundaries import BoundaryIoU, TrimapScores, boundary_distance, class_boundaries, void_distance
from .calibration import CalibrationError
from .eval_analysis import EvalAnalysis
from .per_image import ImageScores, PerImageScores, image_scores

__all__ = [
    "BoundaryIoU",
    "CalibrationError",
    "EvalAnalysis",
    "ImageScores",
    "PerImageScores",
    "TrimapScores",
    "boundary_distance",
    "class_boundaries",
    "image_scores",
    "void_distance",
]
