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
