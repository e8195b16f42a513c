"""Damaged frame-level inputs: a damaged stretch costs only the records it touches.

Real files in tmp_path, written with TensorFlow's own TFRecord writer, damaged the way
disks and truncated downloads damage them, then converted by the real job (or read by
the real reader, where many damage points are tried).
"""

import gzip
import json
import os
import zlib

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import frames_to_tfrecords as job
from beam_jobs.yt8m_frames import Damaged, Invalid, read_records
from tfrecords import yt8m_frame
from tfrecords.manifest import REJECTED

BEAM = ["--runner=FnApiRunner"]
# Bytes of TFRecord framing around each record: length (8), its CRC (4), the data's CRC (4).
FRAMING = 16


def _videos(count, frames=3, first=0):
    rng = np.random.default_rng(first)
    return [yt8m_frame.encode(f"v{i:02d}".encode(), [i % 5],
                              rng.integers(0, 256, (frames, 1024), np.uint8),
                              rng.integers(0, 256, (frames, 128), np.uint8))
            for i in range(first, first + count)]


def _tfrecord_bytes(tmp_path, records, compression=""):
    path = str(tmp_path / "scratch.tfrecord")
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type=compression)) as writer:
        for record in records:
            writer.write(record)
    data = open(path, "rb").read()
    os.remove(path)
    return data


def _starts(records):
    """Byte offset of each record's length field in an uncompressed TFRecord file."""
    return np.cumsum([0] + [FRAMING + len(r) for r in records])[:-1].tolist()


def _convert(tmp_path, *args):
    out = tmp_path / "out"
    manifest = job.run(["--input", str(tmp_path / "raw" / "*"), "--output", str(out), "--split", "train",
                        "--num-shards", "1", *args, *BEAM])
    rejected = [json.loads(line) for line in (out / REJECTED).read_text().splitlines()]
    written = [r.numpy() for shard in manifest["splits"].get("train", {}).get("shards", [])
               for r in tf.data.TFRecordDataset(str(out / shard))]
    assert manifest["input_records"] == len(written) + manifest["rejected"] + manifest["filtered"]
    assert manifest["rejected"] == len(rejected)
    return manifest, rejected, written


def _raw(tmp_path, name, data):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    (raw / name).write_bytes(bytes(data))
    return str(raw / name)


# --- the job, one kind of damage per test --------------------------------------------------------


def test_flipped_byte_in_record_data_costs_only_that_record(tmp_path):
    records = _videos(10)
    starts = _starts(records)
    data = bytearray(_tfrecord_bytes(tmp_path, records))
    data[starts[2] + 12 + 500] ^= 0x40  # inside the 3rd record's data
    path = _raw(tmp_path, "train0000.tfrecord", data)

    manifest, rejected, written = _convert(tmp_path)

    assert written == records[:2] + records[3:]
    assert manifest["input_records"] == 10 and manifest["rejected"] == 1
    [letter] = rejected
    assert (letter["file"], letter["offset"], letter["length"]) == (path, starts[2], starts[3] - starts[2])
    assert "data checksum" in letter["reason"]


def test_flipped_byte_in_a_length_field_costs_only_that_record(tmp_path):
    records = _videos(10)
    starts = _starts(records)
    data = bytearray(_tfrecord_bytes(tmp_path, records))
    data[starts[2] + 1] ^= 0x01  # the 3rd record's length now claims 256 bytes more
    _raw(tmp_path, "train0000.tfrecord", data)

    manifest, rejected, written = _convert(tmp_path)

    assert written == records[:2] + records[3:]
    assert [(r["offset"], r["length"]) for r in rejected] == [(starts[2], starts[3] - starts[2])]
    assert "length checksum" in rejected[0]["reason"]


def test_stray_bytes_between_records_lose_no_record(tmp_path):
    records = _videos(10)
    starts = _starts(records)
    data = _tfrecord_bytes(tmp_path, records)
    stray = b"\x00\x00\x00\x00stray bytes\x00\x00\x00\x00\x00\x00\x00\x00"
    _raw(tmp_path, "train0000.tfrecord", data[:starts[5]] + stray + data[starts[5]:])

    manifest, rejected, written = _convert(tmp_path)

    assert written == records
    assert manifest["input_records"] == 11  # the stray stretch counts as one (rejected) input
    assert [(r["offset"], r["length"]) for r in rejected] == [(starts[5], len(stray))]


def test_truncated_tail_is_one_dead_letter(tmp_path):
    records = _videos(10)
    starts = _starts(records)
    data = _tfrecord_bytes(tmp_path, records)[:-20]
    _raw(tmp_path, "train0000.tfrecord", data)

    manifest, rejected, written = _convert(tmp_path)

    assert written == records[:9] and manifest["input_records"] == 10
    assert [(r["offset"], r["length"]) for r in rejected] == [(starts[9], len(data) - starts[9])]
    assert "truncated" in rejected[0]["reason"]


def test_gz_file_that_is_not_gzip_is_one_dead_letter_and_the_group_goes_on(tmp_path):
    good = _videos(2, first=20)
    not_gzip = _raw(tmp_path, "train0000.tfrecord.gz", _tfrecord_bytes(tmp_path, _videos(3)))
    _raw(tmp_path, "train0001.tfrecord", _tfrecord_bytes(tmp_path, good))

    manifest, rejected, written = _convert(tmp_path)

    assert written == good and manifest["input_records"] == 3
    assert [(r["file"], r["offset"]) for r in rejected] == [(not_gzip, 0)]
    assert rejected[0]["reason"].startswith("not a gzip file")


