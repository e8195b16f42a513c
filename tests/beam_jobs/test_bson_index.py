import bson
import numpy as np

from beam_jobs.bson_index import build_index, iter_documents, read_range, split_ranges


def _write(path, documents, tail=b""):
    blobs = [bson.encode(d) for d in documents]
    path.write_bytes(b"".join(blobs) + tail)
    return blobs


def test_index_finds_every_document(tmp_path):
    blobs = _write(tmp_path / "a.bson", [{"_id": i, "x": "y" * i} for i in range(50)])
    index, tail = build_index(str(tmp_path / "a.bson"))
    assert tail is None
    assert index[:, 1].tolist() == [len(b) for b in blobs]
    assert index[:, 0].tolist() == np.cumsum([0] + [len(b) for b in blobs[:-1]]).tolist()


def test_truncated_tail_is_reported_with_its_offset(tmp_path):
    blobs = _write(tmp_path / "a.bson", [{"_id": i} for i in range(3)], tail=bson.encode({"_id": 9})[:-4])
    index, tail = build_index(str(tmp_path / "a.bson"))
    assert len(index) == 3
    assert tail.offset == sum(len(b) for b in blobs)
    assert "truncated document" in tail.reason


def test_invalid_length_prefix_ends_the_walk(tmp_path):
    blobs = _write(tmp_path / "a.bson", [{"_id": 1}], tail=b"\x01\x00\x00\x00garbage")
    index, tail = build_index(str(tmp_path / "a.bson"))
    assert len(index) == 1 and tail.offset == len(blobs[0]) and "invalid document length 1" in tail.reason


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
