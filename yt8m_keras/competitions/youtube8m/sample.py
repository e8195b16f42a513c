"""Sample YouTube-8M data in the official frame-level format, learnable by a small model.

Writes real `SequenceExample` TFRecords (`tfrecords.yt8m_frame.encode`, quantized uint8
frames, one frame per second) laid out like the 3rd challenge's release:

    train-00000-of-00003.tfrecord ...     labelled videos, no segment ratings
    validate-00000-of-00002.tfrecord ...  labelled videos with segment ratings
    test-00000-of-00002.tfrecord ...      no labels, no ratings
    vocabulary.csv                        the official columns (Index, TrainVideoCount, ...)
    segment_vocabulary.csv                `Index`: the classes rated in validate and test
    test_segments_truth.csv               NOT part of the official format (see below)

How the frames carry the labels: every class has a fixed random prototype, a vector of norm
0.5 in the 1024-d rgb space and one in the 128-d audio space. A video has 1-3 labels; its
frames are Gaussian noise plus a per-video offset plus, for each label, the label's
prototype in *some* of its 5-second segments only. A segment where a label's prototype
is present is a positive segment of that label, the others are negatives, which is what
the segment ratings say. Values are clipped to [-2, 2] and quantized with
`yt8m_frame.quantize`, like the official features.

`test_segments_truth.csv` is the hidden truth of the test videos, for quickstarts that
want to score a submission; the real challenge keeps it on Kaggle. It has the Kaggle
submission's shape: `Class,Segments`, one row per segment class, `Segments` the
space-separated `video_id:start_seconds` of its positive 5-second segments.

Example:

>>> paths = write_sample("/tmp/yt8m_raw", videos=60)
>>> paths["train"]
'/tmp/yt8m_raw/train-*.tfrecord'
"""

import csv
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfrecords import yt8m_frame

SEGMENT = yt8m_frame.SEGMENT_FRAMES  # seconds (= frames) per rated segment
SPLIT_FRACTIONS = (("train", 0.6), ("validate", 0.2), ("test", 0.2))
SHARDS = {"train": 3, "validate": 2, "test": 2}
# Per-dimension noise and the prototypes' norm: one frame's projection on its label's
# prototype has SNR 0.5 / 0.4 = 1.25, a 5-second segment's mean ~2.8: a segment is
# learnable from its frames together, hardly from one frame.
RGB_NOISE = 0.4
AUDIO_NOISE = 0.4
PROTOTYPE_NORM = 0.5
# A constant per-video offset (norm ~0.5): videos differ beyond their labels.
VIDEO_OFFSET = 0.5
LABELS_PER_VIDEO_P = (0.5, 0.3, 0.2)  # 1, 2 or 3 labels
SEGMENT_PRESENT_P = 0.5
# Segments rated per (validate video, segment-class label); the 3rd challenge rated ~5 per video.
RATINGS_PER_LABEL = 5
ID_ALPHABET = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
VOCABULARY_COLUMNS = ("Index", "TrainVideoCount", "KnowledgeGraphId", "Name", "WikiUrl",
                      "Vertical1", "Vertical2", "Vertical3", "WikiDescription")
VERTICALS = ("Arts & Entertainment", "Games", "Autos & Vehicles", "Sports", "Food & Drink",
             "Pets & Animals", "Science", "Hobbies & Leisure")


