"""YouTube-8M evaluation and prediction: the starter code's metrics, Kaggle submissions.

    yt8m-keras evaluate --model-dir MODEL --data DATA        # GAP@20, Hit@1, PERR, mAP; MAP@K
    yt8m-keras predict --task segments --model A/1 [--model B/1 ...] --data DATA --output s.csv
    yt8m-keras predict --task videos --model A/1 --data DATA --output v.csv

Every table prints a random model's scores beside the model's, measured on the same
data, so "far above chance" is a number. Prediction streams the test split once,
averages any number of exported models (their `segments` or `frames` signature: what TF
Serving serves) in the same pass, and keeps per class only the best K segments
(`SegmentTopK`): memory does not grow with the number of segments. Inference never
samples frames at random, so the same inputs always give the same file.
"""

import os
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import yt8m_frame as kind
from tfrecords.manifest import check_same_classes, read_classes
from yt8m_keras.competitions.youtube8m import input as data
from yt8m_keras.progress import Progress
from yt8m_keras.recipes import read_yaml, recipe_from_dict
from yt8m_keras.competitions.youtube8m.topk import SegmentTopK, VideoSubmissionWriter, average_models, write_segment_submission
from yt8m_keras.competitions.youtube8m.metrics import SEGMENT_K, VideoMetrics, segment_map_at_k

FRAME_KEYS = (kind.RGB, kind.AUDIO, "mask")
SEGMENT_KEYS = ("segment_rgb", "segment_audio", "segment_mask")


def _as_video_inputs(features: Dict) -> Dict:
    """A segment's frames fed to a video-level model (the context-agnostic way)."""
    return {key: features[f"segment_{key}"] for key in FRAME_KEYS}


def _dequantized(features: Dict) -> Dict:
    """The pipeline's uint8 frames -> the dequantized float32 frames the exported `frames` and
    `segments` signatures take (they quantize them back exactly); other keys unchanged."""
    return {key: kind.dequantize(value) if key.endswith((kind.RGB, kind.AUDIO)) and value.dtype.is_integer
            else value for key, value in features.items()}


