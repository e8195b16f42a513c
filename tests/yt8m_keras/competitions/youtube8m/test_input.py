import os

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import UserError
from tfrecords import yt8m_frame as kind
from tfrecords.manifest import shard_name, write_manifest
from yt8m_keras.competitions.youtube8m.input import (flatten_segments, segment_dataset, segment_inference_dataset, video_dataset,
                                  video_segment_dataset)

NUM_CLASSES = 6
MAX_FRAMES = 20
CONTEXT = 3
WINDOW = 5 + 2 * CONTEXT
NEGATIVE_WEIGHT = 0.1

# Every frame carries its video's number in rgb[:, 0] and its own index in rgb[:, 1], so a
# test can tell which video and which frames an entry holds after shuffling.
VIDEO_COLUMN, FRAME_COLUMN = 0, 1


def make_video(number, frames, labels, ratings=None):
    """A source video: quantized features with the markers, labels and (label, start, score) ratings."""
    rng = np.random.default_rng(number)
    rgb = rng.integers(0, 256, [frames, kind.RGB_SIZE], dtype=np.uint8)
    audio = rng.integers(0, 256, [frames, kind.AUDIO_SIZE], dtype=np.uint8)
    rgb[:, VIDEO_COLUMN] = number
    rgb[:, FRAME_COLUMN] = np.arange(frames)
    return {"id": f"video{number:03d}", "number": number, "labels": list(labels), "rgb": rgb, "audio": audio,
            "ratings": list(ratings or [])}


def encoded(video):
    ratings = video["ratings"]
    if not ratings:
        return kind.encode(video["id"], video["labels"], video["rgb"], video["audio"])
    return kind.encode(video["id"], video["labels"], video["rgb"], video["audio"],
                       segment_labels=[r[0] for r in ratings], segment_start_times=[r[1] for r in ratings],
                       segment_scores=[r[2] for r in ratings])


def plain_sequence_example(video):
    """The same video written without `yt8m_frame.encode`: as other YouTube-8M tools write it."""
    example = tf.train.SequenceExample()
    context = example.context.feature
    context["labels"].int64_list.value.extend(video["labels"])  # a different key order than encode
    for label, start, score in video["ratings"]:
        context["segment_labels"].int64_list.value.append(label)
        context["segment_start_times"].int64_list.value.append(start)
        context["segment_scores"].float_list.value.append(score)
    context["id"].bytes_list.value.append(video["id"].encode())
    lists = example.feature_lists.feature_list
    for row in video["audio"]:  # audio before rgb
        lists["audio"].feature.add().bytes_list.value.append(row.tobytes())
    for row in video["rgb"]:
        lists["rgb"].feature.add().bytes_list.value.append(row.tobytes())
    return example.SerializeToString()


def write_dataset(out, splits):
    """splits: name -> list of shards, each a list of serialized records; the real layout."""
    manifest_splits = {}
    for split, shards in splits.items():
        names = [shard_name(split, i, len(shards)) for i in range(len(shards))]
        for name, shard in zip(names, shards):
            with tf.io.TFRecordWriter(os.path.join(out, name)) as writer:
                for record in shard:
                    writer.write(record)
        manifest_splits[split] = {"records": sum(map(len, shards)), "shards": names}
    total = sum(split["records"] for split in manifest_splits.values())
    write_manifest(out, {"kind": kind.KIND, "schema_version": kind.SCHEMA_VERSION, "num_classes": NUM_CLASSES,
                         "input_records": total, "rejected": 0, "splits": manifest_splits,
                         "command": "test_yt8m_input"})
    return out


# The hand-built rated video: 23 frames, labels {0, 1}; class 9 is outside the vocabulary;
# the rating at 40 lies past the video's last frame.
RATED = make_video(0, 23, [0, 1], ratings=[(1, 5, 1.0), (2, 5, 0.0), (3, 5, 1.0), (0, 20, 0.0), (4, 0, 1.0),
                                           (9, 0, 1.0), (5, 40, 1.0)])
