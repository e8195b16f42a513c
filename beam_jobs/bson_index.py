"""Offset index of a BSON file: where each document starts and how long it is.

A BSON file is a plain concatenation of documents, each starting with its total
length as a little-endian int32. One sequential pass over those prefixes (reading
16 MB blocks, never decoding the documents themselves) gives the (offset, length) of
every document, so later readers can seek to any byte range in parallel. This is
the Cdiscount seed solution's metadata file, without decoding a single image.

Damaged files. A length prefix is trusted only when the document it announces is
well formed at the top level: a valid element type byte, a key, a value size for
each element, and the closing NUL exactly at `offset + length - 1` (a cheap walk
over three or so element headers, no decoding). When that fails (stray bytes, a
length of 0, 3, -7 or past the end of the file, a truncated tail), the walk scans
forward to the next offset that starts a document beginning with an `_id` element
and that `bson.decode` accepts, and reports the bytes it skipped as one `Gap`.
The `_id` rule is what keeps the scan from taking an embedded document (an image's
`{"picture": ...}` inside the damaged product) for a product: every document of a
MongoDB dump, Cdiscount's included, starts with `_id`, and embedded ones do not.
The scan looks for the bytes `_id\\0` with `bytes.find`, so it stays linear in the
size of the file; only candidates that pass the cheap checks are decoded.

Readers follow the index: the documents of a byte range are its length prefixes
walked from its start, jumping over the range's gaps (`read_documents`), which is
exactly how the index walk laid them out.
"""

import struct
from typing import BinaryIO, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import bson
import numpy as np
from apache_beam.io.filesystems import FileSystems

# The smallest BSON document is 5 bytes: the length prefix and the closing NUL.
MIN_DOCUMENT = 5
# MongoDB's limit on a document: a garbage length can never make the walk read more.
MAX_DOCUMENT = 16 << 20
_BLOCK = 16 << 20
_INT32 = struct.Struct("<i")
# A resync candidate starts with an `_id` element: type byte at -1, length prefix at -5.
_ID_KEY = b"_id\x00"

# Value sizes of BSON element types (bsonspec.org): fixed-size ones...
_FIXED_SIZE = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8,
               0x13: 16, 0x7F: 0, 0xFF: 0}
# ...and those that start with an int32: string-like (length of the bytes that follow,
# NUL included), document-like (total length, prefix included), binary (then a subtype).
_STRING_TYPES = (0x02, 0x0D, 0x0E)
_DOCUMENT_TYPES = (0x03, 0x04, 0x0F)
_BINARY = 0x05
_REGEX = 0x0B
_DB_POINTER = 0x0C
# Types an `_id` can have (anything but an array, says MongoDB; regex and the
# deprecated types are left out as no dump uses them).
_ID_TYPES = frozenset([*_FIXED_SIZE, *_STRING_TYPES, 0x03, _BINARY])


class Gap(NamedTuple):
    """A damaged stretch of a file: bytes between documents that hold no document."""

    offset: int
    length: int
    reason: str


def file_size(path: str) -> int:
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


class _Blocks:
    """Random access to a file through one cached block, refilled forward as the walk goes."""

    def __init__(self, f: BinaryIO, size: int):
        self._f, self.size = f, size
        self.block, self.start = b"", 0

    def covers(self, pos: int, length: int) -> bool:
        return self.start <= pos and pos + length <= self.start + len(self.block)

    def load(self, pos: int, length: int) -> int:
        """Makes [pos, pos + length) available; returns pos's offset inside `block`."""
        if not self.covers(pos, length):
            self._f.seek(pos)
            self.block, self.start = self._f.read(max(_BLOCK, length)), pos
        return pos - self.start

    def byte_at(self, pos: int) -> int:
        # Outside the block, one byte is read on its own: a candidate whose announced end
        # is far away rarely gets further, so refilling the block for it could re-read
        # 16 MB per candidate while resynchronising.
        if self.covers(pos, 1):
            return self.block[pos - self.start]
        self._f.seek(pos)
        return self._f.read(1)[0]

    def find(self, needle: bytes, pos: int) -> int:
        """The first position >= pos where `needle` starts, or -1."""
        while pos + len(needle) <= self.size:
            i = self.load(pos, len(needle))
            found = self.block.find(needle, i)
            if found >= 0:
                return self.start + found
            # Not in this block: go on from where a match could still straddle its end.
            pos = max(pos, self.start + len(self.block) - len(needle) + 1)
        return -1


