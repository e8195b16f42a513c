import datetime
import struct

import bson
import numpy as np
import pytest

from beam_jobs.bson_index import build_index, gaps_in, iter_documents, read_documents, read_range, split_ranges


def _write(path, documents, tail=b""):
    blobs = [bson.encode(d) for d in documents]
    path.write_bytes(b"".join(blobs) + tail)
    return blobs


def _products(n):
    # Products shaped like Cdiscount's: nested documents that are valid BSON on their own.
    return [{"_id": i, "category_id": 7 + i % 3, "imgs": [{"picture": bytes([i % 251]) * (20 + i % 40)}] * (1 + i % 3)}
            for i in range(n)]


def _indexed_ids(path, index, gaps):
    ids = []
    for a, b in split_ranges(index, 3):
        ids += [bson.decode(bytes(raw))["_id"] for _, raw in read_documents(str(path), a, b, gaps_in(gaps, a, b))]
    return ids


def test_index_finds_every_document(tmp_path):
    blobs = _write(tmp_path / "a.bson", [{"_id": i, "x": "y" * i} for i in range(50)])
    index, gaps = build_index(str(tmp_path / "a.bson"))
    assert gaps == []
    assert index[:, 1].tolist() == [len(b) for b in blobs]
    assert index[:, 0].tolist() == np.cumsum([0] + [len(b) for b in blobs[:-1]]).tolist()


def test_every_bson_type_is_walked(tmp_path):
    document = {"_id": bson.ObjectId(), "f": 1.5, "s": "text", "d": {"a": 1}, "l": [1, "x"], "b": b"\x00\x01",
                "t": True, "dt": datetime.datetime(2020, 1, 1), "n": None, "r": bson.Regex("a.*b", "i"),
                "c": bson.Code("x", {"y": 1}), "ts": bson.Timestamp(1, 2), "i64": bson.Int64(5),
                "dec": bson.Decimal128("1.5"), "min": bson.MinKey(), "max": bson.MaxKey(), "i": 3}
    blobs = _write(tmp_path / "a.bson", [document, {"_id": 2}])
    index, gaps = build_index(str(tmp_path / "a.bson"))
    assert gaps == [] and index[:, 1].tolist() == [len(b) for b in blobs]


def test_truncated_tail_is_reported_with_its_offset(tmp_path):
    blobs = _write(tmp_path / "a.bson", [{"_id": i} for i in range(3)], tail=bson.encode({"_id": 9})[:-4])
    index, gaps = build_index(str(tmp_path / "a.bson"))
    assert len(index) == 3
    [gap] = gaps
    assert gap.offset == sum(len(b) for b in blobs) and gap.length == len(bson.encode({"_id": 9})) - 4
    assert "truncated document" in gap.reason and "to the end of the file" in gap.reason


def test_invalid_length_prefix_at_the_end(tmp_path):
    blobs = _write(tmp_path / "a.bson", [{"_id": 1}], tail=b"\x01\x00\x00\x00garbage")
    index, gaps = build_index(str(tmp_path / "a.bson"))
    assert len(index) == 1 and [(g.offset, g.length) for g in gaps] == [(len(blobs[0]), 11)]
    assert "invalid document length 1" in gaps[0].reason


def test_stray_bytes_cost_only_themselves(tmp_path):
    """37 stray bytes after document 10 of 1,000: one gap of 37 bytes, all 1,000 documents kept."""
    blobs = [bson.encode(d) for d in _products(1000)]
    stray = bytes(range(100, 137))
    path = tmp_path / "a.bson"
    path.write_bytes(b"".join(blobs[:10]) + stray + b"".join(blobs[10:]))
    index, gaps = build_index(str(path))
    at = sum(len(b) for b in blobs[:10])
    assert [(g.offset, g.length) for g in gaps] == [(at, 37)]
    assert len(index) == 1000 and index[10, 0] == at + 37
    assert _indexed_ids(path, index, gaps) == list(range(1000))