# start -> class -> (target, weight), from the loss contract.
UNKNOWN, MINED = (0.0, 0.0), (0.0, NEGATIVE_WEIGHT)
RATED_EXPECTED = {
    0: {0: UNKNOWN, 1: UNKNOWN, 2: MINED, 3: MINED, 4: (1.0, 1.0), 5: MINED},
    5: {0: UNKNOWN, 1: (1.0, 1.0), 2: (0.0, 1.0), 3: (1.0, 1.0), 4: MINED, 5: MINED},
    # Class 3 is positive at 5 but neither a video label nor positive here: mined.
    20: {0: (0.0, 1.0), 1: UNKNOWN, 2: MINED, 3: MINED, 4: MINED, 5: MINED},
}


@pytest.fixture(scope="module")
def videos():
    train = [make_video(n, 3 + (7 * n) % 35, sorted({n % NUM_CLASSES, (3 * n + 1) % NUM_CLASSES}))
             for n in range(1, 25)]
    rng = np.random.default_rng(0)
    validate = [RATED] + [make_video(n, 10 + 5 * (n % 4), [n % NUM_CLASSES],
                                     ratings=[(int(rng.integers(NUM_CLASSES)), 5 * int(s), float(rng.integers(2)))
                                              for s in rng.integers(0, 2, size=3)])
                          for n in range(30, 42)]
    validate.append(make_video(42, 12, [1]))  # no ratings: no segment entries
    test = [make_video(50 + i, frames, []) for i, frames in enumerate([4, 5, 9, 10, 23, 40, 17])]
    return {"train": train, "validate": validate, "test": test}


@pytest.fixture(scope="module")
def data_dir(videos, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("yt8m"))
    train, validate, test = videos["train"], videos["validate"], videos["test"]
    return write_dataset(out, {
        "train": [[encoded(v) for v in train[:12]], [encoded(v) for v in train[12:]]],
        "validate": [[encoded(v) for v in validate]],
        "test": [[encoded(v) for v in test[:4]], [encoded(v) for v in test[4:]]],
        # The same videos written by plain protobuf code.
        "plain": [[plain_sequence_example(v) for v in validate + test]],
        "encoded": [[encoded(v) for v in validate + test]],
    })


def marker(features, column):
    """The marker of a (quantized, uint8) frame or frames -> int."""
    return np.asarray(features)[..., column].astype(int)


def all_batches(ds):
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in ds]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)


def test_video_batches_have_static_shapes_and_dtypes(data_dir):
    features, labels = video_dataset(data_dir, "train", batch_size=4, max_frames=MAX_FRAMES).element_spec
    assert set(features) == {"rgb", "audio", "mask"}
    assert features["rgb"].shape == (4, MAX_FRAMES, 1024) and features["audio"].shape == (4, MAX_FRAMES, 128)
    assert features["mask"].shape == (4, MAX_FRAMES) and labels.shape == (4, NUM_CLASSES)
    # Frames travel quantized (a quarter of the bytes); the model dequantizes them.
    assert features["rgb"].dtype == tf.uint8 and features["audio"].dtype == tf.uint8
    assert features["mask"].dtype == tf.float32 and labels.dtype == tf.float32
    batch, _ = next(iter(video_dataset(data_dir, "train", batch_size=4, max_frames=MAX_FRAMES)))
    assert batch["rgb"].dtype == tf.uint8 and batch["audio"].dtype == tf.uint8


def test_video_features_are_quantized_padded_masked_and_labelled(data_dir, videos):
    by_number = {v["number"]: v for v in videos["train"]}
    seen = []
    for features, labels in all_batches(video_dataset(data_dir, "train", batch_size=5, max_frames=MAX_FRAMES,
                                                      shuffle=False, repeat=False, drop_remainder=False)):
        for rgb, audio, mask, label in zip(features["rgb"], features["audio"], features["mask"], labels):
            video = by_number[int(marker(rgb[0], VIDEO_COLUMN))]
            n = min(len(video["rgb"]), MAX_FRAMES)  # short videos padded, long ones truncated
            np.testing.assert_array_equal(rgb[:n], video["rgb"][:n])
            np.testing.assert_array_equal(audio[:n], video["audio"][:n])
            np.testing.assert_array_equal(mask, np.arange(MAX_FRAMES) < n)
            assert not rgb[n:].any() and not audio[n:].any()
            np.testing.assert_array_equal(label, np.isin(np.arange(NUM_CLASSES), video["labels"]))
            seen.append(video["number"])
    assert sorted(seen) == sorted(by_number)
    assert {len(v["rgb"]) < MAX_FRAMES for v in videos["train"]} == {True, False}


