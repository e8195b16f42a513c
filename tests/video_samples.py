"""Synthetic frame-level videos for the YouTube-8M model tests (shared, not a test module).

Frames are quantized uint8, zero after the last frame, as the input pipeline gives them.
"""

import numpy as np

from tfrecords.yt8m_frame import quantize


def random_videos(lengths, max_frames, seed=0):
    """Videos of the given lengths, zero-padded to max_frames, with their masks."""
    rng = np.random.default_rng(seed)
    batch = len(lengths)
    rgb = rng.integers(0, 256, (batch, max_frames, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (batch, max_frames, 128), dtype=np.uint8)
    mask = (np.arange(max_frames)[None, :] < np.asarray(lengths)[:, None]).astype("float32")
    real = mask[..., None].astype(np.uint8)
    return {"rgb": rgb * real, "audio": audio * real, "mask": mask}


def pad(videos, extra):
    def padded(value):
        zeros = np.zeros(value.shape[:1] + (extra,) + value.shape[2:], value.dtype)
        return np.concatenate([value, zeros], axis=1)

    return {key: padded(value) for key, value in videos.items()}


def separable_videos(count, num_classes, seed, frames=6):
    """Multi-label task: class c adds a fixed +-1 pattern to every real frame."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(123).choice([-1.0, 1.0], size=(num_classes, 1024 + 128))
    labels = (rng.uniform(size=(count, num_classes)) < 0.5).astype("float32")
    lengths = rng.integers(2, frames + 1, size=count)
    mask = (np.arange(frames)[None, :] < lengths[:, None]).astype("float32")
    features = rng.normal(0.0, 0.5, (count, frames, 1024 + 128)) + (labels @ patterns)[:, None, :]
    features = quantize(np.clip(features, -2, 2)) * mask[..., None].astype(np.uint8)
    videos = {
        "rgb": features[..., :1024],
        "audio": features[..., 1024:],
        "mask": mask,
    }
    return videos, labels


def mean_auc(labels, scores):
    """Mean over classes of P(score of a positive > score of a negative)."""
    aucs = []
    for c in range(labels.shape[1]):
        positive, negative = scores[labels[:, c] == 1, c], scores[labels[:, c] == 0, c]
        aucs.append((positive[:, None] > negative[None, :]).mean())
    return float(np.mean(aucs))
