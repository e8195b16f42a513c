"""tf.data input for `yt8m_frame` shards (the official YouTube-8M frame-level records).

The 7th place of the 3rd YouTube-8M challenge pretrained video-level models, then
fine-tuned segment classifiers on the rated segments of the validate split, then scored
every 5 s segment of the test videos. Three streams serve these steps:

- `video_dataset`: (features, multi-hot labels) per video, for video-level pretraining.
- `segment_dataset`: (features, y) per rated segment, for segment fine-tuning.
- `segment_inference_dataset`: every segment of every video, in shard order, for
  prediction (`video_segment_dataset` + `flatten_segments` is the same stream
  grouped by video, which avoids copying each whole video once per segment).

Frames stay quantized: uint8, as `yt8m_frame.parse` decodes them (a quarter of the
float32 bytes, and no arithmetic on the host). The models dequantize them to [-2, 2] in
their first layer (`yt8m_keras.models.dequantize.Dequantize`, on the accelerator; their
PyTorch code fed the raw 0-255 bytes: weights ported from it expect that scale). Videos
are zero-padded or truncated to `max_frames` (one frame per second) with a float `mask`;
segments are cut from those first `max_frames` frames (all of a video at the official 300).

Segment loss contract (what `segment_dataset` promises the trainer)
-------------------------------------------------------------------
`y` is `tf.stack([targets, weights], axis=1)`, float32 `[B, 2, num_classes]`. Per
segment and class:

- rated: the record rates this segment for the class. target = the rating's score
  (1: the class is in the segment, 0: it is not), weight 1. A class rated twice for
  the same segment keeps its highest score;
- mined negative: not rated here, and absent from both the video-level labels and
  the labels of this segment's positive ratings. target 0, weight `negative_weight`
  (a video's labels are near-complete, so a class it lacks is very likely absent
  from each of its segments);
- unknown: everything else, i.e. a video label whose presence in this segment is not
  rated. target 0, weight 0: no gradient.

Only this segment's ratings count: a class rated positive in another segment of the
video but not among its video-level labels is a mined negative here.

The trainer's loss is the weighted mean over every (segment, class) entry of the
batch, `sum(weights * bce(targets, p)) / sum(weights)`; not a mean over
B * num_classes, since the number of known entries varies from batch to batch.

Example:

>>> ds = video_dataset("data/yt8m", "train", batch_size=64, seed=1)
>>> features, labels = next(iter(ds))  # features["rgb"]: uint8 [64, 300, 1024]; labels: [64, 3862]
>>> ds = segment_dataset("data/yt8m", "validate", batch_size=64, context_frames=3)
>>> features, y = next(iter(ds))  # features["segment_rgb"]: [64, 11, 1024]; y: [64, 2, 3862]
>>> targets, weights = y[:, 0], y[:, 1]
>>> for videos in video_segment_dataset("data/yt8m", "test", videos_per_batch=8):
...     segments = flatten_segments(videos, context_frames=3)  # on the GPU, in the predict step
"""

from typing import Dict, Tuple

import tensorflow as tf

from tfrecords import yt8m_frame as kind
from tfrecords.manifest import compression_type, read_manifest, shard_paths
from yt8m_keras.data.shards import deterministic, records

AUTOTUNE = tf.data.AUTOTUNE

SEGMENT_FRAMES = kind.SEGMENT_FRAMES
VIDEO_KEYS = (kind.RGB, kind.AUDIO, "mask")
SEGMENT_KEYS = ("segment_rgb", "segment_audio", "segment_mask")


def split_files(data_dir: str, split: str):
    """(shard paths, compression, num_classes) of a split, from the manifest."""
    manifest = read_manifest(data_dir, kind.KIND, kind.SCHEMA_VERSION)
    return shard_paths(data_dir, manifest, split), compression_type(manifest), int(manifest["num_classes"])


def window_length(context_frames: int) -> int:
    """Frames in one segment's window: the 5 frames of the segment and the context on each side."""
    return SEGMENT_FRAMES + 2 * context_frames


