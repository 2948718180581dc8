"""The IDX format of (Fashion-)MNIST: big-endian magic ``0x0000 TT NN`` (TT = element type, NN = number of
dimensions), NN big-endian int32 sizes, then the elements in C order."""

from __future__ import annotations

import numpy as np

__all__ = ["read_idx"]

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(data: bytes, where: str = "IDX data") -> np.ndarray:
    """Decoded IDX bytes -> array in native byte order (uint8 for MNIST); ``ValueError`` naming ``where``."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise ValueError(f"{where}: not an IDX file (magic bytes {data[:4].hex()!r}, expected 0000 + type + ndim)")
    dtype, ndim = np.dtype(_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(data[4:header], dtype=">i4"))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{where}: IDX header says shape {shape} ({expected} bytes), got {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
