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

import functools
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
from yt8m_keras.competitions.youtube8m.topk import SegmentTopK, average_models, video_lines, write_segment_submission
from yt8m_keras.inference import (Files, Plan, Submission, fixed_batches, load_saved_model, require_saved_model,
                                  run_local, write_text)
from yt8m_keras.competitions.youtube8m.metrics import SEGMENT_K, VideoMetrics, segment_map_at_k

FRAME_KEYS = (kind.RGB, kind.AUDIO, "mask")
SEGMENT_KEYS = ("segment_rgb", "segment_audio", "segment_mask")


def _as_video_inputs(features: Dict) -> Dict:
    """A segment's frames fed to a video-level model (the context-agnostic way)."""
    return {key: features[f"segment_{key}"] for key in FRAME_KEYS}


def _dequantized(features: Dict) -> Dict:
    """The pipeline's uint8 frames -> the dequantized float32 frames the exported `frames` and
    `segments` signatures take (they quantize them back exactly); other keys unchanged."""
    return {key: kind.dequantize(value) if key.endswith((kind.RGB, kind.AUDIO)) and np.asarray(value).dtype.kind == "u"
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
    """An exported YouTube-8M model: its recipe, classes and batch-prediction signatures.

    Every signature call has exactly `batch_size` rows (`fixed_batches`), so a segment's or
    a video's scores never depend on what it was batched with.
    """

    def __init__(self, path: str, batch_size: int = 64):
        extra = os.path.join(require_saved_model(path), "assets.extra")
        self.recipe = recipe_from_dict(read_yaml(os.path.join(extra, "recipe.yaml")))
        if self.recipe.task not in ("yt8m_video", "yt8m_segment"):
            raise UserError(f"{path} is a {self.recipe.task} model, not a YouTube-8M one")
        self.classes = read_classes(extra)
        self.path = path
        self.batch_size = batch_size

    @functools.cached_property
    def _loaded(self):  # loaded when first scoring: a launcher that only checks models never loads them
        return load_saved_model(self.path)

    def _call(self, signature: str, inputs: Dict) -> np.ndarray:
        function = self._loaded.signatures[signature]
        return fixed_batches(lambda rows: function(**_dequantized(rows))["predictions"].numpy(),
                             {key: np.asarray(value) for key, value in inputs.items()}, self.batch_size)

    def segment_scores(self, segments: Dict[str, tf.Tensor]) -> np.ndarray:
        if self.recipe.task == "yt8m_segment":
            return self._call("segments", {key: segments[key] for key in SEGMENT_KEYS + FRAME_KEYS})
        return self._call("frames", _as_video_inputs(segments))

    def video_scores(self, videos: Dict[str, tf.Tensor]) -> np.ndarray:
        return self._call("frames", {key: videos[key] for key in FRAME_KEYS})


def load_models(paths: Sequence[str], data_dir: str) -> List[ExportedModel]:
    """The exported models, checked to share one class vocabulary with each other and with `data_dir`."""
    models = [ExportedModel(path) for path in paths]
    ids = [[c["category_id"] for c in m.classes] for m in models]
    if any(i != ids[0] for i in ids):
        raise UserError("the models were trained on different class vocabularies; they cannot be averaged")
    check_same_classes(models[0].classes, os.path.join(models[0].path, "assets.extra"), data_dir)
    return models


class VideoScorer:
    """Serialized videos -> per video (id, submission line) or (segment keys, segment scores).

    Args:
        model_paths: exported models, averaged.
        segments: score segments (the 2019 challenge) instead of videos.
        drop_first, drop_last: segments skipped at each video's start and end.
        top_k: label/score pairs per video line.
    """

    def __init__(self, model_paths: Sequence[str], segments: bool, drop_first: int = 0, drop_last: int = 0,
                 top_k: int = 20):
        self.models = [ExportedModel(path) for path in model_paths]
        self.recipe = self.models[0].recipe
        self.class_ids = [str(c["category_id"]) for c in self.models[0].classes]
        self.segments, self.drop_first, self.drop_last, self.top_k = segments, drop_first, drop_last, top_k

    def __call__(self, records: List[bytes]) -> List[tuple]:
        videos = data.decode_videos(records, len(self.class_ids), self.recipe.data.max_frames,
                                    drop_first=self.drop_first, drop_last=self.drop_last)
        if not self.segments:
            scores = average_models([m.video_scores(videos) for m in self.models])
            ids = [vid.decode() for vid in videos[kind.ID].numpy()]
            return list(zip(ids, video_lines(ids, scores, self.class_ids, min(self.top_k, len(self.class_ids)))))
        segments = data.flatten_segments(videos, self.recipe.data.context_frames)
        rows = [(np.zeros(0, str), np.zeros((0, len(self.class_ids)), np.float32)) for _ in records]
        if segments[kind.ID].shape[0] == 0:
            return rows
        scores = average_models([m.segment_scores(segments) for m in self.models])
        keys = np.array([f"{vid.decode()}:{start}" for vid, start in zip(segments[kind.ID].numpy(),
                                                                         segments["start_time"].numpy())])
        # Segments come in video order: cut them back into one row per record.
        counts = np.count_nonzero(videos["start_time"].numpy() >= 0, axis=1)
        ends = np.cumsum(counts)
        return [(keys[end - count:end], scores[end - count:end]) for count, end in zip(counts, ends)]


class _TopK:
    """A segment submission's accumulator: a `SegmentTopK` fed in blocks of rows."""

    BLOCK = 4096  # segments offered to the top-K per update: one vectorised pass each

    def __init__(self, num_classes: int, k: int):
        self.topk = SegmentTopK(num_classes, k=k)
        self.pending: List[tuple] = []
        self.pending_rows = 0

    def add(self, keys: np.ndarray, scores: np.ndarray) -> None:
        self.pending.append((keys, scores))
        self.pending_rows += len(keys)
        if self.pending_rows >= self.BLOCK:
            self.flush()

    def flush(self) -> "_TopK":
        if self.pending_rows:
            self.topk.update(np.concatenate([keys for keys, _ in self.pending]),
                             np.concatenate([scores for _, scores in self.pending]))
        self.pending, self.pending_rows = [], 0
        return self


class SegmentSubmission(Submission):
    """The 2019 challenge's `Class,Segments`: per class the best K segments (bounded memory)."""

    def __init__(self, class_ids: Sequence, k: int):
        self.class_ids, self.k = list(class_ids), k

    def create(self) -> _TopK:
        return _TopK(len(self.class_ids), self.k)

    def add(self, accumulator: _TopK, row: tuple) -> _TopK:
        accumulator.add(*row)
        return accumulator

    def merge(self, accumulators) -> _TopK:
        accumulators = iter(accumulators)
        merged = next(accumulators).flush()
        for other in accumulators:
            merged.topk.merge(other.flush().topk)
        return merged

    def write(self, accumulator: _TopK, path: str) -> Dict:
        topk = accumulator.flush().topk
        write_segment_submission(path, topk, self.class_ids)
        return {"segments": topk.segments_seen,
                "text": f"wrote {path}: {topk.segments_seen} segments scored, the best {self.k} per class kept"}


class VideoSubmission(Submission):
    """The 2nd challenge's `VideoId,LabelConfidencePairs`, sorted by video id."""

    def write_rows(self, rows: List[tuple], path: str) -> Dict:
        write_text(path, "VideoId,LabelConfidencePairs\n" + "".join(line for _, line in sorted(rows)))
        return {"videos": len(rows), "text": f"wrote {path}: {len(rows)} videos"}


def plan(model_paths: Sequence[str], data_dir: str, split: str = "test", segments: bool = True,
         k: int = SEGMENT_K, drop_first: int = 0, drop_last: int = 0, top_k: int = 20,
         videos_per_batch: int = 8) -> Plan:
    """Batch inference of `split`: segments (`Class,Segments`) or videos (`VideoId,LabelConfidencePairs`)."""
    models = load_models(model_paths, data_dir)
    for model in models:
        if not segments and model.recipe.task != "yt8m_video":
            raise UserError(f"{model.path} scores segments; --task videos needs a video-level model")
    class_ids = [c["category_id"] for c in models[0].classes]
    paths, compression, _ = data.split_files(data_dir, split)
    scorer = functools.partial(VideoScorer, list(model_paths), segments, drop_first, drop_last, top_k)
    submission = SegmentSubmission(class_ids, k) if segments else VideoSubmission()
    return Plan(Files(paths, compression), scorer, submission, videos_per_batch, "videos")


def predict_segments(model_paths: Sequence[str], data_dir: str, output: str, split: str = "test",
                     k: int = SEGMENT_K, drop_first: int = 0, drop_last: int = 0, videos_per_batch: int = 8,
                     progress: bool = True) -> int:
    """Writes the 2019 challenge's `Class,Segments` file; returns the number of segments scored."""
    return run_local(plan(model_paths, data_dir, split, True, k, drop_first, drop_last,
                          videos_per_batch=videos_per_batch), output, progress)["segments"]


def predict_videos(model_paths: Sequence[str], data_dir: str, output: str, split: str = "test",
                   top_k: int = 20, videos_per_batch: int = 32) -> int:
    """Writes the 2nd challenge's `VideoId,LabelConfidencePairs` file; returns the number of videos."""
    return run_local(plan(model_paths, data_dir, split, False, top_k=top_k, videos_per_batch=videos_per_batch),
                     output)["videos"]
