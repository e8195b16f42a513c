"""Offset index of a BSON file: where each document starts and how long it is.

A BSON file is a plain concatenation of documents, each starting with its total
length as a little-endian int32. One sequential pass over those prefixes (reading
big blocks, never the documents themselves) gives the (offset, length) of every
document, so later readers can seek to any byte range in parallel. This is the
Cdiscount seed solution's metadata file, without decoding a single image.
"""

import struct
from typing import List, NamedTuple, Optional, Tuple

import numpy as np
from apache_beam.io.filesystems import FileSystems

# The smallest BSON document is 5 bytes: the length prefix and the closing NUL.
MIN_DOCUMENT = 5
_BLOCK = 16 << 20
_INT32 = struct.Struct("<i")


class CorruptTail(NamedTuple):
    """Bytes at the end of a file that cannot be split into documents."""

    offset: int
    length: int
    reason: str


def file_size(path: str) -> int:
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


def build_index(path: str) -> Tuple[np.ndarray, Optional[CorruptTail]]:
    """Returns an int64 array [n, 2] of (offset, length), and the corrupt tail if any.

    A length prefix that is too small or runs past the end of the file ends the
    walk: nothing after it can be located, so it is reported as one corrupt tail.
    """
    size = file_size(path)
    offsets: List[int] = []
    lengths: List[int] = []
    tail = None
    with FileSystems.open(path) as f:
        block, block_start = b"", 0
        pos = 0
        while pos < size:
            if pos + 4 > block_start + len(block):
                # Refill from `pos`: documents longer than a block are skipped by seeking.
                f.seek(pos)
                block, block_start = f.read(_BLOCK), pos
            if pos + 4 > size:
                tail = CorruptTail(pos, size - pos, "truncated length prefix at end of file")
                break
            (length,) = _INT32.unpack_from(block, pos - block_start)
            if length < MIN_DOCUMENT:
                tail = CorruptTail(pos, size - pos, f"invalid document length {length}")
                break
            if pos + length > size:
                tail = CorruptTail(pos, size - pos, f"truncated document: {length} bytes announced, "
                                                    f"{size - pos} left in file")
                break
            offsets.append(pos)
            lengths.append(length)
            pos += length
    index = np.stack([np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)], axis=1) \
        if offsets else np.zeros((0, 2), np.int64)
    return index, tail


def iter_documents(data: bytes, base_offset: int):
    """Yields (offset, raw document bytes) for a byte range holding whole documents."""
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        (length,) = _INT32.unpack_from(data, pos)
        yield base_offset + pos, view[pos:pos + length]
        pos += length


def read_range(path: str, start: int, end: int) -> bytes:
    with FileSystems.open(path) as f:
        f.seek(start)
        return f.read(end - start)


def split_ranges(index: np.ndarray, parts: int) -> List[Tuple[int, int]]:
    """Splits the indexed documents into at most `parts` contiguous byte ranges of similar size."""
    if len(index) == 0:
        return []
    ends = index[:, 0] + index[:, 1]
    total = ends[-1] - index[0, 0]
    # Document i closes range k when the running total first passes k/parts of the bytes.
    cuts = np.searchsorted(ends - index[0, 0], total * np.arange(1, parts) / parts, side="left")
    bounds = sorted(set([0] + [int(c) + 1 for c in cuts if c + 1 < len(index)] + [len(index)]))
    return [(int(index[a, 0]), int(ends[b - 1])) for a, b in zip(bounds[:-1], bounds[1:])]