def test_video_stream_is_deterministic_for_a_seed_and_differs_across_seeds(data_dir):
    def numbers(seed):
        ds = video_dataset(data_dir, "train", batch_size=4, max_frames=MAX_FRAMES, seed=seed, shuffle_buffer=8)
        batches = all_batches(ds.take(8))  # 32 > 24 videos: into the second epoch
        return batches, [marker(f["rgb"][:, 0], VIDEO_COLUMN).tolist() for f, _ in batches]

    (a, numbers_a), (b, _), (_, numbers_c) = numbers(3), numbers(3), numbers(4)
    assert_batches_equal(a, b)
    assert numbers_a != numbers_c
    first_epoch = sum(numbers_a, [])[:24]
    assert sorted(first_epoch) == list(range(1, 25)) and first_epoch != sorted(first_epoch)


def test_skip_batches_continues_the_same_video_stream(data_dir):
    def stream(skip, count):
        return all_batches(video_dataset(data_dir, "train", batch_size=5, max_frames=MAX_FRAMES, seed=7,
                                         shuffle_buffer=8, skip_batches=skip).take(count))

    assert_batches_equal(stream(2, 4), stream(0, 6)[2:])  # 30 videos: across the epoch boundary


def test_video_stream_decodes_only_the_first_max_frames_frames(tmp_path):
    # A longer video's tail costs no decoding: here its frames past max_frames could not be
    # decoded at all (their byte lengths differ), yet the video reads as its first max_frames.
    video = make_video(7, MAX_FRAMES, [2])
    example = tf.train.SequenceExample.FromString(encoded(video))
    for key, size in (("rgb", 5), ("audio", 3)):
        for _ in range(4):
            example.feature_lists.feature_list[key].feature.add().bytes_list.value.append(b"\1" * size)
    data_dir = write_dataset(str(tmp_path), {"train": [[example.SerializeToString()]]})
    (features, labels), = all_batches(video_dataset(data_dir, "train", batch_size=1, max_frames=MAX_FRAMES,
                                                    shuffle=False, repeat=False, drop_remainder=False))
    np.testing.assert_array_equal(features["rgb"][0], video["rgb"])
    np.testing.assert_array_equal(features["audio"][0], video["audio"])
    np.testing.assert_array_equal(features["mask"][0], np.ones(MAX_FRAMES))
    np.testing.assert_array_equal(labels[0], np.isin(np.arange(NUM_CLASSES), [2]))


def test_segment_batches_have_static_shapes(data_dir):
    features, y = segment_dataset(data_dir, "validate", batch_size=4, context_frames=CONTEXT,
                                  max_frames=MAX_FRAMES).element_spec
    assert features["segment_rgb"].shape == (4, WINDOW, 1024) and features["segment_audio"].shape == (4, WINDOW, 128)
    assert features["segment_mask"].shape == (4, WINDOW) and features["rgb"].shape == (4, MAX_FRAMES, 1024)
    assert features["audio"].shape == (4, MAX_FRAMES, 128) and features["mask"].shape == (4, MAX_FRAMES)
    assert y.shape == (4, 2, NUM_CLASSES) and y.dtype == tf.float32
    for key in ("segment_rgb", "segment_audio", "rgb", "audio"):
        assert features[key].dtype == tf.uint8, key
    assert features["segment_mask"].dtype == tf.float32 and features["mask"].dtype == tf.float32


def segment_entries(data_dir, split="validate", max_frames=30):
    """(video number, start, features, y) of every rated segment, unshuffled."""
    entries = []
    ds = segment_dataset(data_dir, split, batch_size=3, context_frames=CONTEXT, max_frames=max_frames,
                         negative_weight=NEGATIVE_WEIGHT, shuffle=False, repeat=False, drop_remainder=False)
    for features, y in all_batches(ds):
        for i in range(len(y)):
            one = {key: value[i] for key, value in features.items()}
            middle = one["segment_rgb"][CONTEXT]  # the segment's first frame, always inside the video
            entries.append((int(marker(middle, VIDEO_COLUMN)), int(marker(middle, FRAME_COLUMN)), one, y[i]))
    return entries