def _value_size(block: bytes, kind: int, p: int, end: int) -> int:
    """Bytes taken by an element's value at block offset p, or -1 if it cannot be one."""
    size = _FIXED_SIZE.get(kind)
    if size is not None:
        return size
    if p + 4 > end:
        return -1
    (n,) = _INT32.unpack_from(block, p)
    if kind in _STRING_TYPES:
        return 4 + n if n >= 1 else -1
    if kind in _DOCUMENT_TYPES:
        return n if n >= MIN_DOCUMENT else -1
    if kind == _BINARY:
        return 5 + n if n >= 0 else -1
    if kind == _REGEX:  # two cstrings
        first = block.find(b"\x00", p, end)
        second = block.find(b"\x00", first + 1, end) if first >= 0 else -1
        return second + 1 - p if second >= 0 else -1
    if kind == _DB_POINTER:
        return 4 + n + 12 if n >= 1 else -1
    return -1


def top_level_problem(block: bytes, start: int, length: int) -> Optional[str]:
    """Why block[start:start + length] is not a document whose top-level elements fill it, or None.

    Element headers only (type byte, key, value size): nested documents and binaries are
    stepped over by their sizes, never decoded, so a misread length is caught in a few
    steps instead of a full decode.
    """
    last = start + length - 1
    if block[last] != 0:
        return f"no document of {length} bytes here: its last byte is not NUL"
    p = start + 4
    while p < last:
        kind = block[p]
        key_end = block.find(b"\x00", p + 1, last)
        if key_end < 0:
            break
        size = _FIXED_SIZE.get(kind)
        if size is None:
            size = _value_size(block, kind, key_end + 1, last)
            if size < 0:
                break
        p = key_end + 1 + size
    if p != last:
        return f"malformed document: its elements do not fill its {length} bytes"
    return None


def _damage(blocks: _Blocks, pos: int) -> Tuple[int, Optional[str]]:
    """(length, None) when a well-formed document starts at pos, else (length or 0, the reason)."""
    left = blocks.size - pos
    if left < 4:
        return 0, "truncated length prefix at end of file"
    i = blocks.load(pos, 4)
    (length,) = _INT32.unpack_from(blocks.block, i)
    if length < MIN_DOCUMENT:
        return length, f"invalid document length {length}"
    if length > MAX_DOCUMENT:
        return length, f"invalid document length {length}: over BSON's 16 MiB limit"
    if length > left:
        return length, f"truncated document: {length} bytes announced, {left} left in file"
    if i + length > len(blocks.block):
        if blocks.byte_at(pos + length - 1) != 0:
            return length, f"no document of {length} bytes here: its last byte is not NUL"
        i = blocks.load(pos, length)
    return length, top_level_problem(blocks.block, i, length)


def _decodes(blocks: _Blocks, pos: int, length: int) -> bool:
    i = blocks.load(pos, length)
    try:
        bson.decode(blocks.block[i:i + length])
    except Exception:  # bson raises several types (InvalidBSON, ValueError, ...)
        return False
    return True


def _next_document(blocks: _Blocks, pos: int) -> int:
    """The first offset > pos where a document starting with `_id` decodes; the file size if none."""
    search = pos + 1 + 5
    while True:
        found = blocks.find(_ID_KEY, search)
        if found < 0:
            return blocks.size
        search = found + 1
        candidate = found - 5
        if blocks.byte_at(found - 1) not in _ID_TYPES:
            continue
        length, reason = _damage(blocks, candidate)
        if reason is None and _decodes(blocks, candidate, length):
            return candidate


