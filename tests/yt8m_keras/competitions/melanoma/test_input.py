"""The training and validation streams equal the plain per-record pipeline, batch for batch.

`train_dataset` filters, shuffles and batches serialized records and parses and decodes a whole
batch at once (the host's cost per image); the reference here is what that replaces: parse
each record, drop the unlabelled, shuffle with the seed, build each image's inputs with
`model_inputs` (what evaluation and serving use), batch.
"""

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import melanoma_image as kind
from tfrecords.manifest import shard_name, write_manifest
from yt8m_keras.competitions.melanoma import input as data
from yt8m_keras.data.shards import records


@pytest.fixture(scope="module")
def ours_dir(tmp_path_factory):
    """Our layout: 2 folds of 2 gzip shards, 16 px images, a few test rows, one record at 20 px."""
    out = tmp_path_factory.mktemp("ours")
    rng = np.random.default_rng(0)
    names, folds = [], []
    for shard in range(4):
        name = shard_name("train", shard, 4, "gzip")
        with tf.io.TFRecordWriter(str(out / name), options="GZIP") as writer:
            for i in range(9):
                n = shard * 9 + i
                side = 20 if n == 13 else 16
                jpeg = tf.io.encode_jpeg(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).numpy()
                labelled = n % 7 != 3
                writer.write(kind.encode(jpeg, f"ISIC_{n:07d}", sex=n % 3 - 1, age_approx=30 + n, site=n % 8 - 1,
                                         class_index=n % 9 if labelled else kind.MISSING, file_size=1000 + n,
                                         patient_images=1 + n % 4, fold=shard // 2))
        names.append(name)
        folds.append(shard // 2)
    write_manifest(str(out), {"kind": kind.KIND, "schema_version": kind.SCHEMA_VERSION, "input_records": 36,
                              "rejected": 0, "compression": "gzip", "folds": 2,
                              "splits": {"train": {"records": 36, "shards": names, "folds": folds}}})
    return str(out)


def _reference(directory, fold, batch_size, image_size, folds, seed=None, shuffle_buffer=0):
    src = data.source(directory)
    paths = data.fold_paths(src, fold, validation=seed is None, folds=folds)
    ds = data._parsed(paths, src, shuffle=seed is not None, seed=seed or 0)
    ds = ds.filter(lambda f: f[kind.CLASS_INDEX] >= 0)
    if seed is not None:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(lambda f: (data.model_inputs(f, image_size), f[kind.CLASS_INDEX]))
    return ds.batch(batch_size, drop_remainder=seed is not None)


def _arrays(ds, batches):
    return [(f["image"].numpy(), f["metadata"].numpy(), labels.numpy()) for (f, labels), _ in zip(ds, range(batches))]


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        for a, b in zip(g, e):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("image_size", [16, 12])  # as recorded (20 px resized); all resized
def test_train_stream_is_the_per_record_pipeline_and_resumes(ours_dir, image_size):
    args = dict(fold=1, batch_size=4, image_size=image_size, folds=2)
    expected = _arrays(_reference(ours_dir, **args, seed=5, shuffle_buffer=8), 12)  # 15 labelled: 3+ passes
    stream = data.train_dataset(ours_dir, **args, seed=5, shuffle_buffer=8)
    assert stream.element_spec[0]["image"] == tf.TensorSpec([4, image_size, image_size, 3], tf.uint8)
    _assert_same(_arrays(stream, 12), expected)
    _assert_same(_arrays(data.train_dataset(ours_dir, **args, seed=5, shuffle_buffer=8, skip_batches=5), 7),
                 expected[5:])
    labels = np.concatenate([e[2] for e in expected])
    assert labels.min() >= 0 and set(labels) == {n % 9 for n in range(18) if n % 7 != 3}  # fold 0 only


def test_validation_stream_keeps_shard_order_and_the_last_partial_batch(ours_dir):
    got = _arrays(data.val_dataset(ours_dir, fold=1, batch_size=4, image_size=16, folds=2), 100)
    _assert_same(got, _arrays(_reference(ours_dir, fold=1, batch_size=4, image_size=16, folds=2), 100))
    assert [len(g[2]) for g in got] == [4, 4, 4, 4]  # 18 records of fold 1, 2 unlabelled


def test_deotte_streams_join_his_csv_per_batch(deotte_dir):
    directory, _ = deotte_dir
    args = dict(fold=0, batch_size=5, image_size=24, folds=2)
    _assert_same(_arrays(data.train_dataset(directory, **args, seed=2, shuffle_buffer=6, skip_batches=2), 6),
                 _arrays(_reference(directory, **args, seed=2, shuffle_buffer=6), 8)[2:])
    _assert_same(_arrays(data.val_dataset(directory, **args), 100), _arrays(_reference(directory, **args), 100))


def test_every_labelled_record_of_the_training_folds_is_seen_once_per_pass(ours_dir):
    src = data.source(ours_dir)
    expected = sorted(int(kind.parse(r)[kind.FILE_SIZE]) for r in records(data.fold_paths(src, 1, False, 2), "GZIP")
                      if kind.parse(r)[kind.CLASS_INDEX] >= 0)
    (features, _), = data.train_dataset(ours_dir, fold=1, batch_size=len(expected), image_size=16, folds=2,
                                        seed=0).take(1)
    sizes = np.rint(np.exp(features["metadata"].numpy()[:, -1] * 10.0)).astype(int)  # log(file_size) / 10
    assert sorted(sizes) == expected
