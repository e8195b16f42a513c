"""YouTube-8M frame-level records: validation, label remapping, MediaPipe conversion, shard plans.

Plain functions, shared by the Beam job (`frames_to_tfrecords`) and by anything that
converts without Beam, so both write the same records.

One input record becomes an `Outcome`: written (with the output bytes), rejected (with
the reason, a dead letter) or filtered (dropped on purpose: no label in the requested
vocabulary). Reading (`read_records`) resynchronises after damage: a damaged stretch of
a TFRecord file is one dead letter and the records after it are kept. Two input formats:

- `official`: the YouTube-8M frame-level `SequenceExample` (see `tfrecords.yt8m_frame`).
  A record that needs no change is written as the very bytes it was read as.
- `mediapipe`: what MediaPipe's YouTube-8M feature extractor
  (`mediapipe/graphs/youtube8m/feature_extraction.pbtxt`) writes: its
  `PackMediaSequenceCalculator` stores the float features of one frame per second under
  the MediaSequence keys `RGB/feature/floats` (1024 floats) and `AUDIO/feature/floats`
  (128 floats), and the video under the context key `clip/data_path`. They are quantized
  with `yt8m_frame.quantize` into the official format.

Example:

>>> raw = yt8m_frame.encode(b"vid1", [10, 4], rgb=np.zeros([5, 1024], np.uint8), audio=np.zeros([5, 128], np.uint8))
>>> outcome = convert_record(raw, "official", LabelRule.from_vocabulary([3, 10]))  # 3 -> 0, 10 -> 1
>>> outcome.status, yt8m_frame.parse(tf.constant(outcome.record), num_classes=2)["label_ids"].numpy()
('written', array([1]))
"""

import csv
import io
import math
import posixpath
import re
import struct
import zlib
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import google_crc32c
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tfrecords import UserError, yt8m_frame

FORMATS = ("official", "mediapipe")
# Split names the official shards start with (train0093.tfrecord, validate1234.tfrecord,
# test0042.tfrecord; also trainpj.tfrecord of the 2017 release and our own train-00000-of-...).
AUTO_SPLITS = ("train", "validate", "test")

# MediaSequence keys (mediapipe/util/sequence/media_sequence.py): PackMediaSequenceCalculator
# stores stream FLOAT_FEATURE_<NAME> under "<NAME>/feature/floats".
MEDIAPIPE_RGB = "RGB/feature/floats"
MEDIAPIPE_AUDIO = "AUDIO/feature/floats"
# Where a MediaPipe record may carry its video id, most specific first; `clip/data_path`
# (the input video's path, the only one the YouTube-8M graph sets) gives its file stem.
MEDIAPIPE_ID_KEYS = ("id", "example/id", "clip/media_id")
MEDIAPIPE_DATA_PATH = "clip/data_path"
MEDIAPIPE_LABELS = "clip/label/index"
# The extractor writes one serialized SequenceExample per video file (features.pb), not a
# TFRecord file; such inputs are read whole.
RAW_RECORD_SUFFIX = ".pb"

WRITTEN, REJECTED, FILTERED = "written", "rejected", "filtered"
# The largest label id kept as it is (no --vocabulary). Such ids are class indexes, so
# classes.csv and every multi-hot label get max id + 1 columns: one stray id of 2**40
# would ask for 2**40 classes. The largest YouTube-8M vocabulary has 4,716 classes (2017;
# 3,862 in 2018), so 100,000 classes leave ample room; larger ids need --vocabulary,
# which renumbers them densely.
MAX_LABEL_ID = 99_999
# Columns of the official vocabulary.csv copied into classes.csv.
NAME_COLUMNS = ("KnowledgeGraphId", "Name", "Vertical1")


class Outcome(NamedTuple):
    """What became of one input record."""

    status: str  # WRITTEN, REJECTED or FILTERED
    record: bytes = b""  # the output record, when written
    reason: str = ""  # why, when rejected
    video_id: Optional[str] = None
    # The largest label id in the output record (-1: none); gives num_classes without a vocabulary.
    max_label: int = -1


