import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import frames_to_tfrecords as job
from beam_jobs.yt8m_frames import InputFile, LabelRule, ShardGroup, auto_split, plan_groups
from tfrecords import UserError, yt8m_frame
from tfrecords.manifest import REJECTED, read_classes, read_manifest

BEAM = ["--runner=FnApiRunner"]


def _pipeline():
    return BeamTestPipeline(options=PipelineOptions(BEAM))


# --- inputs written with plain protobuf code, not with yt8m_frame.encode -------------------------


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _official(video_id, labels, frames=6, seed=0, segments=None, rgb_width=1024, audio_width=128,
              audio_frames=None, drop=None):
    """An official frame-level record, with optional defects."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (frames, rgb_width), dtype=np.uint8)
    audio = rng.integers(0, 256, (frames if audio_frames is None else audio_frames, audio_width), dtype=np.uint8)
    context = {"id": _bytes([video_id.encode()])}
    if labels is not None:
        context["labels"] = _ints(labels)
    if segments is not None:
        context["segment_labels"] = _ints([s[0] for s in segments])
        context["segment_start_times"] = _ints([s[1] for s in segments])
        context["segment_scores"] = _floats([s[2] for s in segments])
    lists = {"rgb": tf.train.FeatureList(feature=[_bytes([row.tobytes()]) for row in rgb]),
             "audio": tf.train.FeatureList(feature=[_bytes([row.tobytes()]) for row in audio])}
    if drop:
        del lists[drop]
    example = tf.train.SequenceExample(context=tf.train.Features(feature=context),
                                       feature_lists=tf.train.FeatureLists(feature_list=lists))
    return example.SerializeToString()


def _mediapipe(data_path, frames=5, seed=0, labels=None, media_id=None, rgb_width=1024):
    """What MediaPipe's YouTube-8M extractor writes: MediaSequence float features per frame."""
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(-2, 2, (frames, rgb_width)).astype(np.float32)
    audio = rng.uniform(-2, 2, (frames, 128)).astype(np.float32)
    context = {"clip/data_path": _bytes([data_path.encode()]),
               "clip/start/timestamp": _ints([0]), "clip/end/timestamp": _ints([frames * 1000000])}
    if media_id:
        context["clip/media_id"] = _bytes([media_id.encode()])
    if labels:
        context["clip/label/index"] = _ints(labels)
    timestamps = [_ints([t * 1000000]) for t in range(frames)]
    lists = {"RGB/feature/floats": tf.train.FeatureList(feature=[_floats(row) for row in rgb]),
             "RGB/feature/timestamp": tf.train.FeatureList(feature=timestamps),
             "AUDIO/feature/floats": tf.train.FeatureList(feature=[_floats(row) for row in audio]),
             "AUDIO/feature/timestamp": tf.train.FeatureList(feature=timestamps)}
    example = tf.train.SequenceExample(context=tf.train.Features(feature=context),
                                       feature_lists=tf.train.FeatureLists(feature_list=lists))
    return example.SerializeToString(), rgb, audio


def _write(path, records, compression=""):
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type=compression)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _records(out, manifest, split):
    compression = "GZIP" if manifest["compression"] == "gzip" else ""
    return [r.numpy() for shard in manifest["splits"][split]["shards"]
            for r in tf.data.TFRecordDataset(os.path.join(out, shard), compression_type=compression)]


def _parsed(record, num_classes):
    """The record as the reader parses it, frames dequantized (as the models see them)."""
    features = yt8m_frame.parse(tf.constant(record), num_classes=num_classes)
    features.update({key: yt8m_frame.dequantize(features[key]) for key in (yt8m_frame.RGB, yt8m_frame.AUDIO)})
    return {k: v.numpy() for k, v in features.items()}


def _frames_of(record, key):
    example = tf.train.SequenceExample.FromString(record)
    frames = example.feature_lists.feature_list[key].feature
    return np.stack([np.frombuffer(f.bytes_list.value[0], np.uint8) for f in frames])


def _starts(records):
    """Byte offset of each record in a TFRecord file (the offsets dead letters name)."""
    return np.cumsum([0] + [16 + len(r) for r in records])[:-1].tolist()


def _invariant(manifest):
    written = sum(s["records"] for s in manifest["splits"].values())
    return manifest["input_records"] == written + manifest["rejected"] + manifest.get("filtered", 0)


# --- tests -------------------------------------------------------------------------------------