def test_plausible_stray_bytes_are_caught_by_the_document_structure(tmp_path):
    """A length prefix that fits and a closing NUL, but elements that do not fill the document."""
    blobs = [bson.encode(d) for d in _products(30)]
    stray = struct.pack("<i", 37) + b"\x10_id\x00\x05\x00\x00\x00" + b"\x02s\x00\x40\x00\x00\x00" + b"x" * 16 + b"\x00"
    assert len(stray) == 37
    path = tmp_path / "a.bson"
    path.write_bytes(b"".join(blobs[:10]) + stray + b"".join(blobs[10:]))
    index, gaps = build_index(str(path))
    assert [(g.offset, g.length) for g in gaps] == [(sum(len(b) for b in blobs[:10]), 37)]
    assert "malformed document" in gaps[0].reason
    assert _indexed_ids(path, index, gaps) == list(range(30))


@pytest.mark.parametrize("length, reason", [
    (0, "invalid document length 0"), (3, "invalid document length 3"), (-7, "invalid document length -7"),
    (1 << 30, "over BSON's 16 MiB limit"), ("past end", "truncated document"),
    ("on a later NUL", "malformed document"),
])
def test_bad_length_prefix_in_the_middle_costs_one_document(tmp_path, length, reason):
    blobs = [bson.encode(d) for d in _products(1000)]
    at = sum(len(b) for b in blobs[:500])
    data = bytearray(b"".join(blobs))
    if length == "past end":
        length = len(data) - at + 1
    elif length == "on a later NUL":
        # Plausible: the announced document ends on a NUL byte inside a later document.
        length = data.index(0, at + len(blobs[500]) + 7) - at + 1
    data[at:at + 4] = struct.pack("<i", length)
    path = tmp_path / "a.bson"
    path.write_bytes(bytes(data))
    index, gaps = build_index(str(path))
    assert [(g.offset, g.length) for g in gaps] == [(at, len(blobs[500]))]
    assert reason in gaps[0].reason and "skipped" in gaps[0].reason
    assert _indexed_ids(path, index, gaps) == [i for i in range(1000) if i != 500]


def test_damage_inside_a_document_does_not_resync_on_its_embedded_documents(tmp_path):
    """Bytes inserted in a product's first picture: its later pictures are valid BSON, but not products."""
    documents = [{"_id": i, "imgs": [{"picture": b"p" * 50}, {"picture": b"q" * 50}, {"picture": b"r" * 50}]}
                 for i in range(5)]
    blobs = [bson.encode(d) for d in documents]
    damaged = blobs[2][:40] + b"\xaa" * 11 + blobs[2][40:]
    path = tmp_path / "a.bson"
    path.write_bytes(b"".join(blobs[:2]) + damaged + b"".join(blobs[3:]))
    index, gaps = build_index(str(path))
    assert [(g.offset, g.length) for g in gaps] == [(len(blobs[0]) * 2, len(damaged))]
    assert _indexed_ids(path, index, gaps) == [0, 1, 3, 4]


def test_only_damage_gives_one_gap(tmp_path):
    path = tmp_path / "a.bson"
    path.write_bytes(b"\xee" * 1000)
    index, gaps = build_index(str(path))
    assert len(index) == 0 and [(g.offset, g.length) for g in gaps] == [(0, 1000)]


def test_resync_crosses_block_boundaries(tmp_path, monkeypatch):
    from beam_jobs import bson_index

    monkeypatch.setattr(bson_index, "_BLOCK", 64)
    blobs = [bson.encode(d) for d in _products(40)]
    path = tmp_path / "a.bson"
    path.write_bytes(b"".join(blobs[:10]) + b"\x11" * 150 + b"".join(blobs[10:20]) + b"\x00" * 3
                     + b"".join(blobs[20:]))
    index, gaps = build_index(str(path))
    assert [g.length for g in gaps] == [150, 3]
    assert _indexed_ids(path, index, gaps) == list(range(40))


def test_ranges_cover_all_documents_in_order(tmp_path):
    path = tmp_path / "a.bson"
    _write(path, [{"_id": i, "pad": b"x" * (i * 37 % 500)} for i in range(101)])
    index, _ = build_index(str(path))
    ranges = split_ranges(index, 7)
    assert len(ranges) in range(2, 8)
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    ids = [bson.decode(bytes(raw))["_id"] for a, b in ranges for _, raw in iter_documents(read_range(str(path), a, b), a)]
    assert ids == list(range(101))