class LabelRule(NamedTuple):
    """What to do with label ids.

    remap: original label id -> class index (from `--vocabulary`); labels not in it are
        dropped and videos left without labels are filtered. None keeps labels as they are.
    known: label ids allowed when not remapping (from `--classes`); a record with another
        label is rejected. None allows every id from 0 to MAX_LABEL_ID.
    """

    remap: Optional[Dict[int, int]] = None
    known: Optional[frozenset] = None

    @classmethod
    def from_vocabulary(cls, label_ids: Sequence[int]) -> "LabelRule":
        """Keeps `label_ids`, numbered by their place in sorted order (never set order)."""
        return cls(remap={label: i for i, label in enumerate(sorted(set(label_ids)))})


class Video(NamedTuple):
    video_id: bytes
    labels: List[int]
    rgb: np.ndarray  # uint8 [frames, 1024]
    audio: np.ndarray  # uint8 [frames, 128]
    # (labels, start times, scores), or None when the record has no segment ratings.
    segments: Optional[Tuple[List[int], List[int], List[float]]]


class Invalid(Exception):
    """A record that cannot be converted; the message is the dead letter's reason."""


# --- reading ---------------------------------------------------------------------------------

# Read size: big blocks keep Python's per-call cost negligible next to the bytes (a
# frame-level record is ~0.1-1 MB) and suit object stores, which pay per request.
READ_BLOCK = 16 << 20
# TFRecord framing: uint64 length, uint32 masked CRC-32C of those 8 bytes, the data,
# uint32 masked CRC-32C of the data (tensorflow/core/lib/io/record_writer.h).
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_FRAMING = _HEADER.size + _FOOTER.size
# Records are protobufs, which cannot reach 2 GiB; a larger length is damage, and a real
# length always has its top four bytes zero, which lets the resync scan skip with bytes.find.
MAX_RECORD_BYTES = (1 << 31) - 1
_ZERO_TOP = b"\0\0\0\0"
# An all-zero header never checks: the masked CRC of eight zero bytes is 0x07980329, not 0.
_ZERO_HEADER = bytes(_HEADER.size)
_NONZERO = re.compile(b"[^\0]")


class Damaged(Invalid):
    """A stretch of an input that holds no readable record: one dead letter.

    `length`: the bytes skipped, or None where it is unknown (the unreadable rest of a
    broken gzip stream).
    """

    def __init__(self, reason: str, length: Optional[int]):
        super().__init__(reason)
        self.length = length


def read_records(path: str, fmt: str, block_size: int = READ_BLOCK
                 ) -> Iterator[Tuple[int, Union[bytes, Invalid]]]:
    """Yields (byte offset, serialized record) of one input file, resynchronising after damage.

    The offset is where the record's framing starts in the file (for `.gz` files, in the
    uncompressed stream): a plain int of one meaning per file, so dead letters sort into
    file order and `dd skip=OFFSET` finds the bytes. A MediaPipe `.pb` file is one record
    at offset 0.

    A record whose length or data checksum fails, or a truncated tail, starts a damaged
    stretch: the reader scans on byte by byte for the next position where both the length
    checksum and the data checksum hold, and yields the stretch as one (offset, Damaged)
    item; every record after it is kept. The scan is linear in the file size: only a
    position whose 12-byte header checks (1 in 2**32 by chance) costs a data checksum.

    Files ending in `.gz` are gunzipped here (several members are read one after another).
    A gzip stream cannot be resynchronised (deflate has no sync points), so one that is
    not gzip, breaks or is cut short ends with one (offset, Damaged) item, length None,
    after every record read before the break. A file that cannot be opened is one
    Invalid; an I/O error while reading raises, so Beam retries the work.
    """
    if fmt == "mediapipe" and path.endswith(RAW_RECORD_SUFFIX):
        try:
            with FileSystems.open(path) as f:
                yield 0, f.read()
        except Exception as e:  # the file vanished or cannot be read: one dead letter, not a crash
            yield 0, Invalid(f"file does not read: {type(e).__name__}: {e}")
        return
    try:
        # UNCOMPRESSED: Beam would gunzip `.gz` itself, but its errors end the whole file.
        f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as e:  # the file vanished, a bucket we cannot read: one dead letter, not a crash
        yield 0, Invalid(f"file does not open: {type(e).__name__}: {e}")
        return
    with f:
        blocks = _blocks(f, block_size)
        if path.endswith(".gz"):
            blocks = _gunzip(blocks, block_size)
        yield from _framed_records(blocks)