def test_plain_official_records_come_out_unchanged_and_parse(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    train = [_official(f"t{i:03d}", [i % 4, 10 + i], frames=4 + i, seed=i) for i in range(5)]
    rated = _official("v000", [2, 7], frames=10, seed=9, segments=[(2, 0, 1.0), (2, 5, 0.0), (7, 5, 1.0)])
    unlabelled = _official("x000", None, frames=3, seed=11)
    _write(raw / "train0000.tfrecord", train[:3])
    _write(raw / "train0001.tfrecord", train[3:])
    _write(raw / "validate0000.tfrecord", [rated])
    _write(raw / "test0000.tfrecord", [unlabelled])
    out = str(tmp_path / "out")

    manifest = job.run(["--input", str(raw / "*.tfrecord"), "--output", out, *BEAM])

    assert manifest == read_manifest(out, yt8m_frame.KIND, yt8m_frame.SCHEMA_VERSION)
    assert list(manifest["splits"]) == ["train", "validate", "test"]
    assert manifest["input_records"] == 7 and manifest["rejected"] == 0 and manifest["filtered"] == 0
    # Official records that need no change are copied byte for byte, in input order.
    assert _records(out, manifest, "train") == train
    assert _records(out, manifest, "validate") == [rated] and _records(out, manifest, "test") == [unlabelled]
    assert manifest["num_classes"] == 15  # max label 14 + 1: labels keep their ids
    assert [(c["class_index"], c["category_id"]) for c in read_classes(out)] == [(i, i) for i in range(15)]

    features = _parsed(_records(out, manifest, "validate")[0], manifest["num_classes"])
    rgb = _frames_of(rated, "rgb")
    np.testing.assert_allclose(features["rgb"][:10], rgb * (4 / 255) + 4 / 512 - 2, atol=1e-5)
    assert features["num_frames"] == 10 and features["id"] == b"v000"
    assert np.flatnonzero(features["labels"]).tolist() == [2, 7]
    assert features["segment_labels"].tolist() == [2, 2, 7]
    assert features["segment_start_times"].tolist() == [0, 5, 5]
    assert features["segment_scores"].tolist() == [1.0, 0.0, 1.0]
    assert _parsed(_records(out, manifest, "test")[0], 15)["labels"].sum() == 0


def test_vocabulary_filters_and_remaps_labels_and_segment_labels(tmp_path):
    records = [
        _official("keep", [5, 900, 3], seed=1),  # -> [0, 2]; 3 is dropped
        _official("gone", [7], seed=2),  # no label in the vocabulary: filtered
        _official("rate", [5, 7], frames=10, seed=3, segments=[(7, 0, 1.0), (5, 0, 0.0), (5, 5, 1.0)]),
        _official("test", None, seed=4),  # unlabelled: kept
    ]
    inputs = _write(tmp_path / "part.tfrecord", records)
    vocabulary = tmp_path / "segment_vocabulary.csv"
    vocabulary.write_text("Index\n900\n5\n42\n")
    names = tmp_path / "vocabulary.csv"
    names.write_text("Index,TrainVideoCount,KnowledgeGraphId,Name\n5,10,/m/05,Five\n42,3,/m/42,Forty-two\n")
    out = str(tmp_path / "out")

    manifest = job.run(["--input", inputs, "--output", out, "--split", "train", "--vocabulary", str(vocabulary),
                        "--classes", str(names), *BEAM])

    assert manifest["filtered"] == 1 and manifest["rejected"] == 0 and _invariant(manifest)
    assert manifest["num_classes"] == 3
    assert [(c["class_index"], c["category_id"], c["Name"]) for c in read_classes(out)] == [
        (0, 5, "Five"), (1, 42, "Forty-two"), (2, 900, "")]
    keep, rate, test = (_parsed(r, 3) for r in _records(out, manifest, "train"))
    assert [keep["id"], rate["id"], test["id"]] == [b"keep", b"rate", b"test"]
    assert keep["label_ids"].tolist() == [0, 2] and rate["label_ids"].tolist() == [0]
    # The rating of label 7 (not in the vocabulary) is dropped; 5 becomes 0.
    assert rate["segment_labels"].tolist() == [0, 0] and rate["segment_start_times"].tolist() == [0, 5]
    assert rate["segment_scores"].tolist() == [0.0, 1.0]
    assert test["label_ids"].tolist() == []
    # Rebuilt records are what yt8m_frame.encode writes, frames untouched.
    rebuilt = _records(out, manifest, "train")[1]
    assert rebuilt == yt8m_frame.encode(b"rate", [0], _frames_of(records[2], "rgb"), _frames_of(records[2], "audio"),
                                        [0, 0], [0, 5], [0.0, 1.0])


def test_classes_file_fixes_num_classes_and_rejects_unknown_labels(tmp_path):
    inputs = _write(tmp_path / "train0.tfrecord", [_official("a", [1]), _official("b", [12])])
    names = tmp_path / "vocabulary.csv"
    names.write_text("Index,Name\n" + "".join(f"{i},Class {i}\n" for i in range(10)))
    out = tmp_path / "out"
    manifest = job.run(["--input", inputs, "--output", str(out), "--classes", str(names), *BEAM])
    assert manifest["num_classes"] == 10 and manifest["splits"]["train"]["records"] == 1
    assert read_classes(str(out))[3]["Name"] == "Class 3"
    rejected = [json.loads(line) for line in (out / REJECTED).read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejected] == [("b", "label 12 is not in the classes file")]


def test_huge_label_without_classes_is_a_dead_letter_not_a_huge_classes_csv(tmp_path):
    # Without a classes file every id up to the largest label becomes a class: 2**40 would
    # mean 2**40 rows in classes.csv (it used to end in MemoryError after the pipeline ran).
    huge = 2 ** 40
    inputs = _write(tmp_path / "train0.tfrecord", [
        _official("a", [1]), _official("b", [huge]), _official("c", [2], segments=[(huge, 0, 1.0)])])
    out = tmp_path / "out"
    manifest = job.run(["--input", inputs, "--output", str(out), *BEAM])
    assert manifest["splits"]["train"]["records"] == 1 and manifest["num_classes"] == 2 and _invariant(manifest)
    rejected = [json.loads(line) for line in (out / REJECTED).read_text().splitlines()]
    assert [r["id"] for r in rejected] == ["b", "c"]
    for letter in rejected:
        assert letter["reason"].startswith(f"label {huge} is above {job.MAX_LABEL_ID}")
        assert "--vocabulary" in letter["reason"]


def test_classes_file_with_a_huge_index_is_a_user_error(tmp_path):
    inputs = _write(tmp_path / "train0.tfrecord", [_official("a", [1])])
    names = tmp_path / "vocabulary.csv"
    names.write_text(f"Index,Name\n1,One\n{2 ** 40},Huge\n")
    with pytest.raises(UserError, match=f"Index {2 ** 40}.*--vocabulary"):
        job.run(["--input", inputs, "--output", str(tmp_path / "out"), "--classes", str(names), *BEAM])
    # With --vocabulary the ids are renumbered, so any id is fine.
    manifest = job.run(["--input", inputs, "--output", str(tmp_path / "remapped"), "--vocabulary", str(names), *BEAM])
    assert manifest["num_classes"] == 2 and manifest["splits"]["train"]["records"] == 1


def test_mediapipe_float_features_become_official_quantized_records(tmp_path):
    first, rgb1, audio1 = _mediapipe("/videos/abcd.mp4", frames=5, seed=1, labels=[3])
    second, rgb2, audio2 = _mediapipe("/videos/whatever.mp4", frames=7, seed=2, media_id="wxyz")
    raw = tmp_path / "raw"
    raw.mkdir()
    _write(raw / "features.tfrecord", [first])
    (raw / "one.pb").write_bytes(second)  # the extractor's own output: one record per file
    out = str(tmp_path / "out")

    manifest = job.run(["--input", str(raw / "*"), "--output", out, "--format", "mediapipe", "--split", "test", *BEAM])

    assert manifest["splits"]["test"]["records"] == 2 and manifest["rejected"] == 0
    converted = {}
    for record in _records(out, manifest, "test"):
        features = _parsed(record, num_classes=4)
        converted[features["id"]] = (features, record)
    (a, record_a), (b, _) = converted[b"abcd"], converted[b"wxyz"]
    assert a["label_ids"].tolist() == [3] and b["label_ids"].tolist() == []
    for features, rgb, audio in ((a, rgb1, audio1), (b, rgb2, audio2)):
        n = len(rgb)
        assert features["num_frames"] == n
        assert np.abs(features["rgb"][:n] - rgb).max() <= yt8m_frame.SCALE
        assert np.abs(features["audio"][:n] - audio).max() <= yt8m_frame.SCALE
    assert record_a == yt8m_frame.encode(b"abcd", [3], yt8m_frame.quantize(rgb1), yt8m_frame.quantize(audio1))


def test_convert_groups_rejects_bad_records_and_keeps_every_good_one(tmp_path):
    good = [_official(f"g{i}", [i], seed=i) for i in range(4)]
    bad = [b"\xff\xfe not a protobuf",
           _official("noaudio", [1], drop="audio"),
           _official("wide", [1], rgb_width=1000),
           _official("counts", [1], frames=6, audio_frames=5)]
    first = _write(tmp_path / "a.tfrecord", [good[0], bad[0], good[1], bad[1]])
    second = _write(tmp_path / "b.tfrecord", [bad[2], good[2], bad[3], good[3]])
    at_first, at_second = _starts([good[0], bad[0], good[1], bad[1]]), _starts([bad[2], good[2], bad[3], good[3]])
    mediapipe_bad = _write(tmp_path / "m.tfrecord", [_mediapipe("/v/narrow.mp4", rgb_width=1000)[0]])
    groups = [ShardGroup("train", 0, [first, second], 0)]
    out = str(tmp_path / "out")

    with _pipeline() as p:
        reports, rejected = (p | "Official" >> beam.Create(groups)
                             | "ConvertOfficial" >> job.ConvertGroups(out, "official"))
        mp_reports, mp_rejected = (p | "MediaPipe" >> beam.Create([ShardGroup("test", 0, [mediapipe_bad], 0)])
                                   | "ConvertMediaPipe" >> job.ConvertGroups(out, "mediapipe"))
        assert_that(rejected | beam.Map(lambda r: (r["file"], r["offset"], r["id"], r["reason"])), equal_to([
            (first, at_first[1], None, "record does not parse: DecodeError: Error parsing message with type "
                                       "'tensorflow.SequenceExample'"),
            (first, at_first[3], "noaudio", "missing feature list audio"),
            (second, 0, "wide", "rgb frame 0 has 1000 bytes, expected 1024"),
            (second, at_second[2], "counts", "frame counts differ: 6 rgb frames, 5 audio frames"),
        ]), label="rejected")
        assert_that(reports | beam.Map(lambda r: (r["records"], r["read"], r["filtered"], r["max_label"])),
                    equal_to([(4, 8, 0, 3)]), label="reports")
        assert_that(mp_rejected | beam.Map(lambda r: (r["id"], r["reason"])), equal_to([
            ("narrow", "RGB/feature/floats frame 0 has 1000 floats, expected 1024")]), label="mediapipe")
        assert_that(mp_reports | beam.Map(lambda r: (r["path"], r["read"])), equal_to([(None, 1)]), label="mp_reports")
    shard = os.path.join(out, "_tmp", "train-00000.tfrecord")
    assert [r.numpy() for r in tf.data.TFRecordDataset(shard)] == good


def test_corrupt_file_tail_is_one_dead_letter_in_rejected_jsonl(tmp_path):
    records = [_official(f"v{i}", [i]) for i in range(3)]
    path = _write(tmp_path / "train0000.tfrecord", records)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-20])  # cut into the last record
    _write(tmp_path / "train0001.tfrecord", [b"garbage", records[0]])
    out = tmp_path / "out"
    manifest = job.run(["--input", str(tmp_path / "train*"), "--output", str(out), *BEAM])
    lines = [json.loads(line) for line in (out / REJECTED).read_text().splitlines()]
    # Offsets are byte offsets in the input file, so rejected.jsonl sorts in file order.
    tail = _starts(records)[2]
    assert [(os.path.basename(r["file"]), r["offset"], r.get("length")) for r in lines] == [
        ("train0000.tfrecord", tail, len(data) - 20 - tail), ("train0001.tfrecord", 0, None)]
    assert "truncated" in lines[0]["reason"]
    assert lines[1]["reason"].startswith("record does not parse")
    assert manifest["splits"]["train"]["records"] == 3 and manifest["input_records"] == 5 and _invariant(manifest)