def test_gzip_truncated_mid_stream_keeps_every_record_before_the_cut(tmp_path):
    records = _videos(10)
    starts = _starts(records)
    compressed = _tfrecord_bytes(tmp_path, records, "GZIP")
    cut = compressed[:len(compressed) // 2]
    _raw(tmp_path, "train0000.tfrecord.gz", cut)
    decodable = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut))
    kept = sum(start + FRAMING + len(r) <= decodable for start, r in zip(starts, records))
    assert 2 <= kept <= 8

    manifest, rejected, written = _convert(tmp_path)

    assert written == records[:kept] and manifest["input_records"] == kept + 1
    assert [(r["offset"], r["length"]) for r in rejected] == [(starts[kept], None)]
    assert "truncated" in rejected[0]["reason"]


def test_gzip_stream_broken_in_its_second_member_keeps_the_first(tmp_path):
    # Zero frames compress well, so the damage lands in Huffman-coded data, not a stored block.
    records = [yt8m_frame.encode(f"z{i}".encode(), [1], np.zeros([40, 1024], np.uint8),
                                 np.zeros([40, 128], np.uint8)) for i in range(10)]
    first = gzip.compress(_tfrecord_bytes(tmp_path, records[:5]))
    second = bytearray(gzip.compress(_tfrecord_bytes(tmp_path, records[5:])))
    middle = len(second) // 2
    second[middle:middle + 16] = b"\xff" * 16
    _raw(tmp_path, "train0000.tfrecord.gz", first + second)

    manifest, rejected, written = _convert(tmp_path)

    assert written[:5] == records[:5]
    assert all(r in records[5:] for r in written[5:])
    assert rejected and rejected[-1]["length"] is None and "gzip" in rejected[-1]["reason"]
    assert manifest["input_records"] == len(written) + len(rejected)


def test_gzip_checksum_failing_at_the_end_keeps_every_record_decoded(tmp_path):
    # The whole file inflates in one zlib call, whose output zlib drops when the trailer's
    # CRC-32 fails: the reader must replay it to keep the records.
    records = _videos(10)
    plain = _tfrecord_bytes(tmp_path, records)
    data = bytearray(gzip.compress(plain))
    data[-8] ^= 0xFF  # the trailer's CRC-32 of the uncompressed data
    _raw(tmp_path, "train0000.tfrecord.gz", data)

    manifest, rejected, written = _convert(tmp_path)

    assert written == records and manifest["input_records"] == 11
    assert [(r["offset"], r["length"]) for r in rejected] == [(len(plain), None)]
    assert "incorrect data check" in rejected[0]["reason"]


def test_gzip_inputs_with_several_members_read_whole(tmp_path):
    records = _videos(6)
    _raw(tmp_path, "train0000.tfrecord.gz", gzip.compress(_tfrecord_bytes(tmp_path, records[:4]))
         + gzip.compress(_tfrecord_bytes(tmp_path, records[4:])))
    manifest, rejected, written = _convert(tmp_path)
    assert written == records and rejected == []


# --- the reader, many damage points and block sizes -----------------------------------------------


def _read(path, block_size):
    items = list(read_records(path, "official", block_size=block_size))
    return ([(offset, raw) for offset, raw in items if not isinstance(raw, Invalid)],
            [(offset, raw) for offset, raw in items if isinstance(raw, Invalid)])


@pytest.mark.parametrize("block_size", [1, 5, 13, 4096, 1 << 24])
def test_every_single_flipped_byte_costs_exactly_its_own_record(tmp_path, block_size):
    records = _videos(4, frames=1)
    starts = _starts(records)
    data = _tfrecord_bytes(tmp_path, records)
    rng = np.random.default_rng(block_size)
    # Every byte of the framing of record 2, and some of its data.
    positions = list(range(starts[1], starts[1] + 12)) + list(range(starts[2] - 4, starts[2]))
    positions += rng.integers(starts[1] + 12, starts[2] - 4, 6).tolist()
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 1 << int(rng.integers(8))
        path = _raw(tmp_path, "train0000.tfrecord", damaged)
        good, bad = _read(path, block_size)
        assert good == [(s, r) for s, r in zip(starts, records) if s != starts[1]], position
        assert [(offset, error.length) for offset, error in bad] == [(starts[1], starts[2] - starts[1])], position
        assert all(isinstance(error, Damaged) for _, error in bad)


@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_small_blocks_read_what_big_blocks_read(tmp_path, block_size):
    records = _videos(6, frames=2)
    starts = _starts(records)
    data = bytearray(_tfrecord_bytes(tmp_path, records))
    data[starts[1] + 300] ^= 0xFF
    # A zero-filled stretch (what a crash before the data reached the disk leaves) and junk.
    data = bytes(data[:starts[3]]) + bytes(100) + b"junk" * 25 + bytes(data[starts[3]:-9])
    plain = _raw(tmp_path, "train0000.tfrecord", data)
    squeezed = _raw(tmp_path, "train0001.tfrecord.gz", gzip.compress(data))
    for path in (plain, squeezed):
        good, bad = _read(path, block_size)
        assert (good, [(o, e.length, str(e)) for o, e in bad]) == (
            _read(path, 1 << 24)[0], [(o, e.length, str(e)) for o, e in _read(path, 1 << 24)[1]])
        assert [r for _, r in good] == [records[0], records[2], records[3], records[4]]
        assert [o for o, _ in bad] == [starts[1], starts[3], starts[5] + 200]