def _cut_windows(rgb: tf.Tensor, audio: tf.Tensor, num_frames: tf.Tensor, video_index: tf.Tensor,
                start_times: tf.Tensor, context_frames: int) -> Dict[str, tf.Tensor]:
    """Windows of N segments of V videos: rgb [V, T, 1024], audio [V, T, 128], num_frames [V],
    video_index [N] (the video of each segment), start_times [N]."""
    frames = tf.range(-context_frames, SEGMENT_FRAMES + context_frames)
    index = tf.cast(start_times, tf.int32)[:, None] + frames[None, :]
    inside = (index >= 0) & (index < tf.gather(tf.cast(num_frames, tf.int32), video_index)[:, None])
    # Clipped only to gather something; the mask zeroes what lies outside the video.
    index = tf.clip_by_value(index, 0, tf.shape(rgb)[1] - 1)
    index = tf.stack([tf.broadcast_to(tf.cast(video_index, tf.int32)[:, None], tf.shape(index)), index], axis=-1)
    return {
        "segment_rgb": tf.gather_nd(rgb, index) * tf.cast(inside, rgb.dtype)[..., None],
        "segment_audio": tf.gather_nd(audio, index) * tf.cast(inside, audio.dtype)[..., None],
        "segment_mask": tf.cast(inside, tf.float32),
    }


def segment_windows(video: Dict[str, tf.Tensor], start_times: tf.Tensor, context_frames: int) -> Dict[str, tf.Tensor]:
    """Cuts the windows `[start - context, start + 5 + context)` of several segments of a video.

    Args:
        video: a parsed video (`yt8m_frame.parse`): `rgb` [T, 1024], `audio` [T, 128]
            (uint8 as parsed, or floats), `num_frames`.
        start_times: int [S], segment starts in seconds (= frames).
        context_frames: frames of context on each side of the 5 segment frames.

    Returns:
        `segment_rgb` [S, L, 1024], `segment_audio` [S, L, 128] (the frames' dtype),
        `segment_mask` float32 [S, L] with L = 5 + 2 * context_frames; frames outside the
        video (before its first or after its last frame) are zero and masked.
    """
    return _cut_windows(video[kind.RGB][None], video[kind.AUDIO][None], video["num_frames"][None],
                        tf.zeros_like(start_times, tf.int32), start_times, context_frames)


def segment_targets(video_labels: tf.Tensor, segment_labels: tf.Tensor, segment_start_times: tf.Tensor,
                    segment_scores: tf.Tensor, start_time: tf.Tensor, num_classes: int,
                    negative_weight: float = 0.1) -> Tuple[tf.Tensor, tf.Tensor]:
    """Targets and weights of one segment (see the loss contract at the top of this module).

    Args:
        video_labels: multi-hot float32 [num_classes], the video-level labels.
        segment_labels, segment_start_times, segment_scores: the video's ratings, [R] each.
        start_time: int scalar, the segment whose ratings are used.
        num_classes: classes in the vocabulary; ratings of classes outside it are ignored.
        negative_weight: weight of mined negatives.

    Returns:
        (targets, weights), float32 [num_classes] each.
    """
    this_segment = tf.equal(segment_start_times, tf.cast(start_time, segment_start_times.dtype))
    labels = tf.cast(tf.boolean_mask(segment_labels, this_segment), tf.int32)
    scores = tf.cast(tf.boolean_mask(segment_scores, this_segment), tf.float32)
    in_vocabulary = (labels >= 0) & (labels < num_classes)
    labels, scores = tf.boolean_mask(labels, in_vocabulary), tf.boolean_mask(scores, in_vocabulary)
    rated = kind.multi_hot(labels, num_classes) > 0
    # A class rated twice for the same segment keeps its highest score (a positive wins).
    score = tf.tensor_scatter_nd_max(tf.zeros([num_classes]), labels[:, None], scores)
    rated_positive = kind.multi_hot(tf.boolean_mask(labels, scores > 0), num_classes) > 0
    known_positive = (video_labels > 0) | rated_positive
    targets = tf.where(rated, score, 0.0)
    weights = tf.where(rated, 1.0, tf.where(known_positive, 0.0, tf.cast(negative_weight, tf.float32)))
    return targets, weights


