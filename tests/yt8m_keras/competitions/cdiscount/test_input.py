import collections

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import UserError
from yt8m_keras.competitions.cdiscount.augment import augment
from yt8m_keras.data.images import decode
from yt8m_keras.competitions.cdiscount.input import image_dataset, product_dataset

SIZE = 64


def _expected_labels(cdiscount_data, split):
    out, manifest = cdiscount_data
    labels = collections.Counter()
    for batch in product_dataset(out, split, batch_size=16, image_size=8):
        for label, n in zip(batch["label"].numpy(), batch["num_images"].numpy()):
            labels[int(label)] += int(n)
    return labels


def test_image_stream_gives_every_image_once_per_epoch(cdiscount_data):
    out, _ = cdiscount_data
    labels = collections.Counter()
    for images, batch_labels in image_dataset(out, "train", batch_size=16, image_size=SIZE, repeat=False,
                                              drop_remainder=False, seed=1):
        assert images.dtype == tf.float32 and images.shape[1:] == (SIZE, SIZE, 3)
        assert 0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255
        labels.update(batch_labels.numpy().tolist())
    assert labels == _expected_labels(cdiscount_data, "train")
    assert sum(labels.values()) > 120  # products have 1-4 images


def test_image_stream_is_deterministic_for_a_seed_and_shuffled(cdiscount_data):
    out, _ = cdiscount_data

    def first_batches(seed, augment):
        ds = image_dataset(out, "train", batch_size=8, image_size=SIZE, augment=augment, seed=seed)
        return [(x.numpy(), y.numpy()) for x, y in ds.take(3)]

    a, b, c = first_batches(3, True), first_batches(3, True), first_batches(4, True)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))
    unshuffled = [y.numpy() for _, y in image_dataset(out, "train", batch_size=8, image_size=SIZE,
                                                       shuffle=False).take(3)]
    assert any(not np.array_equal(ya, yu) for (_, ya), yu in zip(a, unshuffled))


def test_batch_shapes_are_static_for_training(cdiscount_data):
    out, _ = cdiscount_data
    spec = image_dataset(out, "train", batch_size=8, image_size=SIZE).element_spec
    assert spec[0].shape == (8, SIZE, SIZE, 3) and spec[1].shape == (8,)


def test_augment_is_the_same_eagerly_and_in_tf_data():
    image = tf.random.stateless_uniform([SIZE, SIZE, 3], seed=[1, 2], maxval=255.0)
    seeds = tf.constant([[0, i] for i in range(16)], tf.int64)
    eager = np.stack([augment(image, s, SIZE).numpy() for s in seeds])
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: augment(image, s, SIZE))
    np.testing.assert_allclose(np.stack(list(ds.as_numpy_iterator())), eager, atol=1e-4)
    flipped = [np.allclose(e, image.numpy()[:, ::-1]) for e in eager]
    unchanged = [np.allclose(e, image.numpy()) for e in eager]
    assert any(flipped) and any(unchanged)  # 16 draws: both outcomes occur
    assert not all(f or u for f, u in zip(flipped, unchanged))  # and some are crops


def test_decode_resizes_real_jpeg(cdiscount_data):
    out, _ = cdiscount_data
    jpeg = tf.io.encode_jpeg(tf.zeros([180, 180, 3], tf.uint8) + 200)
    image = decode(jpeg, 32)
    assert image.shape == (32, 32, 3) and abs(float(tf.reduce_mean(image)) - 200) < 2


def test_product_stream_keeps_products_whole(cdiscount_data):
    out, manifest = cdiscount_data
    ids = []
    for batch in product_dataset(out, "test", batch_size=7, image_size=SIZE):
        n = batch["num_images"].numpy()
        images = batch["images"].numpy()
        assert images.shape[1:] == (4, SIZE, SIZE, 3)
        for i, k in enumerate(n):
            assert k in range(1, 5)
            assert images[i, :k].max() > 0 and not images[i, k:].any()  # padding after the real images
        assert (batch["label"].numpy() == -1).all()
        ids += batch["product_id"].numpy().tolist()
    assert len(ids) == len(set(ids)) == manifest["splits"]["test"]["records"]


def test_missing_split_and_directory_are_user_errors(cdiscount_data, tmp_path):
    out, _ = cdiscount_data
    with pytest.raises(UserError, match="no 'holdout' split"):
        image_dataset(out, "holdout")
    with pytest.raises(UserError, match="no manifest.json"):
        product_dataset(str(tmp_path))