def test_shards_are_contiguous_gzip_and_deterministic(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    records = {i: [_official(f"{i}-{j}", [j], seed=10 * i + j) for j in range(1 + i % 3)] for i in range(5)}
    for i, part in records.items():
        _write(raw / f"train{i:04d}.tfrecord", part)
    _write(raw / "validate0000.tfrecord.gz", [_official("val", [1])], compression="GZIP")
    args = ["--input", str(raw / "train*"), "--input", str(raw / "validate*"), "--num-shards", "2",
            "--compression", "gzip", *BEAM]

    manifest = job.run(args + ["--output", str(tmp_path / "a")])
    job.run(args + ["--output", str(tmp_path / "b")])

    assert manifest["splits"]["train"]["shards"] == [f"train-0000{i}-of-00002.tfrecord.gz" for i in range(2)]
    assert manifest["splits"]["validate"]["shards"] == ["validate-00000-of-00001.tfrecord.gz"]
    # No shuffle: the shards, in order, hold the input files' records in sorted file order.
    assert _records(str(tmp_path / "a"), manifest, "train") == [r for i in sorted(records) for r in records[i]]
    for name in manifest["splits"]["train"]["shards"] + manifest["splits"]["validate"]["shards"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "classes.csv").read_bytes() == (tmp_path / "b" / "classes.csv").read_bytes()
    assert not (tmp_path / "a" / "_tmp").exists()
    assert {f["split"] for f in manifest["inputs"]} == {"train", "validate"}


def test_plan_groups_cuts_sorted_files_into_contiguous_groups_of_similar_bytes():
    sizes = [100, 100, 100, 100, 400, 100, 100]
    train = [InputFile(f"gs://b/train{i:04d}.tfrecord", size, "train") for i, size in enumerate(sizes)]
    test = InputFile("gs://b/test0000.tfrecord", 50, "test")
    groups = plan_groups(list(reversed(train)) + [test], num_shards=3, target_bytes=1 << 30)
    assert groups == [ShardGroup("test", 0, [test.path], 50),
                      ShardGroup("train", 0, [f.path for f in train[:3]], 300),
                      ShardGroup("train", 1, [f.path for f in train[3:5]], 500),
                      ShardGroup("train", 2, [f.path for f in train[5:]], 200)]
    # Without --num-shards: one group per target_bytes (1000 / 300 -> 4).
    assert [g.size for g in plan_groups(train, num_shards=None, target_bytes=300)] == [200, 200, 400, 200]
    assert len(plan_groups(train[:2], num_shards=9, target_bytes=1)) == 2  # never more groups than files


def test_auto_split_reads_the_official_file_names():
    assert auto_split("gs://us.data.yt8m.org/3/frame/validate/validate1234.tfrecord") == "validate"
    assert auto_split("/data/train0093.tfrecord") == "train"
    assert auto_split("/data/trainpj.tfrecord") == "train"
    assert auto_split("/data/test-00001-of-00004.tfrecord.gz") == "test"
    with pytest.raises(UserError, match="pass --split NAME"):
        auto_split("/data/features.pb")


def test_label_rule_numbers_the_vocabulary_in_sorted_order():
    assert LabelRule.from_vocabulary([900, 5, 42, 5]).remap == {5: 0, 42: 1, 900: 2}


@pytest.mark.parametrize("args, message", [
    (["--input", "DIR/nothing*.tfrecord"], "no input matches"),
    (["--input", "INPUT", "--num-shards", "0"], "--num-shards must be at least 1"),
    (["--input", "INPUT", "--vocabulary", "DIR/missing.csv"], "vocabulary file not found"),
    (["--input", "INPUT", "--vocabulary", "DIR/no_index.csv"], "has no Index column"),
    (["--input", "INPUT", "--vocabulary", "DIR/bad_index.csv"], "Index 'x' is not an integer"),
    (["--input", "INPUT", "--split", "a/b"], "--split must be auto or a name"),
    (["--input", "DIR/other.tfrecord"], "cannot tell the split"),
    (["--input", "INPUT", "--format", "jpeg"], "invalid choice: 'jpeg'"),
    (["--output", "OUT"], "the following arguments are required: --input"),
])
def test_flag_errors(tmp_path, args, message):
    _write(tmp_path / "train0000.tfrecord", [_official("a", [1])])
    _write(tmp_path / "other.tfrecord", [_official("a", [1])])
    (tmp_path / "no_index.csv").write_text("Name\nx\n")
    (tmp_path / "bad_index.csv").write_text("Index\nx\n")
    replace = {"DIR": str(tmp_path), "INPUT": str(tmp_path / "train0000.tfrecord"), "OUT": str(tmp_path / "out")}
    args = [next((a.replace(k, v) for k, v in replace.items() if a.startswith(k)), a) for a in args]
    if "--output" not in args:
        args += ["--output", str(tmp_path / "out")]
    with pytest.raises(UserError) as error:
        job.run(args)
    assert message in str(error.value)


def test_refuses_non_empty_output_and_inputs_inside_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    inside = _write(out / "train0000.tfrecord", [_official("a", [1])])
    with pytest.raises(UserError, match="inside the output directory"):
        job.run(["--input", inside, "--output", str(out), "--overwrite"])
    outside = _write(tmp_path / "train0000.tfrecord", [_official("a", [1])])
    with pytest.raises(UserError, match="not empty"):
        job.run(["--input", outside, "--output", str(out)])
    assert os.path.exists(inside)


def test_help_lists_the_job_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        job.run(["--help"], prog="yt8m-keras convert frames")
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: yt8m-keras convert frames")
    for flag in ("--input", "--output", "--format", "--split", "--vocabulary", "--classes", "--num-shards",
                 "--compression", "--overwrite"):
        assert flag in text
