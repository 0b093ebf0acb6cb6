"""segkit.io.tf_bundle: TensorFlow checkpoints read without TensorFlow, against checkpoints that TensorFlow
itself writes (in a subprocess: the official DeepLab checkpoints are TF1 Saver checkpoints)."""

import numpy as np
import pytest
from helpers import python

from segkit.io.tf_bundle import CheckpointError, TFCheckpoint, _block, _varint

WRITER = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

root = sys.argv[1]
rng = np.random.default_rng(0)
# names and dtypes as in the official DeepLab checkpoints, plus float64/int32/uint8/float16 tensors, scalars
# and enough long names that the index spans several table blocks
one = {
    "xception_65/entry_flow/conv1_1/weights": rng.standard_normal((3, 3, 3, 32)).astype(np.float32),
    "xception_65/entry_flow/conv1_1/BatchNorm/moving_variance": rng.random(32).astype(np.float32),
    "xception_65/middle_flow/block1/unit_1/xception_module/separable_conv1_depthwise/depthwise_weights":
        rng.standard_normal((3, 3, 728, 1)).astype(np.float32),
    "global_step": np.array(30000, np.int64),
    "f64": np.array([1.5, -2.25]), "i32": np.arange(7, dtype=np.int32), "u8": np.arange(5, dtype=np.uint8),
    "f16": rng.standard_normal((2, 3)).astype(np.float16),
}
for i in range(3200):  # random leading characters: sorted, neighbouring keys share almost no prefix
    one[f"{rng.integers(16**8):08x}/decoder/decoder_conv{i % 2}_pointwise/BatchNorm/moving_mean/Momentum/{i}"] = \
        rng.standard_normal(i % 4 + 1).astype(np.float32)
two = {f"shard{i % 2}/w{i}": rng.standard_normal((i + 1, 3)).astype(np.float32) for i in range(6)}


def save(prefix, values):  # the op tf.compat.v1.train.Saver runs
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(values), shape_and_slices=[""] * len(values),
                      tensors=[tf.constant(v) for v in values.values()])


save(f"{root}/one/model.ckpt", one)
# a sharded Saver: one SaveV2 per device into temporary prefixes, then MergeV2Checkpoints
parts = [f"{root}/two/model.ckpt_temp/part-{i:05d}-of-00002" for i in range(2)]
for i, part in enumerate(parts):
    save(part, {k: v for k, v in two.items() if k.startswith(f"shard{i}")})
tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=parts, destination_prefix=f"{root}/two/model.ckpt")
for name, values in (("one", one), ("two", two)):
    np.savez(f"{root}/{name}.npz", **{k.replace("/", "|"): v for k, v in values.items()})
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf_checkpoints")
    python("-c", WRITER, root, cwd=root, check=True)
    return root


def _expected(path):
    with np.load(path) as f:
        return {k.replace("|", "/"): f[k] for k in f.files}


def test_reads_every_variable_tensorflow_wrote(written):
    want = _expected(written / "one.npz")
    ckpt = TFCheckpoint(written / "one" / "model.ckpt")
    assert ckpt.num_shards == 1 and sorted(ckpt.names) == sorted(want)
    for name, value in want.items():
        assert ckpt.shape(name) == value.shape and ckpt.dtype(name) == value.dtype, name
        got = ckpt.read(name)
        assert got.dtype == value.dtype and np.array_equal(got, value), name
    assert ckpt.read("global_step").item() == 30000
    # the index spanned several blocks of its table (the reader walked the index block's handles)
    data = (written / "one" / "model.ckpt.index").read_bytes()
    footer = data[-48:]
    offset, pos = _varint(footer, _varint(footer, _varint(footer, 0)[1])[1])
    assert len(_block(data, offset, _varint(footer, pos)[0], "index")) >= 2
    # the prefix may also be given as the index or a data file
    assert TFCheckpoint(written / "one" / "model.ckpt.index").names == ckpt.names
    assert TFCheckpoint(written / "one" / "model.ckpt.data-00000-of-00001").names == ckpt.names


def test_reads_a_checkpoint_in_two_shards(written):
    want = _expected(written / "two.npz")
    ckpt = TFCheckpoint(written / "two" / "model.ckpt")
    assert ckpt.num_shards == 2 and {e.shard for e in ckpt.entries.values()} == {0, 1}
    assert {name: ckpt.read(name).tolist() for name in ckpt.names} == {k: v.tolist() for k, v in want.items()}


def test_bad_checkpoints_name_the_file(written, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not found: .*missing\.ckpt\.index .*give the prefix"):
        TFCheckpoint(tmp_path / "missing.ckpt")
    copy = tmp_path / "two"
    copy.mkdir()
    for f in (written / "two").iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "model.ckpt.data-00001-of-00002").unlink()
    with pytest.raises(FileNotFoundError, match=r"data file\(s\) missing: .*model\.ckpt\.data-00001-of-00002"):
        TFCheckpoint(copy / "model.ckpt")
    (copy / "model.ckpt.data-00001-of-00002").write_bytes(b"")  # truncated to nothing
    ckpt = TFCheckpoint(copy / "model.ckpt")
    name = next(n for n, e in ckpt.entries.items() if e.shard == 1)
    with pytest.raises(CheckpointError, match=rf"data-00001-of-00002 ends before variable {name}"):
        ckpt.read(name)
    (copy / "model.ckpt.index").write_bytes(b"not a table" * 10)
    with pytest.raises(CheckpointError, match=r"model\.ckpt\.index is not a TensorFlow checkpoint index"):
        TFCheckpoint(copy / "model.ckpt")
    with pytest.raises(KeyError, match="has no variable nope"):
        TFCheckpoint(written / "two" / "model.ckpt").read("nope")
