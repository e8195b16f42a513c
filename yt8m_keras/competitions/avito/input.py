"""tf.data streams of `avito_ad` records for the language model and the network.

Both hold out the training ads of fold `fold` (folds are grouped by seller). The language
model also reads the test ads' text (the seed pretrained on train and test); the network
reads training ads only, with the picture's CNN features gathered by row from the
features memmap (`ImageFeatures`): the host reads float16 rows, nothing is decoded.
"""

import json
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import avito_ad as kind
from tfrecords.manifest import compression_type, read_manifest, shard_paths
from yt8m_keras.data.shards import AUTOTUNE, deterministic, records

IMAGE_FEATURES = "image_features"  # the features job's directory inside the data


class ImageFeatures:
    """One preprocessing's CNN features of every ad, memory-mapped: rows -> (features, mask).

    Args:
        directory: the image-feature job's output (`center.npy`, `pad.npy`, `mask.npy`, `info.json`).
        variant: "center" or "pad".
    """

    def __init__(self, directory: str, variant: str):
        path = os.path.join(directory, f"{variant}.npy")
        if not os.path.exists(path):
            raise UserError(f"no {variant}.npy in {directory}: run `yt8m-keras features --data DATA` first")
        self.directory, self.variant = directory, variant
        self.features = np.load(path, mmap_mode="r")
        self.mask = np.load(os.path.join(directory, "mask.npy"), mmap_mode="r")
        with open(os.path.join(directory, "info.json")) as f:
            self.info = json.load(f)
        self.dim = int(self.features.shape[1])

    def gather(self, rows: np.ndarray):
        rows = np.asarray(rows, np.int64)
        return (np.asarray(self.features[rows], np.float32),
                np.asarray(self.mask[rows], np.float32).reshape(-1, 1))

    def attach(self, inputs: Dict[str, tf.Tensor], rows: tf.Tensor) -> Dict[str, tf.Tensor]:
        features, mask = tf.numpy_function(self.gather, [rows], (tf.float32, tf.float32), stateful=False)
        inputs["image_features"] = tf.ensure_shape(features, [None, self.dim])
        inputs["image_mask"] = tf.ensure_shape(mask, [None, 1])
        return inputs


def image_features(data_dir: str, variant: str) -> Optional[ImageFeatures]:
    return ImageFeatures(os.path.join(data_dir, IMAGE_FEATURES), variant) if variant else None


def _parsed(data_dir: str, splits, shuffle: bool, seed: int) -> tf.data.Dataset:
    manifest = read_manifest(data_dir, kind=kind.KIND)
    paths = [p for split in splits for p in shard_paths(data_dir, manifest, split)]
    return records(paths, compression_type(manifest), shuffle=shuffle, seed=seed).map(
        kind.parse, num_parallel_calls=AUTOTUNE, deterministic=True)


def _in_fold(fold: int, validation: bool, include_test: bool = False):
    def keep(f):
        if validation:
            return tf.equal(f[kind.FOLD], fold)
        held_out = tf.equal(f[kind.FOLD], fold)
        is_test = tf.equal(f[kind.FOLD], kind.MISSING)
        return ~held_out & (include_test | ~is_test)
    return keep


def _stream(ds, batch_size, seed, shuffle_buffer, skip_batches, train: bool):
    if train:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        ds = ds.skip(skip_batches * batch_size)
    return ds.batch(batch_size, drop_remainder=train)


def network_dataset(data_dir: str, preprocessor, batch_size: int, fold: int, validation: bool,
                    images: Optional[ImageFeatures], seed: int = 0, shuffle_buffer: int = 8192,
                    skip_batches: int = 0) -> tf.data.Dataset:
    """(inputs, deal_probability) batches of training ads: all folds but `fold`, or (validation) fold `fold`."""
    ds = _parsed(data_dir, ["train"], shuffle=not validation, seed=seed).filter(_in_fold(fold, validation))
    ds = _stream(ds, batch_size, seed, shuffle_buffer, skip_batches, train=not validation)

    def to_inputs(f):
        inputs = preprocessor(f)
        if images is not None:
            inputs = images.attach(inputs, f[kind.ROW])
        return inputs, f[kind.TARGET][:, None]

    return deterministic(ds.map(to_inputs, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE))


def language_model_dataset(data_dir: str, preprocessor, batch_size: int, fold: int, validation: bool,
                           seed: int = 0, shuffle_buffer: int = 8192, skip_batches: int = 0,
                           one_pass: bool = False) -> tf.data.Dataset:
    """(tokens, next tokens, weights) of title + description: train and test ads but fold `fold`, or fold `fold`.

    The training text is an endless shuffled stream, unless `one_pass` (in shard order, once).
    """
    endless = not validation and not one_pass
    ds = _parsed(data_dir, ["train", "test"] if not validation else ["train"], shuffle=endless, seed=seed)
    ds = _stream(ds.filter(_in_fold(fold, validation, include_test=True)), batch_size, seed, shuffle_buffer,
                 skip_batches, train=endless)

    def shifted(f):
        ids = preprocessor.token_ids(f[kind.TITLE], f[kind.DESCRIPTION])
        return ids[:, :-1], ids[:, 1:], tf.cast(ids[:, 1:] != 0, tf.float32)

    return deterministic(ds.map(shifted, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE))


def all_ads(data_dir: str, preprocessor, batch_size: int, images: Optional[ImageFeatures]) -> tf.data.Dataset:
    """Every ad of every split, in shard order: (inputs, {row, item_id, fold, target})."""
    manifest = read_manifest(data_dir, kind=kind.KIND)
    ds = _parsed(data_dir, sorted(manifest["splits"]), shuffle=False, seed=0).batch(batch_size)

    def to_inputs(f):
        inputs = preprocessor(f)
        if images is not None:
            inputs = images.attach(inputs, f[kind.ROW])
        return inputs, {k: f[k] for k in (kind.ROW, kind.ITEM_ID, kind.FOLD, kind.TARGET)}

    return ds.map(to_inputs, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)
