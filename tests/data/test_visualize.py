"""segkit.data.palette and segkit.data.visualize: the VOC devkit's colours, colour masks and overlays."""

import numpy as np

from segkit.data import (
    voc_palette,
)


def test_voc_palette_matches_devkit():
    pal = voc_palette()
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[15].tolist() == [192, 128, 128]  # person
    assert pal[255].tolist() == [224, 224, 192]  # the border colour of VOC masks


def test_colorize_and_overlay():
    from segkit.data.visualize import colorize, overlay

    mask = np.array([[0, 1], [15, 255]], np.uint8)
    assert colorize(mask).tolist() == [[[0, 0, 0], [128, 0, 0]], [[192, 128, 128], [224, 224, 192]]]
    cs = colorize(np.array([[0, 10, 255]], np.uint8), "cityscapes")
    assert cs.tolist() == [[[128, 64, 128], [70, 130, 180], [0, 0, 0]]]  # road, sky, ignored
    image = np.full((2, 2, 3), 100, np.uint8)
    out = overlay(image, mask, alpha=0.5)
    assert out[0, 1].tolist() == [114, 50, 50]  # (100 + 128) / 2, (100 + 0) / 2
    assert out[1, 1].tolist() == [100, 100, 100]  # ignored pixels keep the image
