"""segkit.data.predictions: prediction files named, encoded and read back as each data set declares."""

import numpy as np
import pytest

from segkit.data import (
    CityscapesPredictionFiles,
    PredictionFiles,
    read_label_png,
)


def test_prediction_files_encode_name_and_read_back(tmp_path):
    labels = np.array([[0, 1, 13], [18, 255, 2]], np.uint8)
    voc, cs = PredictionFiles(), CityscapesPredictionFiles()
    tmp_path = tmp_path / "voc"
    tmp_path.mkdir()
    assert voc.write(tmp_path, "2007_000033", labels).name == "2007_000033.png"
    assert np.array_equal(voc.read(tmp_path / "2007_000033.png", 21), labels)
    (tmp_path.parent / "cs").mkdir()
    path = cs.write(tmp_path.parent / "cs", "aachen_000000_000019", labels)
    assert path.name == "aachen_000000_000019_labelIds.png"
    # label ids as the official server takes them (road 7, sidewalk 8, car 26, bicycle 33; void -> 0)
    assert read_label_png(path).tolist() == [[7, 8, 26], [33, 0, 11]]
    assert np.array_equal(cs.read(path, 19), labels)
    assert cs.key(tmp_path / "aachen_000000_000019_leftImg8bit_pred.png") == "aachen_000000_000019"
    bad = labels.copy()
    bad[0, 0] = 21
    with pytest.raises(ValueError, match=r"2007_000033.png holds values \[21\]"):
        voc.decode(bad, tmp_path / "2007_000033.png", 21)
    assert voc.match(["2007_000033"], tmp_path) == [tmp_path / "2007_000033.png"]
    with pytest.raises(ValueError, match="1 images have no prediction"):
        voc.match(["2007_000033", "2007_000042"], tmp_path)