def video_dataset(data_dir: str, split: str = "train", batch_size: int = 64, max_frames: int = 300,
                  shuffle: bool = True, seed: int = 0, repeat: bool = True, shuffle_buffer: int = 1024,
                  drop_remainder: bool = True, skip_batches: int = 0) -> tf.data.Dataset:
    """Batches of (features, labels), one entry per video, for video-level training.

    `features`: `rgb` uint8 [B, max_frames, 1024], `audio` uint8 [B, max_frames, 128]
    (quantized as stored, zero after the last frame: the model dequantizes them), `mask`
    float32 [B, max_frames] (1 on real frames); `labels`: multi-hot float32 [B, num_classes].

    Args:
        data_dir: a converted `yt8m_frame` dataset directory (manifest.json + shards).
        split: a split of the manifest, e.g. "train" or "validate".
        batch_size: videos per batch.
        max_frames: videos are padded or truncated to this many frames.
        shuffle: shuffle shards and videos (with `seed`).
        seed: the same seed gives the same stream, batch for batch.
        repeat: repeat forever (epochs are then `steps_per_epoch` long).
        shuffle_buffer: serialized videos in the shuffle buffer (about 350 KB each for
            300 frames; shuffled before parsing).
        drop_remainder: drop the last partial batch (static batch size for TPUs).
        skip_batches: start after this many batches of the same stream (a resumed run);
            skipped videos are read but never parsed.
    """
    paths, compression, num_classes = split_files(data_dir, split)
    ds = records(paths, compression, shuffle=shuffle, seed=seed)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.skip(skip_batches * batch_size)

    def prepare(serialized):
        # `kind.parse`'s values, with less host work per video: frames past max_frames are
        # never decoded, and the mask is built once per batch (`with_mask`).
        context, sequence = tf.io.parse_single_sequence_example(serialized, kind.CONTEXT_FEATURES,
                                                                kind.SEQUENCE_FEATURES)
        features = {kind.RGB: _first_frames(sequence[kind.RGB], max_frames, kind.RGB_SIZE),
                    kind.AUDIO: _first_frames(sequence[kind.AUDIO], max_frames, kind.AUDIO_SIZE),
                    "num_frames": tf.minimum(tf.size(sequence[kind.RGB]), max_frames)}
        return features, kind.multi_hot(context[kind.LABELS].values, num_classes)

    def with_mask(features, labels):
        mask = tf.sequence_mask(features["num_frames"], max_frames, dtype=tf.float32)
        return {kind.RGB: features[kind.RGB], kind.AUDIO: features[kind.AUDIO], "mask": mask}, labels

    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(with_mask)
    return deterministic(ds.prefetch(AUTOTUNE))


def _first_frames(frames: tf.Tensor, max_frames: int, size: int) -> tf.Tensor:
    """A video's per-frame byte strings -> uint8 [max_frames, size]: its first max_frames frames, zero after.

    Only those frames are decoded (a longer video's tail costs no copy), and a video of
    max_frames frames or more is not copied again by the padding (`tf.pad` with zero
    padding hands its input on).
    """
    decoded = tf.reshape(tf.io.decode_raw(frames[:max_frames], tf.uint8), [-1, size])
    padded = tf.pad(decoded, [[0, max_frames - tf.shape(decoded)[0]], [0, 0]])
    return tf.ensure_shape(padded, [max_frames, size])


def _rated_segment_starts(serialized: tf.Tensor, max_frames: int) -> tf.Tensor:
    """Sorted distinct start times of a record's rated segments that have a frame in the first max_frames.

    Reads the context and the audio frames only: the audio list gives the number of
    frames (rgb has as many) at 1/8 of the bytes, and no frame is decoded.
    """
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, {kind.SEGMENT_START_TIMES: tf.io.VarLenFeature(tf.int64)},
        {kind.AUDIO: tf.io.FixedLenSequenceFeature([], tf.string)})
    num_frames = tf.minimum(tf.shape(sequence[kind.AUDIO], out_type=tf.int64)[0], max_frames)
    starts = tf.sort(tf.unique(tf.sparse.to_dense(context[kind.SEGMENT_START_TIMES])).y)
    # A segment wholly past the (truncated) video would be all padding: no evidence
    # for its rating. With max_frames=300, the official limit, there are none.
    return tf.boolean_mask(starts, (starts >= 0) & (starts < num_frames))


def in_holdout(serialized: tf.Tensor, fraction: float) -> tf.Tensor:
    """Whether a video belongs to the holdout: a hash of its id, parsed alone (cheap)."""
    context, _ = tf.io.parse_single_sequence_example(serialized, {kind.ID: kind.CONTEXT_FEATURES[kind.ID]})
    return tf.strings.to_hash_bucket_fast(context[kind.ID], 10000) < int(round(fraction * 10000))