def build_index(path: str) -> Tuple[np.ndarray, List[Gap]]:
    """Returns an int64 array [n, 2] of (offset, length), and the damaged stretches.

    Documents and gaps tile the file in order: every byte belongs to exactly one.
    """
    size = file_size(path)
    offsets: List[int] = []
    lengths: List[int] = []
    gaps: List[Gap] = []
    with FileSystems.open(path) as f:
        blocks = _Blocks(f, size)
        pos = 0
        while pos < size:
            # The common case, inline: a well-formed document inside the current block.
            block, i = blocks.block, pos - blocks.start
            if i + 4 <= len(block):
                (length,) = _INT32.unpack_from(block, i)
                if MIN_DOCUMENT <= length <= MAX_DOCUMENT and i + length <= len(block) \
                        and top_level_problem(block, i, length) is None:
                    offsets.append(pos)
                    lengths.append(length)
                    pos += length
                    continue
            length, reason = _damage(blocks, pos)  # refills the block, or says what is wrong
            if reason is None:
                offsets.append(pos)
                lengths.append(length)
                pos += length
                continue
            resume = _next_document(blocks, pos)
            where = "to the next document" if resume < size else "to the end of the file"
            gaps.append(Gap(pos, resume - pos, f"{reason}; skipped {resume - pos} bytes {where}"))
            pos = resume
    index = np.stack([np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)], axis=1) \
        if offsets else np.zeros((0, 2), np.int64)
    return index, gaps


def iter_documents(data: bytes, base_offset: int) -> Iterator:
    """Yields (offset, raw document bytes) for a byte range that holds whole documents only."""
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        (length,) = _INT32.unpack_from(data, pos)
        if length < MIN_DOCUMENT or pos + length > len(data):
            # The index walk vouched for these prefixes: the file is not what was indexed.
            raise ValueError(f"no indexed document at offset {base_offset + pos} (length prefix {length}): "
                             "has the file changed since it was indexed?")
        yield base_offset + pos, view[pos:pos + length]
        pos += length


def read_range(path: str, start: int, end: int) -> bytes:
    with FileSystems.open(path) as f:
        f.seek(start)
        return f.read(end - start)


def read_documents(path: str, start: int, end: int, gaps: Sequence[Tuple[int, int]] = ()) -> Iterator:
    """Yields (offset, raw document bytes) of the indexed documents in [start, end).

    `gaps` are the (offset, length) of the damaged stretches inside the range (`gaps_in`):
    the documents are the runs of length prefixes between them, as the index walk found
    them. Reads each run of documents between gaps on its own, so a long damaged stretch is
    never loaded.
    """
    gaps = sorted(gaps)
    run_start = start
    for offset, length in [*gaps, (end, 0)]:
        if offset > run_start:
            yield from iter_documents(read_range(path, run_start, offset), run_start)
        run_start = offset + length


def gaps_in(gaps: Sequence[Gap], start: int, end: int) -> Tuple[Tuple[int, int], ...]:
    """The (offset, length) of the gaps that lie inside [start, end)."""
    return tuple((g.offset, g.length) for g in gaps if start <= g.offset < end)


def split_ranges(index: np.ndarray, parts: int) -> List[Tuple[int, int]]:
    """Splits the indexed documents into at most `parts` contiguous byte ranges of similar size."""
    if len(index) == 0:
        return []
    ends = index[:, 0] + index[:, 1]
    # Sizes count document bytes only, so a long gap does not make its range look full.
    covered = np.cumsum(index[:, 1])
    total = covered[-1]
    # Document i closes range k when the running total first passes k/parts of the bytes.
    cuts = np.searchsorted(covered, total * np.arange(1, parts) / parts, side="left")
    bounds = sorted(set([0] + [int(c) + 1 for c in cuts if c + 1 < len(index)] + [len(index)]))
    return [(int(index[a, 0]), int(ends[b - 1])) for a, b in zip(bounds[:-1], bounds[1:])]
