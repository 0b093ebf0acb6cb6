"""Running a trained model: class probabilities with the DeepLab papers' test-time augmentation
(:mod:`.predict`) and segmenting files of images (:mod:`.image_files`)."""

from .predict import label_maps, load_inference_model, predict_labels, predict_probs, scaled_size, sliding_logits
from .settings import InferenceSettings

__all__ = [
    "InferenceSettings",
    "label_maps",
    "load_inference_model",
    "predict_labels",
    "predict_probs",
    "scaled_size",
    "sliding_logits",
]
