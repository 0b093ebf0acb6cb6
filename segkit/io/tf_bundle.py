"""Reading TensorFlow checkpoints (the TensorBundle format) without TensorFlow.

A checkpoint ``PREFIX`` (as TensorFlow names it: ``.../model.ckpt``) is two kinds of files:

- ``PREFIX.index``: an SSTable (LevelDB's table format) mapping each variable name to a serialized
  ``BundleEntryProto`` (dtype, shape, data shard, offset, size); the empty key holds a ``BundleHeaderProto``
  (number of shards, endianness).
- ``PREFIX.data-NNNNN-of-MMMMM``: the raw bytes of the tensors, little-endian, back to back.

References: tensorflow/core/util/tensor_bundle/tensor_bundle.{h,cc} and tensor_bundle.proto,
tensorflow/core/lib/io/{format,block}.cc (the table format), tensorflow/core/framework/types.proto (dtypes).
Only what checkpoints of models hold is read: numeric tensors, unsliced. The tensors' CRC32C checksums are
not verified (a pure-Python CRC32C would take minutes for a 160 MB checkpoint); sizes are checked instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB's table magic number, the last 8 bytes of an .index file
FOOTER_SIZE = 48  # two block handles (varints, padded to 40 bytes) and the magic number

# tensorflow/core/framework/types.proto DataType -> numpy dtype (bfloat16 read as its raw uint16 bits)
DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}
DTYPE_NAMES = {7: "string", 14: "bfloat16", 8: "complex64", 18: "complex128", 20: "resource", 21: "variant"}


class CheckpointError(ValueError):
    """A TensorFlow checkpoint that cannot be read; the message names the file."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at ``pos``."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a serialized protocol buffer message: integers for varint and fixed
    fields, bytes for length-delimited ones."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", data, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", data, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


@dataclass(frozen=True)
class Entry:
    """Where a tensor is (a ``BundleEntryProto``)."""

    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    sliced: bool


def _entry(data: bytes) -> Entry:
    dtype, shape, shard, offset, size, sliced = 0, (), 0, 0, 0, False
    for number, value in _fields(data):
        if number == 1:
            dtype = value
        elif number == 2:  # TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}
            dims = [dict(_fields(d)).get(1, 0) for n, d in _fields(value) if n == 2]
            shape = tuple(d - (1 << 64) if d >= 1 << 63 else d for d in dims)
        elif number == 3:
            shard = value
        elif number == 4:
            offset = value
        elif number == 5:
            size = value
        elif number == 7:
            sliced = True
    return Entry(dtype, shape, shard, offset, size, sliced)


def _block(data: bytes, offset: int, size: int, path: Path) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one table block (prefix-compressed keys, then the restart array)."""
    if offset + size + 5 > len(data):
        raise CheckpointError(f"{path}: a table block points past the end of the file (truncated?)")
    if data[offset + size] != 0:
        raise CheckpointError(f"{path}: compressed table blocks are not supported (type {data[offset + size]})")
    block = data[offset : offset + size]
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


def read_index(path: Path) -> dict[bytes, bytes]:
    """Every (key, value) of an SSTable file, in key order."""
    data = Path(path).read_bytes()
    if len(data) < FOOTER_SIZE or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
        raise CheckpointError(f"{path} is not a TensorFlow checkpoint index (no table footer)")
    footer = data[len(data) - FOOTER_SIZE :]
    _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    table = {}
    for _, handle in _block(data, index_offset, index_size, path):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        table.update(_block(data, offset, size, path))
    return table


class TFCheckpoint:
    """The variables of a TensorFlow checkpoint ``PREFIX`` (``PREFIX.index`` + ``PREFIX.data-*``).

    ``names``, ``shape(name)``, ``dtype(name)`` come from the index alone; ``read(name)`` reads one tensor
    (a numpy array, float32 kernels in TensorFlow's layout: convolutions HWIO, depthwise HWC1).
    """

    def __init__(self, prefix: str | Path) -> None:
        prefix = str(prefix)
        for suffix in (".index", ".meta"):  # PREFIX given as one of its files
            if prefix.endswith(suffix):
                prefix = prefix[: -len(suffix)]
        if ".data-" in Path(prefix).name:
            prefix = prefix[: prefix.rindex(".data-")]
        self.prefix = prefix
        index = Path(prefix + ".index")
        if not index.is_file():
            raise FileNotFoundError(
                f"TensorFlow checkpoint not found: {index} (give the prefix, e.g. "
                f".../model.ckpt for model.ckpt.index and model.ckpt.data-00000-of-00001)"
            )
        table = read_index(index)
        header = dict(_fields(table.pop(b"", b"")))
        if header.get(2, 0) != 0:
            raise CheckpointError(f"{index}: big-endian checkpoints are not supported")
        self.num_shards = header.get(1, 1)
        self.entries = {key.decode(): _entry(value) for key, value in table.items()}
        self._shard_files = [Path(f"{prefix}.data-{i:05d}-of-{self.num_shards:05d}") for i in range(self.num_shards)]
        missing = [str(f) for f in self._shard_files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"TensorFlow checkpoint {prefix}: data file(s) missing: {', '.join(missing)}")

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name].shape

    def dtype(self, name: str) -> np.dtype:
        code = self.entries[name].dtype
        if code not in DTYPES:
            raise CheckpointError(
                f"{self.prefix}: variable {name} has dtype {DTYPE_NAMES.get(code, code)}, which segkit does not read"
            )
        return np.dtype(DTYPES[code])

    def read(self, name: str) -> np.ndarray:
        if name not in self.entries:
            raise KeyError(f"{self.prefix} has no variable {name}")
        entry = self.entries[name]
        if entry.sliced:
            raise CheckpointError(f"{self.prefix}: variable {name} is saved in slices, which segkit does not read")
        dtype = self.dtype(name)
        count = int(np.prod(entry.shape, dtype=np.int64))
        if entry.size != count * dtype.itemsize:
            raise CheckpointError(
                f"{self.prefix}: variable {name} holds {entry.size} bytes, its shape "
                f"{list(entry.shape)} and dtype {dtype} need {count * dtype.itemsize}"
            )
        path = self._shard_files[entry.shard]
        with open(path, "rb") as f:
            f.seek(entry.offset)
            raw = f.read(entry.size)
        if len(raw) != entry.size:
            raise CheckpointError(f"{path} ends before variable {name} (truncated?)")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(entry.shape).copy()

    def read_all(self) -> dict[str, np.ndarray]:
        return {name: self.read(name) for name in self.names}
