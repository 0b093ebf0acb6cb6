"""Shared fixtures: tiny synthetic data sets in the real on-disk layouts, written by segkit itself."""
import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory):
    """A VOC-layout directory with 12 training and 5 validation images (64-96 px)."""
    from segkit.data import make_synthetic_voc

    root = tmp_path_factory.mktemp("tiny_voc")
    make_synthetic_voc(root, num_train=12, num_val=5, size_range=(64, 96), seed=1)
    return root


@pytest.fixture(autouse=True)
def _no_inherited_wandb_service():
    """A W&B run made inside the test process leaves WANDB_SERVICE (its service's socket) in os.environ;
    subprocesses started by later tests would attach to that service instead of starting their own."""
    yield
    os.environ.pop("WANDB_SERVICE", None)