class _StreamBroken(Exception):
    """The (decompressed) byte stream cannot go on; the message says why."""


def _blocks(f, size: int) -> Iterator[bytes]:
    while True:
        block = f.read(size)
        if not block:
            return
        yield block


def _gunzip(blocks: Iterator[bytes], out_size: int) -> Iterator[bytes]:
    """The decompressed bytes of a gzip stream of one or more members, at most `out_size` a piece.

    Raises _StreamBroken where the stream stops making sense, after yielding every byte
    decoded before that point.
    """
    member, first = None, True  # member: the current member's decompressor, None between members
    for data in blocks:
        if first and not data.startswith(b"\x1f\x8b"[:len(data)]):
            raise _StreamBroken("not a gzip file (it does not start with the gzip magic bytes 1f 8b)")
        first = False
        while True:
            if member is None:
                data = data.lstrip(b"\0")  # NUL padding between members, as Python's gzip allows
                if not data:
                    break
                member = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: gzip header and CRC-32 trailer
            before = member.copy()
            try:
                out = member.decompress(data, out_size)  # bounded: a small block may inflate hugely
            except zlib.error as e:
                yield from _decoded_before_error(before, data)
                raise _StreamBroken(f"gzip stream is corrupt: {e}") from None
            if out:
                yield out
            if member.eof:
                data, member = member.unused_data, None
                continue
            data = member.unconsumed_tail
            # All input consumed and the output not cut at out_size: nothing is pending.
            if not data and len(out) < out_size:
                break
    if member is not None:
        raise _StreamBroken("gzip stream is truncated (it ends before its end marker)")