def segment_dataset(data_dir: str, split: str = "validate", batch_size: int = 64, context_frames: int = 3,
                    max_frames: int = 300, negative_weight: float = 0.1, shuffle: bool = True, seed: int = 0,
                    repeat: bool = True, shuffle_buffer: int = 1024, drop_remainder: bool = True,
                    skip_batches: int = 0, holdout_fraction: float = 0.0,
                    holdout: bool = False) -> tf.data.Dataset:
    """Batches of (features, y), one entry per rated segment, for segment fine-tuning.

    A record may rate several segments, and a segment several classes: each distinct
    `segment_start_times` value of a record is one entry, with all its ratings.

    `features`: `segment_rgb` uint8 [B, L, 1024], `segment_audio` uint8 [B, L, 128],
    `segment_mask` float32 [B, L] with L = 5 + 2 * context_frames (the segment's 5 frames
    and `context_frames` on each side; frames outside the video are zero and masked), and
    the whole video: `rgb` uint8 [B, max_frames, 1024], `audio`, `mask` (as `video_dataset`).
    `y`: float32 [B, 2, num_classes], targets `y[:, 0]` and weights `y[:, 1]` (see the
    loss contract at the top of this module).

    Args:
        data_dir: a converted `yt8m_frame` dataset directory with segment ratings.
        split: the split with ratings ("validate" in the 3rd challenge); records
            without ratings give no entries (a split without any gives an empty stream).
        batch_size: segments per batch.
        context_frames: frames of context on each side of the segment.
        max_frames: videos are padded or truncated to this many frames; a rated
            segment with no frame among them is left out.
        negative_weight: the weight of mined negatives.
        shuffle: shuffle shards and segments (with `seed`).
        seed: the same seed gives the same stream, batch for batch.
        repeat: repeat forever.
        shuffle_buffer: segments in the shuffle buffer (each holds its serialized video,
            about 350 KB: segments are shuffled before their video is parsed).
        drop_remainder: drop the last partial batch.
        skip_batches: start after this many batches of the same stream; the skipped
            segments' videos are not parsed beyond their ratings and frame count.
        holdout_fraction: share of the videos set aside for validation, chosen by a
            hash of the video id (the same videos whatever the shard order or seed).
        holdout: False: the videos outside the holdout (training); True: the holdout.
    """
    paths, compression, num_classes = split_files(data_dir, split)
    ds = records(paths, compression, shuffle=shuffle, seed=seed)
    if holdout_fraction > 0:
        ds = ds.filter(lambda serialized: in_holdout(serialized, holdout_fraction) == holdout)

    def rated_segments(serialized):
        starts = _rated_segment_starts(serialized, max_frames)
        return tf.fill(tf.shape(starts), serialized), starts

    # One (serialized video, start) entry per segment: the entries, not parsed videos,
    # are shuffled and skipped, so the buffer holds the records' bytes (not padded
    # frames) and a resumed run skips without decoding. The price: a video rated at k
    # segments is parsed k times.
    ds = ds.map(rated_segments, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.skip(skip_batches * batch_size)

    def prepare(serialized, start):
        video = kind.parse(serialized, num_classes, max_frames)
        windows = segment_windows(video, start[None], context_frames)
        features = {key: windows[key][0] for key in SEGMENT_KEYS}
        features.update({key: video[key] for key in VIDEO_KEYS})
        targets, weights = segment_targets(
            video[kind.LABELS], video[kind.SEGMENT_LABELS], video[kind.SEGMENT_START_TIMES],
            video[kind.SEGMENT_SCORES], start, num_classes, negative_weight)
        # Stacked on axis 0 per segment, which is axis 1 of the batch: [B, 2, num_classes].
        return features, tf.stack([targets, weights], axis=0)

    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    return deterministic(ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE))


def inference_start_times(num_frames: tf.Tensor, stride: int = 5, drop_first: int = 0,
                          drop_last: int = 0) -> tf.Tensor:
    """Start times 0, stride, 2*stride, ... of the segments with `start + 5 <= num_frames`,
    without the first `drop_first` and the last `drop_last` (int32 [S])."""
    starts = tf.range(0, tf.cast(num_frames, tf.int32) - SEGMENT_FRAMES + 1, stride)
    end = tf.maximum(drop_first, tf.size(starts) - drop_last)
    return starts[drop_first:end]


