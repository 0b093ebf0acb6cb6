"""What an exported file records about itself, and reading it back.

Every file ``segkit export`` writes carries one JSON object (ONNX ``metadata_props["segkit"]``, TorchScript
extra file ``segkit.json``): its input and output contract, the classes, palette, mean and std, the settings
baked in, the source checkpoint's SHA-256, the quantization when there is one, and with ``--verify`` what it
measured (agreement with the checkpoint, mIoU). A file without it was not written by segkit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# the file formats of the logits form, and what the end-to-end form can return
FORMATS = ("onnx", "torchscript")
OUTPUTS = ("labels", "probs", "logits")

FORMAT = "segkit DeepLabV3+"


class ModelFileError(ValueError):
    """An exported model file that cannot be used: not readable, not segkit's, or for other classes."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


DECISIONS = {
    "multiclass": "argmax over dim 1 gives the class index",
    "binary": "one logit: the foreground (class 1) where its sigmoid is above the threshold (thresholds)",
    "multilabel": "a class is present where the sigmoid of its logit is above its threshold (thresholds)",
}


def logits_contract(
    num_classes: int, *, dynamic: bool = True, in_channels: int = 3, pixel_max: int = 255, head: str = "multiclass"
) -> dict:
    """The float-in, logits-out form of a model with ``head`` (:data:`segkit.head.MODES`)."""
    n, h, w = ("batch", "height", "width") if dynamic else (1, "H", "W")
    pixels = "RGB" if in_channels == 3 and pixel_max == 255 else f"the model's {in_channels} bands"
    decision = DECISIONS[head]
    outputs = 1 if head == "binary" else num_classes
    return {
        "inputs": [
            {
                "name": "image",
                "dtype": "float32",
                "shape": [n, in_channels, h, w],
                "meaning": f"{pixels}, x = (pixel / {pixel_max} - mean) / std",
            }
        ],
        "outputs": [
            {
                "name": "logits",
                "dtype": "float32",
                "shape": [n, outputs, h, w],
                "meaning": f"class logits at the input size; {decision}",
            }
        ],
    }


def end_to_end_contract(
    num_classes: int,
    outputs: Sequence[str],
    *,
    batched: bool,
    labels_dtype: str,
    in_channels: int = 3,
    pixel_dtype: str = "uint8",
    multilabel: bool = False,
) -> dict:
    """The image-in form (:class:`~segkit.export.end_to_end.EndToEnd`)."""
    lead = ["batch"] if batched else []
    labels = (
        (
            labels_dtype,
            [*lead, num_classes, "height", "width"],
            "1 where the class's probability is above its threshold",
        )
        if multilabel
        else (labels_dtype, [*lead, "height", "width"], "class index of every pixel")
    )
    meanings = {
        "labels": labels,
        "probs": ("float32", [*lead, num_classes, "height", "width"], "class probabilities (scales/flips averaged)"),
        "logits": ("float32", [*lead, num_classes, "height", "width"], "class logits"),
    }
    pixels = "RGB pixels" if in_channels == 3 and pixel_dtype == "uint8" else f"the model's {in_channels} bands"
    return {
        "inputs": [
            {
                "name": "image",
                "dtype": pixel_dtype,
                "shape": [*lead, "height", "width", in_channels],
                "meaning": f"{pixels}, any size; normalization, padding, scales and flip are in the graph",
            }
        ],
        "outputs": [
            {"name": o, "dtype": meanings[o][0], "shape": meanings[o][1], "meaning": meanings[o][2]} for o in outputs
        ],
    }


def metadata(
    form: str,
    contract: dict,
    *,
    class_names: Sequence[str],
    palette: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    settings: dict,
    checkpoint: str | Path,
    encoder: str,
    image: dict | None = None,
    thresholds: Sequence[float] | None = None,
    head: str = "multiclass",
) -> dict:
    """The file's record. ``image``: how its input images are read (in_channels, pixel_max, bands,
    display_bands: :class:`~segkit.data.bands.ImageFormat`; 8-bit RGB without); ``head``: how its outputs are
    decided (:class:`~segkit.head.Head`); ``thresholds``: a sigmoid model's decision thresholds (one per class
    of a multi-label model, ``multilabel`` true; one for a binary model's foreground)."""
    from ..version import __version__

    image = image or {}

    return {
        "format": FORMAT,
        "form": form,
        **contract,
        "class_names": list(class_names),
        "num_classes": len(class_names),
        "palette": np.asarray(palette, np.uint8)[: len(class_names)].tolist(),
        "mean": list(mean),
        "std": list(std),
        "in_channels": int(image.get("in_channels", len(mean))),
        "pixel_max": int(image.get("pixel_max", 255)),
        "bands": image.get("bands"),
        "display_bands": list(image.get("display_bands", (0, 1, 2))),
        "multilabel": bool(image.get("multilabel", False)),
        "head": head,
        "thresholds": None if thresholds is None else [float(t) for t in thresholds],
        "settings": settings,
        "encoder": encoder,
        "checkpoint": {"file": Path(checkpoint).name, "sha256": sha256(checkpoint)},
        "quantization": None,
        "verification": None,
        "segkit_version": __version__,
    }


def read_metadata(path: str | Path) -> dict:
    """The ``segkit`` metadata of an ONNX or TorchScript file; one-line :class:`ModelFileError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    raw = _onnx_metadata(path) if is_onnx_file(path) else _torchscript_metadata(path)
    if raw is None:
        raise ModelFileError(f"{path} has no segkit metadata: give a file written by segkit export")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "class_names" not in meta:
        raise ModelFileError(f"{path}: its segkit metadata is not segkit export's: give a file written by it")
    meta.setdefault("form", "logits")  # files of segkit 0.1.0 were all of the float-in, logits-out form
    meta.setdefault("settings", {})
    return meta


def _onnx_metadata(path: Path) -> str | None:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises several kinds; all mean the same to the user
        raise ModelFileError(f"{path} is not an ONNX model ({type(e).__name__}: {str(e)[:100]})") from None
    return next((p.value for p in proto.metadata_props if p.key == "segkit"), None)


def _torchscript_metadata(path: Path) -> str | None:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = archive.namelist()
        names = [n for n in members if n.endswith("/extra/segkit.json")]
        if names:
            return archive.read(names[0]).decode()
        if not any("/code/" in n for n in members):  # torch.save's archive, not TorchScript's
            raise ModelFileError(f"{path} is a PyTorch checkpoint, not an exported model: give it as --ckpt_path")
        return None


def write_metadata(path: str | Path, meta: dict) -> None:
    """Replaces the ``segkit`` metadata of the (not yet published) file ``path`` in place."""
    path = Path(path)
    if is_onnx_file(path):
        import onnx

        proto = onnx.load(str(path))
        set_onnx_metadata(proto, meta)
        onnx.save(proto, str(path))
    else:
        import torch

        module = torch.jit.load(str(path))
        torch.jit.save(module, str(path), _extra_files={"segkit.json": json.dumps(meta)})


def set_onnx_metadata(proto, meta: dict) -> None:
    """Stores ``meta`` as the ``segkit`` entry of the model's ``metadata_props`` (replacing an earlier one)."""
    for i in reversed(range(len(proto.metadata_props))):
        if proto.metadata_props[i].key == "segkit":
            del proto.metadata_props[i]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "segkit", json.dumps(meta)


def is_onnx_file(path: Path) -> bool:
    """ONNX, as opposed to a TorchScript archive (a zip file); by content, whatever the file's suffix."""
    import zipfile

    return not zipfile.is_zipfile(path)