def _decoded_before_error(member, data: bytes, step: int = 1 << 16) -> Iterator[bytes]:
    """The bytes that `data` decodes to before the spot where it fails.

    zlib drops the whole output of a call that fails, up to `out_size` bytes (all of a
    member whose CRC-32 trailer fails, if it inflated in one call). So the failing input
    is replayed into `member`, a copy taken before that call, in steps that shrink
    64-fold around the failing step, down to single bytes: every byte decoded before the
    bad spot comes out, at a few hundred copies of zlib's 32 KB state per error.
    """
    for i in range(0, len(data), step):
        before = member.copy() if step > 1 else None
        try:
            out = member.decompress(data[i:i + step])
        except zlib.error:
            if before is not None:
                yield from _decoded_before_error(before, data[i:i + step], max(1, step // 64))
            return
        if out:
            yield out
        if member.eof:
            return


class _Window:
    """The bytes of a stream from offset `start` on, refilled from an iterator of blocks."""

    def __init__(self, blocks: Iterator[bytes]):
        self._blocks = blocks
        self.data = b""
        self.start = 0
        self.ended = False
        self.error: Optional[str] = None  # why the stream broke off, if it did

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def has(self, begin: int, end: int) -> bool:
        """Whether bytes [begin, end) are here; reads on as needed, dropping the bytes before `begin`."""
        if end <= self.end:
            return True
        if self.ended:
            return False
        pieces, have = [self.data[begin - self.start:]], self.end - begin
        self.start = begin
        while begin + have < end:
            try:
                block = next(self._blocks)
            except StopIteration:
                self.ended = True
                break
            except _StreamBroken as e:
                self.ended, self.error = True, str(e)
                break
            pieces.append(block)
            have += len(block)
        self.data = b"".join(pieces)  # one join: a record spanning many blocks is copied once
        return end <= self.end


def _masked_crc(data: bytes) -> int:
    # TFRecord masks CRC-32C so that a CRC of data holding CRCs stays well distributed.
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record_at(window: _Window, pos: int) -> Tuple[Optional[bytes], Optional[str]]:
    """(the record framed at `pos`, None), or (None, what is wrong there); (None, None) at the end."""
    if not window.has(pos, pos + _HEADER.size):
        left = window.end - pos
        return None, (f"truncated: the file ends {left} bytes into a record header" if left else None)
    i = pos - window.start
    header = window.data[i:i + _HEADER.size]
    length, length_crc = _HEADER.unpack(header)
    if _masked_crc(header[:8]) != length_crc:
        return None, "record length checksum does not match"
    if length > MAX_RECORD_BYTES:
        return None, f"record length {length} is over 2 GiB, protobuf's limit"
    if not window.has(pos, pos + _FRAMING + length):
        return None, f"truncated: the file ends {window.end - pos} bytes into a record of {_FRAMING + length}"
    i = pos - window.start + _HEADER.size
    data = window.data[i:i + length]
    if _masked_crc(data) != _FOOTER.unpack_from(window.data, i + length)[0]:
        return None, "record data checksum does not match"
    return data, None


def _next_record(window: _Window, begin: int) -> Optional[Tuple[int, bytes]]:
    """(offset, record) of the first readable record at or after `begin`; None if there is none."""
    pos = begin
    while window.has(pos, pos + _HEADER.size):
        # A candidate header has zeros in its length's top four bytes (see _ZERO_TOP).
        zeros = window.data.find(_ZERO_TOP, pos - window.start + 4)
        if zeros < 0:
            # No candidate lies wholly in the window: keep its last bytes, read on.
            pos = max(pos, window.end - _HEADER.size + 1)
            if not window.has(pos, window.end + 1):
                return None
            continue
        candidate = window.start + zeros - 4
        if not window.has(candidate, candidate + _HEADER.size):
            return None
        i = candidate - window.start
        if window.data[i:i + _HEADER.size] == _ZERO_HEADER:
            # Zero-filled stretches are common (a crash before the data reached the disk):
            # no header in one can check, so jump to the first header holding a non-zero byte.
            nonzero = _NONZERO.search(window.data, i + _HEADER.size)
            pos = (window.start + nonzero.start() - _HEADER.size + 1 if nonzero
                   else max(candidate + 1, window.end - _HEADER.size + 1))
            continue
        record, _ = _record_at(window, candidate)
        if record is not None:
            return candidate, record
        pos = candidate + 1
    return None


def _framed_records(blocks: Iterator[bytes]) -> Iterator[Tuple[int, Union[bytes, Damaged]]]:
    window = _Window(blocks)
    pos = 0
    while True:
        record, problem = _record_at(window, pos)
        if record is None and problem is None:
            break
        if record is None:
            found = _next_record(window, pos + 1)
            if found is None and window.error:
                break  # the broken stream's dead letter below covers this stretch too
            skipped = (found[0] if found else window.end) - pos
            where = (f"resynchronised at byte {found[0]}" if found else "no readable record follows")
            yield pos, Damaged(f"{problem}; skipped {skipped} bytes, {where}", skipped)
            if found is None:
                return
            pos, record = found
        yield pos, record
        pos += _FRAMING + len(record)
    if window.error:
        reason = window.error if window.end == 0 else (
            f"{window.error} after {window.end} uncompressed bytes; the rest of the file "
            "cannot be read (deflate cannot resynchronise)")
        yield pos, Damaged(reason, None)


# --- validation and conversion ---------------------------------------------------------------


def convert_record(raw: bytes, fmt: str, rule: LabelRule = LabelRule()) -> Outcome:
    """Validates one serialized input record and converts it to the official format.

    Args:
        raw: the serialized record.
        fmt: "official" or "mediapipe".
        rule: what to do with label ids (default: keep them).

    Returns:
        An Outcome: written (with the bytes to write), rejected (with the reason) or filtered.
    """
    try:
        example = tf.train.SequenceExample.FromString(raw)
    except Exception as e:  # protobuf raises DecodeError, and others on odd input
        return Outcome(REJECTED, reason=f"record does not parse: {type(e).__name__}: {e}")
    video_id = None
    try:
        video_id = _official_id(example) if fmt == "official" else _mediapipe_id(example)
        video = _official_video(example, video_id) if fmt == "official" else _mediapipe_video(example, video_id)
        _check_labels(video, rule)
    except Invalid as e:
        return Outcome(REJECTED, reason=str(e), video_id=_text(video_id))
    if rule.remap is not None:
        video = remap_video(video, rule.remap)
        if video is None:
            return Outcome(FILTERED, video_id=_text(video_id))
    elif fmt == "official":
        # Nothing changes: the output is the input, byte for byte.
        return Outcome(WRITTEN, record=bytes(raw), video_id=_text(video_id), max_label=_max_label(video))
    return Outcome(WRITTEN, record=encode_video(video), video_id=_text(video_id), max_label=_max_label(video))


def encode_video(video: Video) -> bytes:
    """The official record of `video` (`yt8m_frame.encode`, deterministic bytes)."""
    segment_labels, start_times, scores = video.segments or (None, None, None)
    return yt8m_frame.encode(video.video_id, video.labels, video.rgb, video.audio,
                             segment_labels=segment_labels, segment_start_times=start_times,
                             segment_scores=scores)


def remap_video(video: Video, remap: Dict[int, int]) -> Optional[Video]:
    """Renumbers labels and segment labels with `remap`, dropping the others.

    Returns None for a labelled video left without labels (filtered); a video that had no
    labels (a test video) is kept.
    """
    labels = [remap[label] for label in video.labels if label in remap]
    if video.labels and not labels:
        return None
    segments = video.segments
    if segments is not None:
        kept = [(remap[label], start, score) for label, start, score in zip(*segments) if label in remap]
        segments = tuple(list(column) for column in zip(*kept)) if kept else ([], [], [])
    return video._replace(labels=labels, segments=segments)


def _official_video(example: tf.train.SequenceExample, video_id: bytes) -> Video:
    rgb = _quantized_frames(example, yt8m_frame.RGB, yt8m_frame.RGB_SIZE)
    audio = _quantized_frames(example, yt8m_frame.AUDIO, yt8m_frame.AUDIO_SIZE)
    _check_frame_counts(rgb, audio, yt8m_frame.RGB, yt8m_frame.AUDIO)
    context = example.context.feature
    return Video(video_id, _int64s(context, yt8m_frame.LABELS), rgb, audio, _segments(context))


def _mediapipe_video(example: tf.train.SequenceExample, video_id: bytes) -> Video:
    rgb = _float_frames(example, MEDIAPIPE_RGB, yt8m_frame.RGB_SIZE)
    audio = _float_frames(example, MEDIAPIPE_AUDIO, yt8m_frame.AUDIO_SIZE)
    _check_frame_counts(rgb, audio, MEDIAPIPE_RGB, MEDIAPIPE_AUDIO)
    context = example.context.feature
    # Official `labels` if the user added them, else MediaSequence's clip labels.
    label_key = yt8m_frame.LABELS if yt8m_frame.LABELS in context else MEDIAPIPE_LABELS
    return Video(video_id, _int64s(context, label_key), yt8m_frame.quantize(rgb), yt8m_frame.quantize(audio),
                 _segments(context))


def _official_id(example: tf.train.SequenceExample) -> bytes:
    video_id = _single_bytes(example.context.feature, yt8m_frame.ID)
    if video_id is None:
        raise Invalid(f"missing context feature {yt8m_frame.ID}")
    return video_id


def _mediapipe_id(example: tf.train.SequenceExample) -> bytes:
    context = example.context.feature
    for key in MEDIAPIPE_ID_KEYS:
        video_id = _single_bytes(context, key)
        if video_id:
            return video_id
    data_path = _single_bytes(context, MEDIAPIPE_DATA_PATH)
    if data_path:
        # /videos/abcd1234.mp4 -> abcd1234: videos are usually named by their id.
        return posixpath.splitext(posixpath.basename(data_path.replace(b"\\", b"/")))[0] or data_path
    raise Invalid(f"no video id: none of {', '.join(MEDIAPIPE_ID_KEYS + (MEDIAPIPE_DATA_PATH,))} is set")


def _single_bytes(context, key: str) -> Optional[bytes]:
    if key not in context:
        return None
    feature = context[key]
    if feature.WhichOneof("kind") != "bytes_list" or len(feature.bytes_list.value) != 1:
        raise Invalid(f"context feature {key} is not one string")
    return feature.bytes_list.value[0]


def _int64s(context, key: str) -> List[int]:
    if key not in context:
        return []
    feature = context[key]
    if feature.WhichOneof("kind") not in ("int64_list", None):
        raise Invalid(f"context feature {key} is not an int64 list")
    return list(feature.int64_list.value)


def _floats(context, key: str) -> List[float]:
    if key not in context:
        return []
    feature = context[key]
    if feature.WhichOneof("kind") not in ("float_list", None):
        raise Invalid(f"context feature {key} is not a float list")
    return list(feature.float_list.value)


def _segments(context) -> Optional[Tuple[List[int], List[int], List[float]]]:
    keys = (yt8m_frame.SEGMENT_LABELS, yt8m_frame.SEGMENT_START_TIMES, yt8m_frame.SEGMENT_SCORES)
    if not any(key in context for key in keys):
        return None
    labels = _int64s(context, keys[0])
    start_times = _int64s(context, keys[1])
    scores = _floats(context, keys[2])
    if not len(labels) == len(start_times) == len(scores):
        raise Invalid(f"segment ratings differ in length: {len(labels)} {keys[0]}, "
                      f"{len(start_times)} {keys[1]}, {len(scores)} {keys[2]}")
    return labels, start_times, scores


def _feature_list(example: tf.train.SequenceExample, key: str):
    if key not in example.feature_lists.feature_list:
        raise Invalid(f"missing feature list {key}")
    frames = example.feature_lists.feature_list[key].feature
    if not frames:
        raise Invalid(f"feature list {key} has no frames")
    return frames


def _quantized_frames(example: tf.train.SequenceExample, key: str, width: int) -> np.ndarray:
    frames = _feature_list(example, key)
    rows = []
    for i, frame in enumerate(frames):
        values = frame.bytes_list.value
        if frame.WhichOneof("kind") != "bytes_list" or len(values) != 1:
            raise Invalid(f"{key} frame {i} is not one byte string")
        if len(values[0]) != width:
            raise Invalid(f"{key} frame {i} has {len(values[0])} bytes, expected {width}")
        rows.append(values[0])
    return np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), width)