def test_segment_targets_and_weights_on_a_hand_built_video(data_dir):
    rated = {start: y for number, start, _, y in segment_entries(data_dir) if number == RATED["number"]}
    assert sorted(rated) == sorted(RATED_EXPECTED)  # one entry per rated segment; 40 is past the end
    for start, classes in RATED_EXPECTED.items():
        targets, weights = rated[start]
        np.testing.assert_allclose(targets, [classes[c][0] for c in range(NUM_CLASSES)], err_msg=str(start))
        np.testing.assert_allclose(weights, [classes[c][1] for c in range(NUM_CLASSES)], err_msg=str(start))


def test_segment_windows_clip_context_at_the_video_ends(data_dir):
    features = {start: f for number, start, f, _ in segment_entries(data_dir) if number == RATED["number"]}
    frames = len(RATED["rgb"])  # 23
    for start, f in features.items():
        index = np.arange(start - CONTEXT, start + 5 + CONTEXT)
        inside = (index >= 0) & (index < frames)
        np.testing.assert_array_equal(f["segment_mask"], inside)
        np.testing.assert_array_equal(f["segment_rgb"][inside], RATED["rgb"][index[inside]])
        np.testing.assert_array_equal(f["segment_audio"][inside], RATED["audio"][index[inside]])
        assert not f["segment_rgb"][~inside].any() and not f["segment_audio"][~inside].any()
        np.testing.assert_array_equal(f["mask"], np.arange(30) < frames)  # and the whole video
        np.testing.assert_array_equal(f["rgb"][:frames], RATED["rgb"])
    assert not features[0]["segment_mask"][:CONTEXT].any() and not features[20]["segment_mask"][-5:].any()


def test_segment_stream_has_every_rated_segment_once(data_dir, videos):
    expected = sorted((v["number"], start) for v in videos["validate"]
                      for start in {r[1] for r in v["ratings"]} if start < len(v["rgb"]))
    assert sorted((number, start) for number, start, _, _ in segment_entries(data_dir)) == expected


def test_segment_stream_is_seeded_and_skip_batches_continues_it(data_dir):
    def stream(seed, skip, count):
        ds = segment_dataset(data_dir, "validate", batch_size=4, context_frames=CONTEXT, max_frames=MAX_FRAMES,
                             seed=seed, shuffle_buffer=16, skip_batches=skip)
        return all_batches(ds.take(count))

    full = stream(5, 0, 12)  # 48 entries: into the third epoch of 22 segments
    # A second stream with the same seed gives the same batches, from where it was resumed.
    assert_batches_equal(stream(5, 5, 7), full[5:])
    other = stream(6, 0, 12)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(full, other))


def test_skipped_videos_are_never_parsed(videos, tmp_path):
    # The first record's rgb rows have 1000 bytes, not 1024: parsing it fails; its
    # ratings and audio are fine, so only the full parse sees the damage.
    good = videos["validate"][1:4]
    broken = make_video(99, 12, [1], ratings=[(2, 5, 1.0)])
    broken["rgb"] = broken["rgb"][:, :1000]
    example = tf.train.SequenceExample.FromString(plain_sequence_example({**broken, "rgb": np.zeros([0, 0])}))
    for row in broken["rgb"]:
        example.feature_lists.feature_list["rgb"].feature.add().bytes_list.value.append(row.tobytes())
    out = write_dataset(str(tmp_path), {"validate": [[example.SerializeToString()] + [encoded(v) for v in good]]})

    def first(fn, skip):
        return next(iter(fn(out, "validate", batch_size=1, max_frames=MAX_FRAMES, shuffle=False, skip_batches=skip)))

    for fn in (video_dataset, segment_dataset):
        with pytest.raises(tf.errors.InvalidArgumentError):
            first(fn, 0)
        first(fn, 1)