def max_segments(max_frames: int, stride: int = 5, drop_first: int = 0, drop_last: int = 0) -> int:
    """The most segments `inference_start_times` gives for a video of up to max_frames frames."""
    return max(0, len(range(0, max_frames - SEGMENT_FRAMES + 1, stride)) - drop_first - drop_last)


def _check_inference_args(context_frames, stride, drop_first, drop_last):
    if stride < 1 or context_frames < 0 or drop_first < 0 or drop_last < 0:
        raise ValueError(f"stride must be >= 1 and context_frames, drop_first, drop_last >= 0; got "
                         f"{stride}, {context_frames}, {drop_first}, {drop_last}")


def _video_with_start_times(num_classes, max_frames, stride, drop_first, drop_last):
    def prepare(serialized):
        video = kind.parse(serialized, num_classes, max_frames)
        starts = inference_start_times(video["num_frames"], stride, drop_first, drop_last)
        element = {kind.ID: video[kind.ID], "start_time": tf.cast(starts, tf.int64)}
        element.update({key: video[key] for key in VIDEO_KEYS})
        return element

    return prepare


def video_segment_dataset(data_dir: str, split: str = "test", videos_per_batch: int = 8, max_frames: int = 300,
                          stride: int = 5, drop_first: int = 0, drop_last: int = 0) -> tf.data.Dataset:
    """Every segment of every video, grouped by video: the lean form of `segment_inference_dataset`.

    Deterministic, in shard order (as `segment_inference_dataset`). Each element is a
    batch of V = `videos_per_batch` videos (the last may be smaller): `id` [V] string,
    `start_time` int64 [V, S] (-1 after the video's last segment, S =
    `max_segments(max_frames, stride, drop_first, drop_last)`), `rgb` uint8 [V, max_frames,
    1024], `audio` uint8 [V, max_frames, 128], `mask` [V, max_frames]. The segments' windows
    are not cut here: `flatten_segments(element, context_frames)`, run on the
    accelerator, cuts them and gives the `segment_inference_dataset` form, so the
    host neither copies a video per segment nor the overlapping windows.

    Args: as `segment_inference_dataset`, with videos per batch instead of segments.

    Example:

    >>> for videos in video_segment_dataset("data/yt8m", "test"):
    ...     segments = flatten_segments(videos, context_frames=3)   # N real segments
    ...     scores = model(segments)  # [N, num_classes], for segments["id"], segments["start_time"]
    """
    _check_inference_args(0, stride, drop_first, drop_last)
    paths, compression, num_classes = split_files(data_dir, split)
    ds = records(paths, compression, cycle_length=1).map(
        _video_with_start_times(num_classes, max_frames, stride, drop_first, drop_last),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.padded_batch(videos_per_batch, *_video_padding(max_frames, stride, drop_first, drop_last))
    return deterministic(ds.prefetch(AUTOTUNE))


def _video_padding(max_frames: int, stride: int, drop_first: int, drop_last: int):
    """`padded_batch`'s shapes and values for the videos-with-start-times elements."""
    shapes = {kind.ID: [], "start_time": [max_segments(max_frames, stride, drop_first, drop_last)],
              kind.RGB: [max_frames, kind.RGB_SIZE], kind.AUDIO: [max_frames, kind.AUDIO_SIZE], "mask": [max_frames]}
    values = {kind.ID: b"", "start_time": tf.constant(-1, tf.int64), kind.RGB: tf.constant(0, tf.uint8),
              kind.AUDIO: tf.constant(0, tf.uint8), "mask": 0.0}
    return shapes, values


def decode_videos(records, num_classes: int, max_frames: int = 300, stride: int = 5, drop_first: int = 0,
                  drop_last: int = 0) -> Dict[str, tf.Tensor]:
    """Serialized videos -> one `video_segment_dataset` element (the same parsing and padding), for
    batch inference over records that arrive without a directory (Beam's RunInference)."""
    _check_inference_args(0, stride, drop_first, drop_last)
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(records, tf.string)).map(
        _video_with_start_times(num_classes, max_frames, stride, drop_first, drop_last),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    return next(iter(ds.padded_batch(len(records), *_video_padding(max_frames, stride, drop_first, drop_last))))


def flatten_segments(videos: Dict[str, tf.Tensor], context_frames: int = 3) -> Dict[str, tf.Tensor]:
    """A `video_segment_dataset` element -> its real segments, in video then time order.

    Returns the `segment_inference_dataset` element (N = the number of real segments):
    `id` [N], `start_time` [N], `segment_rgb` [N, L, 1024], `segment_audio`,
    `segment_mask` [N, L], and each segment's whole video `rgb` [N, max_frames, 1024],
    `audio`, `mask`. Plain TensorFlow ops: run it where the batch will be used (inside
    the predict `tf.function` on the GPU) so the per-segment copies live in its memory.

    Args:
        videos: an element of `video_segment_dataset`.
        context_frames: frames of context on each side of a segment.
    """
    real = videos["start_time"] >= 0
    video_index = tf.cast(tf.where(real)[:, 0], tf.int32)
    start_times = tf.boolean_mask(videos["start_time"], real)
    num_frames = tf.cast(tf.reduce_sum(videos["mask"], axis=1), tf.int32)
    flat = {kind.ID: tf.gather(videos[kind.ID], video_index), "start_time": start_times}
    flat.update(_cut_windows(videos[kind.RGB], videos[kind.AUDIO], num_frames, video_index, start_times,
                             context_frames))
    flat.update({key: tf.gather(videos[key], video_index) for key in VIDEO_KEYS})
    return flat


def segment_inference_dataset(data_dir: str, split: str = "test", batch_size: int = 256, context_frames: int = 3,
                              max_frames: int = 300, stride: int = 5, drop_first: int = 0,
                              drop_last: int = 0) -> tf.data.Dataset:
    """Every segment of every video, for prediction; deterministic, in shard order.

    Segments start at 0, stride, 2*stride, ... while start + 5 <= num_frames (frames
    after truncation to max_frames), less the first `drop_first` and last `drop_last`
    of each video; videos come in shard order, file order within a shard, each
    video's segments in time order.

    Elements (B segments; the last batch may be smaller): `id` [B] string, `start_time`
    [B] int64, `segment_rgb` [B, L, 1024], `segment_audio` [B, L, 128], `segment_mask`
    [B, L] (L = 5 + 2 * context_frames, frames outside the video zero and masked), and
    the segment's whole video `rgb` [B, max_frames, 1024], `audio`, `mask`; frames uint8.

    Cost: every segment carries a copy of its whole video (0.35 MB at 300 frames, 88 MB
    per batch of 256), made on the host by `batch`. For the test set (~1.7M segments)
    prefer `video_segment_dataset` + `flatten_segments` on the accelerator: the same
    segments at 10-20x the rate (then bound by parsing, as `video_dataset`) with 1/55
    of the host bytes to move (benchmarks/video_input.py, 2 CPUs).

    Args:
        data_dir: a converted `yt8m_frame` dataset directory.
        split: e.g. "test".
        batch_size: segments per batch.
        context_frames: frames of context on each side of a segment.
        max_frames: videos are padded or truncated to this many frames.
        stride: seconds between segment starts.
        drop_first, drop_last: segments left out at the start and end of each video.
    """
    _check_inference_args(context_frames, stride, drop_first, drop_last)
    paths, compression, num_classes = split_files(data_dir, split)
    ds = records(paths, compression, cycle_length=1).map(
        _video_with_start_times(num_classes, max_frames, stride, drop_first, drop_last),
        num_parallel_calls=AUTOTUNE, deterministic=True)

    def segments_of(video):
        # `repeat` of one element hands out the same buffers, so the video is copied once
        # per segment, by `batch`; tiling it and `unbatch` copies it twice more (measured
        # 5-9x slower).
        num_frames = tf.cast(tf.reduce_sum(video["mask"]), tf.int32)
        starts = tf.data.Dataset.from_tensor_slices(video["start_time"])
        return tf.data.Dataset.zip(starts, tf.data.Dataset.from_tensors((video, num_frames)).repeat())

    def cut(start, video_and_frames):
        video, num_frames = video_and_frames
        windows = segment_windows({**video, "num_frames": num_frames}, start[None], context_frames)
        return {**video, "start_time": start, **{key: windows[key][0] for key in SEGMENT_KEYS}}

    ds = ds.flat_map(segments_of).map(cut, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, num_parallel_calls=AUTOTUNE, deterministic=True)
    return deterministic(ds.prefetch(AUTOTUNE))