def _float_frames(example: tf.train.SequenceExample, key: str, width: int) -> np.ndarray:
    frames = _feature_list(example, key)
    rows = np.empty([len(frames), width], np.float32)
    for i, frame in enumerate(frames):
        values = frame.float_list.value
        if frame.WhichOneof("kind") != "float_list":
            raise Invalid(f"{key} frame {i} is not a float list")
        if len(values) != width:
            raise Invalid(f"{key} frame {i} has {len(values)} floats, expected {width}")
        rows[i] = values
    if not np.isfinite(rows).all():
        bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise Invalid(f"{key} frame {bad} has a non-finite value")
    return rows


def _check_frame_counts(rgb: np.ndarray, audio: np.ndarray, rgb_key: str, audio_key: str) -> None:
    if len(rgb) != len(audio):
        raise Invalid(f"frame counts differ: {len(rgb)} {rgb_key} frames, {len(audio)} {audio_key} frames")


def _check_labels(video: Video, rule: LabelRule) -> None:
    labels = list(video.labels) + (list(video.segments[0]) if video.segments else [])
    negative = [label for label in labels if label < 0]
    if negative:
        raise Invalid(f"negative label {negative[0]}")
    if rule.remap is None and rule.known is not None:
        unknown = sorted(set(labels) - rule.known)
        if unknown:
            raise Invalid(f"label {unknown[0]} is not in the classes file")
    elif rule.remap is None and labels and max(labels) > MAX_LABEL_ID:
        raise Invalid(f"label {max(labels)} is above {MAX_LABEL_ID}, the largest label id kept as a class "
                      "index (pass --vocabulary CSV listing it to renumber labels)")


