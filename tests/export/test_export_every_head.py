"""Every export form for every head: the end-to-end ONNX file, the logits form as ONNX and as TorchScript, and the
INT8 end-to-end file of a softmax model, a binary sigmoid model at its tuned threshold and a multi-label model at its
tuned thresholds (the session's tiny models, conftest.HeadRun), each compared with the checkpoint."""

import numpy as np
import pytest
import torch
from helpers import EXPORT_FORMS
from PIL import Image

from segkit import Segmenter
from segkit.head import Head
from segkit.inference import predict_probs
from segkit.inference.exported import ExportedModel

# INT8 quantization costs seconds per head: those three runs go with the slow set (the softmax head's INT8 file is
# also checked in the default set, tests/export/test_deploy.py)
FORMS = [pytest.param(f, marks=pytest.mark.slow) if f.startswith("int8") else f for f in EXPORT_FORMS]


@pytest.mark.parametrize("form", FORMS)
def test_every_export_form_decides_as_the_head(head_run, form, head_export):
    """Each export form of each head: the file records the head and its thresholds, its decisions are the head's
    decision on its own probabilities, and a float file's decisions are the checkpoint's (Segmenter) but for
    pixels where float rounding tips a close call; an INT8 file's probabilities stay near the checkpoint's."""
    is_float = EXPORT_FORMS[form][1]
    exported = ExportedModel(head_export(head_run, form))
    checkpoint = Segmenter(head_run.model, batch_size=1)
    head = Head.of(checkpoint.model)
    assert exported.head == head
    for image in sorted((head_run.data / "images").rglob("*.jpg"))[:2]:
        pixels = np.asarray(Image.open(image).convert("RGB"))
        labels, probs = exported.labels([pixels])[0], exported.probs([pixels])[0]
        decided = head.decide(torch.from_numpy(probs)[None])[0].numpy()
        assert np.array_equal(labels, decided.astype(labels.dtype))
        want = _probabilities(checkpoint, pixels)
        # float32 in another summation order: ~1e-7 seen; 8-bit activations: ~2e-3 seen on these models
        assert np.abs(probs - want).max() < (1e-5 if is_float else 0.05)
        if is_float:
            assert (labels.astype(bool) == np.asarray(checkpoint(image)).astype(bool)).mean() >= 0.999


def _probabilities(segmenter: Segmenter, picture: np.ndarray) -> np.ndarray:
    """The (K, H, W) class probabilities of ``picture`` as inference computes them (one scale)."""
    x = segmenter.transform(image=picture)["image"][None]
    return predict_probs(segmenter.model, x)[0].numpy()