def inference_rows(data_dir, split="test", **kwargs):
    rows = []
    for batch in all_batches(segment_inference_dataset(data_dir, split, batch_size=4, context_frames=CONTEXT,
                                                       max_frames=30, **kwargs)):
        for i in range(len(batch["id"])):
            rows.append({key: value[i] for key, value in batch.items()})
    return rows


@pytest.mark.parametrize("drop_first,drop_last", [(0, 0), (1, 1)])
def test_inference_gives_every_segment_in_shard_order(data_dir, videos, drop_first, drop_last):
    rows = inference_rows(data_dir, drop_first=drop_first, drop_last=drop_last)
    expected = []
    for video in videos["test"]:  # written in this order into shards 0 and 1
        starts = list(range(0, min(len(video["rgb"]), 30) - 4, 5))  # start + 5 <= num_frames, truncated to 30
        assert len(starts) == min(len(video["rgb"]), 30) // 5
        expected += [(video["id"].encode(), s) for s in starts[drop_first:max(drop_first, len(starts) - drop_last)]]
    assert [(row["id"], row["start_time"]) for row in rows] == expected
    by_id = {v["id"].encode(): v for v in videos["test"]}
    for row in rows:
        video, start = by_id[row["id"]], row["start_time"]
        frames = min(len(video["rgb"]), 30)
        index = np.arange(start - CONTEXT, start + 5 + CONTEXT)
        inside = (index >= 0) & (index < frames)
        np.testing.assert_array_equal(row["segment_mask"], inside)
        np.testing.assert_array_equal(row["segment_rgb"][inside], video["rgb"][index[inside]])
        assert not row["segment_rgb"][~inside].any()
        np.testing.assert_array_equal(row["rgb"][:frames], video["rgb"][:frames])
        np.testing.assert_array_equal(row["mask"], np.arange(30) < frames)


def test_video_segment_dataset_flattens_to_the_inference_stream(data_dir):
    spec = video_segment_dataset(data_dir, "test", videos_per_batch=3, max_frames=30, drop_first=1).element_spec
    assert spec["start_time"].shape == (None, 5) and spec["rgb"].shape == (None, 30, 1024)
    assert spec["rgb"].dtype == tf.uint8 and spec["audio"].dtype == tf.uint8
    flatten = tf.function(lambda videos: flatten_segments(videos, context_frames=CONTEXT))  # as a predict step
    flat = [flatten(videos) for videos in video_segment_dataset(data_dir, "test", videos_per_batch=3, max_frames=30,
                                                                drop_first=1)]
    flat = {key: np.concatenate([batch[key].numpy() for batch in flat]) for key in flat[0]}
    rows = inference_rows(data_dir, drop_first=1)
    assert len(flat["id"]) == len(rows)
    for key in flat:
        np.testing.assert_array_equal(flat[key], np.stack([row[key] for row in rows]), err_msg=key)


def test_records_written_with_plain_sequence_example_code_read_the_same(data_dir):
    for read in (
            lambda split: video_dataset(data_dir, split, batch_size=4, max_frames=MAX_FRAMES, shuffle=False,
                                        repeat=False, drop_remainder=False),
            lambda split: segment_dataset(data_dir, split, batch_size=4, max_frames=MAX_FRAMES, shuffle=False,
                                          repeat=False, drop_remainder=False),
            lambda split: segment_inference_dataset(data_dir, split, batch_size=16, max_frames=MAX_FRAMES)):
        plain, ours = all_batches(read("plain")), all_batches(read("encoded"))
        assert plain and len(plain) == len(ours)
        assert_batches_equal(plain, ours)


def test_wrong_kind_and_missing_split_are_user_errors(data_dir, tmp_path):
    with pytest.raises(UserError, match="no 'holdout' split"):
        video_dataset(data_dir, "holdout")
    write_manifest(str(tmp_path), {"kind": "cdiscount_product", "schema_version": 1, "input_records": 0,
                                   "rejected": 0, "splits": {}})
    with pytest.raises(UserError, match="expected 'yt8m_frame'"):
        segment_inference_dataset(str(tmp_path), "test")