def _max_label(video: Video) -> int:
    labels = list(video.labels) + (list(video.segments[0]) if video.segments else [])
    return max(labels, default=-1)


def _text(video_id: Optional[bytes]) -> Optional[str]:
    return None if video_id is None else video_id.decode("utf-8", errors="replace")


# --- vocabularies ----------------------------------------------------------------------------


def read_index_csv(path: str) -> Dict[int, Dict[str, str]]:
    """Reads a CSV with an `Index` column (vocabulary.csv, a segment vocabulary).

    Returns:
        label id -> the row's `NAME_COLUMNS` that the file has, in file order.

    Raises:
        UserError: a missing file, no `Index` column, a bad or repeated id, no rows.
    """
    try:
        found = FileSystems.exists(path)
    except ValueError as e:  # a scheme without an installed filesystem
        raise UserError(f"cannot open {path}: {e}") from None
    if not found:
        raise UserError(f"vocabulary file not found: {path}")
    with FileSystems.open(path) as f:
        reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8"))
        if not reader.fieldnames or "Index" not in reader.fieldnames:
            raise UserError(f"{path} has no Index column (columns: {reader.fieldnames})")
        names = [c for c in NAME_COLUMNS if c in reader.fieldnames]
        rows: Dict[int, Dict[str, str]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                label = int(row["Index"])
            except (TypeError, ValueError):
                raise UserError(f"{path}:{line}: Index {row['Index']!r} is not an integer") from None
            if label < 0:
                raise UserError(f"{path}:{line}: Index {label} is negative")
            if label in rows:
                raise UserError(f"{path}:{line}: Index {label} appears twice")
            rows[label] = {n: row[n] for n in names}
    if not rows:
        raise UserError(f"{path} lists no classes")
    return rows


def classes_rows(label_ids: Sequence[int], names: Optional[Dict[int, Dict[str, str]]] = None) -> List[Dict]:
    """classes.csv rows: class_index in sorted label id order; category_id is the original label id."""
    columns = sorted({c for row in (names or {}).values() for c in row}, key=NAME_COLUMNS.index)
    return [{"class_index": i, "category_id": label,
             **{c: (names or {}).get(label, {}).get(c, "") for c in columns}}
            for i, label in enumerate(sorted(label_ids))]


# --- inputs and shard plans ------------------------------------------------------------------


class InputFile(NamedTuple):
    path: str
    size: int
    split: str


class ShardGroup(NamedTuple):
    """Contiguous input files of one split that one worker writes to one shard."""

    split: str
    index: int
    files: List[str]
    size: int


def auto_split(path: str) -> str:
    """The split an official shard belongs to, from its file name (train0093.tfrecord -> train)."""
    name = posixpath.basename(path)
    for split in AUTO_SPLITS:
        if name.startswith(split):
            return split
    raise UserError(f"cannot tell the split of {path} from its name (expected it to start with "
                    f"{', '.join(AUTO_SPLITS)}): pass --split NAME")


def plan_groups(files: Sequence[InputFile], num_shards: Optional[int], target_bytes: int) -> List[ShardGroup]:
    """Cuts each split's sorted files into contiguous groups of about equal bytes.

    Args:
        files: the inputs, with their sizes and splits.
        num_shards: groups per split; None: one per `target_bytes` of the split's input.
            A file is never cut, so a split gets at most one group per file.
        target_bytes: input bytes per group when `num_shards` is None.
    """
    groups = []
    for split in sorted({f.split for f in files}):
        mine = sorted((f for f in files if f.split == split), key=lambda f: f.path)
        # Empty files weigh one byte, so a split of empty files still spreads over groups.
        weights = np.array([max(f.size, 1) for f in mine], np.float64)
        total = float(weights.sum())
        count = num_shards or max(1, math.ceil(sum(f.size for f in mine) / target_bytes))
        count = min(count, len(mine))
        # A file goes to the group its middle byte falls in: contiguous, and no group is
        # empty when count <= files and sizes are alike.
        middles = np.cumsum(weights) - weights / 2
        assignment = np.minimum((middles * count / total).astype(int), count - 1)
        for index, group in enumerate(sorted(set(assignment.tolist()))):
            members = [f for f, a in zip(mine, assignment) if a == group]
            groups.append(ShardGroup(split, index, [f.path for f in members], sum(f.size for f in members)))
    return groups