def evaluate_videos(model, recipe, data_dir: str, split: str = None, batch_size: int = 32,
                    seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Video-level GAP@20, Hit@1, PERR and mAP of `model` and of a random model."""
    ds = data.video_dataset(data_dir, split or recipe.data.val_split, batch_size=batch_size,
                            max_frames=recipe.data.max_frames, shuffle=False, repeat=False, drop_remainder=False)
    ours = theirs = None
    rng = np.random.default_rng(seed)
    for features, labels in ds:
        predictions = np.asarray(model.predict_on_batch(features))
        if ours is None:
            ours, theirs = VideoMetrics(predictions.shape[1]), VideoMetrics(predictions.shape[1])
        ours.update(predictions, labels.numpy())
        theirs.update(rng.random(predictions.shape), labels.numpy())
    if ours is None:
        raise UserError(f"the {split or recipe.data.val_split} split of {data_dir} is empty")
    return {"model": ours.result(), "random": theirs.result()}


def evaluate_segments(model, recipe, data_dir: str, k: int = SEGMENT_K, batch_size: int = 32,
                      seed: int = 0) -> Dict[str, float]:
    """MAP@K over the rated segments of the held-out videos, for `model` and a random model.

    A video-level model is applied to the segment's frames; a segment model to its inputs.
    Only rated (segment, class) pairs are ranked, as in the 2019 challenge's evaluation.
    """
    ds = data.segment_dataset(
        data_dir, recipe.data.val_split, batch_size=batch_size, context_frames=recipe.data.context_frames,
        max_frames=recipe.data.max_frames, negative_weight=recipe.data.negative_weight, shuffle=False,
        repeat=False, drop_remainder=False, holdout_fraction=recipe.data.holdout_fraction, holdout=True)
    video_level = set(model.input) == set(FRAME_KEYS) if isinstance(model.input, dict) else False
    rng = np.random.default_rng(seed)
    scores: Dict[int, list] = {}
    random_scores: Dict[int, list] = {}
    positives: Dict[int, set] = {}
    negatives: Dict[int, set] = {}
    key = 0
    for features, y in ds:
        predictions = np.asarray(model.predict_on_batch(_as_video_inputs(features) if video_level else features))
        targets, weights = y[:, 0].numpy(), y[:, 1].numpy()
        # Rated pairs carry weight 1; mined negatives carry negative_weight (< 1).
        for row, column in zip(*np.nonzero(weights == 1.0)):
            segment = key + row
            scores.setdefault(column, []).append((segment, float(predictions[row, column])))
            random_scores.setdefault(column, []).append((segment, float(rng.random())))
            (positives if targets[row, column] == 1 else negatives).setdefault(column, set()).add(segment)
        key += len(predictions)
    if not scores:
        raise UserError(f"no rated segments in the holdout of {data_dir}'s {recipe.data.val_split} split")
    return {"model": segment_map_at_k(scores, positives, k, negatives),
            "random": segment_map_at_k(random_scores, positives, k, negatives),
            "rated_segments": key}


def format_video_metrics(result: Dict[str, Dict[str, float]]) -> str:
    lines = [f"{'video level':<12}{'model':>10}{'random':>10}"]
    for name, label in (("gap", "GAP@20"), ("hit_at_one", "Hit@1"), ("perr", "PERR"), ("map", "mAP")):
        lines.append(f"{label:<12}{result['model'][name]:>10.4f}{result['random'][name]:>10.4f}")
    return "\n".join(lines)


def format_segment_map(result: Dict[str, float], k: int = SEGMENT_K) -> str:
    return (f"segment MAP@{k:,} on {result['rated_segments']} held-out rated segments: "
            f"model {result['model']:.4f}, random {result['random']:.4f}")


def evaluate(model_dir: str, data_dir: str, k: int = SEGMENT_K) -> Dict:
    """Evaluates a YouTube-8M training run: video metrics (video-level runs) and segment MAP@K."""
    from yt8m_keras.train import load_trained

    recipe, classes, model = load_trained(model_dir)
    check_same_classes(classes, model_dir, data_dir)
    result, text = {}, []
    if recipe.task == "yt8m_video":
        result["videos"] = evaluate_videos(model, recipe, data_dir)
        text.append(format_video_metrics(result["videos"]))
    try:
        result["segments"] = evaluate_segments(model, recipe, data_dir, k)
        text.append(format_segment_map(result["segments"], k))
    except UserError:
        if recipe.task == "yt8m_segment":
            raise  # a segment model without rated segments to evaluate on is an error
    return {**result, "text": "\n".join(text)}


# --- prediction ---------------------------------------------------------------------------

class ExportedModel:
    """An exported YouTube-8M model: its recipe, classes and batch-prediction signature."""

    def __init__(self, path: str):
        extra = os.path.join(path, "assets.extra")
        if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            raise UserError(f"no SavedModel in {path} (expected BASE/NAME/VERSION from `yt8m-keras export`)")
        self.recipe = recipe_from_dict(read_yaml(os.path.join(extra, "recipe.yaml")))
        if self.recipe.task not in ("yt8m_video", "yt8m_segment"):
            raise UserError(f"{path} is a {self.recipe.task} model, not a YouTube-8M one")
        self.classes = read_classes(extra)
        self.path = path
        self._loaded = tf.saved_model.load(path)

    def segment_scores(self, segments: Dict[str, tf.Tensor]) -> np.ndarray:
        if self.recipe.task == "yt8m_segment":
            inputs = _dequantized({key: segments[key] for key in SEGMENT_KEYS + FRAME_KEYS})
            return self._loaded.signatures["segments"](**inputs)["predictions"].numpy()
        inputs = _dequantized(_as_video_inputs(segments))
        return self._loaded.signatures["frames"](**inputs)["predictions"].numpy()

    def video_scores(self, videos: Dict[str, tf.Tensor]) -> np.ndarray:
        if self.recipe.task != "yt8m_video":
            raise UserError(f"{self.path} scores segments; --task videos needs a video-level model")
        inputs = _dequantized({key: videos[key] for key in FRAME_KEYS})
        return self._loaded.signatures["frames"](**inputs)["predictions"].numpy()


def load_models(paths: Sequence[str], data_dir: str) -> List[ExportedModel]:
    """The exported models, checked to share one class vocabulary with each other and with `data_dir`."""
    models = [ExportedModel(path) for path in paths]
    ids = [[c["category_id"] for c in m.classes] for m in models]
    if any(i != ids[0] for i in ids):
        raise UserError("the models were trained on different class vocabularies; they cannot be averaged")
    check_same_classes(models[0].classes, os.path.join(models[0].path, "assets.extra"), data_dir)
    return models


def predict_segments(model_paths: Sequence[str], data_dir: str, output: str, split: str = "test",
                     k: int = SEGMENT_K, drop_first: int = 0, drop_last: int = 0, videos_per_batch: int = 8,
                     progress: bool = True) -> int:
    """Writes the 2019 challenge's `Class,Segments` file; returns the number of segments scored."""
    models = load_models(model_paths, data_dir)
    recipe = models[0].recipe
    topk = SegmentTopK(len(models[0].classes), k=k)
    count = 0
    bar = Progress("segments") if progress else None
    for videos in data.video_segment_dataset(data_dir, split, videos_per_batch=videos_per_batch,
                                             max_frames=recipe.data.max_frames, drop_first=drop_first,
                                             drop_last=drop_last):
        segments = data.flatten_segments(videos, recipe.data.context_frames)
        keys = [f"{vid.decode()}:{start}" for vid, start in zip(segments[kind.ID].numpy(),
                                                                segments["start_time"].numpy())]
        if not keys:
            continue
        topk.update(keys, average_models([m.segment_scores(segments) for m in models]))
        count += len(keys)
        if bar is not None:
            bar.update(len(keys))
    if bar is not None:
        bar.close()
    write_segment_submission(output, topk, [c["category_id"] for c in models[0].classes])
    return count


def predict_videos(model_paths: Sequence[str], data_dir: str, output: str, split: str = "test",
                   top_k: int = 20, videos_per_batch: int = 32) -> int:
    """Writes the 2nd challenge's `VideoId,LabelConfidencePairs` file; returns the number of videos."""
    models = load_models(model_paths, data_dir)
    recipe = models[0].recipe
    count = 0
    with VideoSubmissionWriter(output, [c["category_id"] for c in models[0].classes], top_k=top_k) as writer:
        for videos in data.video_segment_dataset(data_dir, split, videos_per_batch=videos_per_batch,
                                                 max_frames=recipe.data.max_frames):
            ids = [vid.decode() for vid in videos[kind.ID].numpy()]
            writer.add(ids, average_models([m.video_scores(videos) for m in models]))
            count += len(ids)
    return count