def prototypes(classes: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Random directions of norm PROTOTYPE_NORM, one per class: rgb [classes, 1024], audio [classes, 128]."""
    rgb = rng.standard_normal((classes, yt8m_frame.RGB_SIZE)).astype(np.float32)
    audio = rng.standard_normal((classes, yt8m_frame.AUDIO_SIZE)).astype(np.float32)
    return (PROTOTYPE_NORM * rgb / np.linalg.norm(rgb, axis=1, keepdims=True),
            PROTOTYPE_NORM * audio / np.linalg.norm(audio, axis=1, keepdims=True))


def segment_presence(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """bool [segments]: where a label shows. At least one full segment has it and, when the
    video has two full segments or more, at least one lacks it, so every labelled video has
    positive and negative segments."""
    segments, full = -(-num_frames // SEGMENT), num_frames // SEGMENT
    present = rng.random(segments) < SEGMENT_PRESENT_P
    present[rng.integers(full)] = True
    if full >= 2 and present[:full].all():
        present[rng.integers(full)] = False
    return present


def _offset(size: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(size, dtype=np.float32) * np.float32(VIDEO_OFFSET / np.sqrt(size))


def generate_video(video_id: str, labels: List[int], num_frames: int, rgb_prototypes: np.ndarray,
                   audio_prototypes: np.ndarray, rng: np.random.Generator) -> Dict:
    """Frames of one video: noise + offset + each label's prototype in its present segments.

    Returns:
        dict with `id`, `labels` (sorted), `rgb` uint8 [T, 1024], `audio` uint8 [T, 128] and
        `presence` (label -> bool [segments]).
    """
    rgb = rng.standard_normal((num_frames, yt8m_frame.RGB_SIZE), dtype=np.float32) * RGB_NOISE
    audio = rng.standard_normal((num_frames, yt8m_frame.AUDIO_SIZE), dtype=np.float32) * AUDIO_NOISE
    rgb += _offset(yt8m_frame.RGB_SIZE, rng)
    audio += _offset(yt8m_frame.AUDIO_SIZE, rng)
    presence = {}
    for label in sorted(labels):
        presence[label] = segment_presence(num_frames, rng)
        frames = np.repeat(presence[label], SEGMENT)[:num_frames]
        rgb[frames] += rgb_prototypes[label]
        audio[frames] += audio_prototypes[label]
    return {"id": video_id, "labels": sorted(labels),
            "rgb": yt8m_frame.quantize(np.clip(rgb, -2.0, 2.0)),
            "audio": yt8m_frame.quantize(np.clip(audio, -2.0, 2.0)),
            "presence": presence}


def segment_ratings(video: Dict, segment_classes: set,
                    rng: np.random.Generator) -> Tuple[List[int], List[int], List[float]]:
    """Ratings of up to RATINGS_PER_LABEL full segments per label in the segment vocabulary:
    (labels, start times in seconds, scores 1.0 / 0.0)."""
    full = len(video["rgb"]) // SEGMENT
    labels, starts, scores = [], [], []
    for label in video["labels"]:
        if label not in segment_classes:
            continue
        for segment in sorted(rng.choice(full, size=min(RATINGS_PER_LABEL, full), replace=False).tolist()):
            labels.append(label)
            starts.append(segment * SEGMENT)
            scores.append(1.0 if video["presence"][label][segment] else 0.0)
    return labels, starts, scores


def positive_segments(video: Dict, segment_classes: set) -> List[Tuple[int, int]]:
    """(label, start seconds) of every full segment where a segment-class label shows."""
    full = len(video["rgb"]) // SEGMENT
    return [(label, s * SEGMENT) for label in video["labels"] if label in segment_classes
            for s in range(full) if video["presence"][label][s]]


def _video_ids(count: int, rng: np.random.Generator) -> List[str]:
    # Four characters, like the 3rd challenge's pseudo ids (the real ones are not YouTube ids either).
    ids: List[str] = []
    seen = set()
    while len(ids) < count:
        video_id = "".join(rng.choice(ID_ALPHABET, size=4))
        if video_id not in seen:
            seen.add(video_id)
            ids.append(video_id)
    return ids


def _draw_labels(classes: int, first_from: Optional[np.ndarray], rng: np.random.Generator) -> List[int]:
    # Long-tailed like the real vocabulary (mildly, so every class is seen in train).
    weights = 1.0 / np.sqrt(np.arange(1, classes + 1))
    count = min(classes, int(rng.choice(len(LABELS_PER_VIDEO_P), p=LABELS_PER_VIDEO_P)) + 1)
    labels = [] if first_from is None else [int(rng.choice(first_from))]
    while len(labels) < count:
        label = int(rng.choice(classes, p=weights / weights.sum()))
        if label not in labels:
            labels.append(label)
    return labels


def _write_tfrecords(path: str, records: List[bytes]) -> None:
    tmp = path + ".tmp"
    with tf.io.TFRecordWriter(tmp) as writer:
        for record in records:
            writer.write(record)
    os.replace(tmp, path)


def _write_csv(path: str, header, rows) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def _split_sizes(videos: int) -> Dict[str, int]:
    sizes = {name: int(round(videos * fraction)) for name, fraction in SPLIT_FRACTIONS[:-1]}
    sizes[SPLIT_FRACTIONS[-1][0]] = videos - sum(sizes.values())
    return sizes


def write_sample(output_dir: str, videos: int = 300, classes: int = 20, segment_classes: int = 10,
                 seed: int = 0, min_frames: int = 30, max_frames: int = 90) -> Dict[str, str]:
    """Writes the sample shards and CSV files into `output_dir` (see the module doc).

    Args:
        output_dir: created if missing.
        videos: videos in all; 60% train, 20% validate, 20% test.
        classes: the vocabulary size.
        segment_classes: how many of the classes are rated per segment (in the real data
            1,000 of 3,862); validate and test videos have at least one of them.
        seed: the same seed writes the same bytes.
        min_frames, max_frames: video length range in seconds (= frames).

    Returns:
        name -> path: `train`, `validate`, `test` (glob patterns of the shards, as
        `convert frames --input` takes them), `vocabulary`, `segment_vocabulary`,
        `test_segments_truth`.

    Example:

    >>> paths = write_sample("/tmp/yt8m_raw", videos=60, classes=8, segment_classes=4)
    >>> sorted(paths)
    ['segment_vocabulary', 'test', 'test_segments_truth', 'train', 'validate', 'vocabulary']
    """
    if not 0 < segment_classes <= classes:
        raise ValueError(f"segment_classes must be in [1, classes={classes}], got {segment_classes}")
    if not SEGMENT <= min_frames <= max_frames:
        raise ValueError(f"need {SEGMENT} <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    rng = np.random.default_rng(seed)
    os.makedirs(output_dir, exist_ok=True)
    rgb_prototypes, audio_prototypes = prototypes(classes, rng)
    rated = np.sort(rng.choice(classes, size=segment_classes, replace=False))
    rated_set = set(rated.tolist())
    ids = iter(_video_ids(videos, rng))

    paths: Dict[str, str] = {}
    train_counts = np.zeros(classes, np.int64)
    truth: Dict[int, List[str]] = {int(c): [] for c in rated}
    for split, count in _split_sizes(videos).items():
        records = []
        for _ in range(count):
            labels = _draw_labels(classes, None if split == "train" else rated, rng)
            num_frames = int(rng.integers(min_frames, max_frames + 1))
            video = generate_video(next(ids), labels, num_frames, rgb_prototypes, audio_prototypes, rng)
            if split == "train":
                train_counts[video["labels"]] += 1
                records.append(yt8m_frame.encode(video["id"], video["labels"], video["rgb"], video["audio"]))
            elif split == "validate":
                segment_labels, starts, scores = segment_ratings(video, rated_set, rng)
                records.append(yt8m_frame.encode(video["id"], video["labels"], video["rgb"], video["audio"],
                                                 segment_labels, starts, scores))
            else:
                for label, start in positive_segments(video, rated_set):
                    truth[label].append(f"{video['id']}:{start}")
                records.append(yt8m_frame.encode(video["id"], [], video["rgb"], video["audio"]))
        shards = max(1, min(SHARDS[split], count))
        for i, part in enumerate(np.array_split(np.arange(count), shards)):
            _write_tfrecords(os.path.join(output_dir, f"{split}-{i:05d}-of-{shards:05d}.tfrecord"),
                             [records[j] for j in part])
        paths[split] = os.path.join(output_dir, f"{split}-*.tfrecord")

    paths["vocabulary"] = os.path.join(output_dir, "vocabulary.csv")
    _write_csv(paths["vocabulary"], VOCABULARY_COLUMNS,
               [_vocabulary_row(c, int(train_counts[c])) for c in range(classes)])
    paths["segment_vocabulary"] = os.path.join(output_dir, "segment_vocabulary.csv")
    _write_csv(paths["segment_vocabulary"], ["Index"], [[int(c)] for c in rated])
    paths["test_segments_truth"] = os.path.join(output_dir, "test_segments_truth.csv")
    _write_csv(paths["test_segments_truth"], ["Class", "Segments"],
               [[c, " ".join(segments)] for c, segments in truth.items()])
    return paths


def _vocabulary_row(index: int, train_videos: int) -> List:
    return [index, train_videos, f"/m/sample{index:04d}", f"Sample class {index}",
            f"https://example.org/yt8m-sample/class-{index}", VERTICALS[index % len(VERTICALS)], "", "",
            f"Synthetic class {index} of the yt8m_keras sample: its prototype shows in some "
            f"5-second segments of a labelled video's frames."]
