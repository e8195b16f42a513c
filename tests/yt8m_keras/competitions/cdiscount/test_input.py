import collections

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import UserError
from yt8m_keras.competitions.cdiscount import task
from yt8m_keras.competitions.cdiscount.augment import augment
from yt8m_keras.data.images import decode
from yt8m_keras.models.augmentation import CdiscountAugmentation
from yt8m_keras.competitions.cdiscount.input import image_dataset, product_dataset
from yt8m_keras.recipes import load_recipe

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

    def first_batches(seed):
        ds = image_dataset(out, "train", batch_size=8, image_size=SIZE, seed=seed)
        return [(x.numpy(), y.numpy()) for x, y in ds.take(3)]

    a, b, c = first_batches(3), first_batches(3), first_batches(4)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))
    unshuffled = [y.numpy() for _, y in image_dataset(out, "train", batch_size=8, image_size=SIZE,
                                                       shuffle=False).take(3)]
    assert any(not np.array_equal(ya, yu) for (_, ya), yu in zip(a, unshuffled))


def _decoded_train_images(data_dir):
    """Every train image as `decode` gives it (the product stream decodes the same way)."""
    decoded = []
    for batch in product_dataset(data_dir, "train", batch_size=16, image_size=SIZE):
        for images, n in zip(batch["images"].numpy(), batch["num_images"].numpy()):
            decoded.extend(images[:n])
    return np.stack(decoded)


def test_training_stream_is_decoded_images_only(cdiscount_data):
    """The task's training stream (recipe with `data.augment: true`) neither crops nor flips:
    augmentation runs at the model's front. Every image is one of the decoded images, as is."""
    out, _ = cdiscount_data
    recipe = load_recipe("cdiscount_xception:tiny", [f"data.image_size={SIZE}"])
    assert recipe.data.augment
    decoded = _decoded_train_images(out).reshape(-1, SIZE * SIZE * 3)
    batches = 0
    for images, _ in task.train_dataset(recipe, out, global_batch=16).take(3):
        batches += 1
        for image in images.numpy().reshape(-1, SIZE * SIZE * 3):
            # 1 in 8 augmented images would be neither cropped nor flipped; 48 images pass
            # here only if none of them is.
            assert np.abs(decoded - image).max(axis=1).min() < 1e-3
    assert batches == 3


def test_batch_shapes_are_static_for_training(cdiscount_data):
    out, _ = cdiscount_data
    ds = image_dataset(out, "train", batch_size=8, image_size=SIZE)
    spec = ds.element_spec
    assert spec[0].shape == (8, SIZE, SIZE, 3) and spec[1].shape == (8,)
    # Strategies split batches, not shard files (see input._shard_by_data).
    assert ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


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


def test_tta_augment_and_the_training_layer_draw_the_same_distribution():
    """Test-time `augment` (stateless, per image) and training's `CdiscountAugmentation`
    (batched, at the model's front) give the same outcomes with the same probabilities."""
    n, size = 600, 32  # resized to 36: 25 crop offsets
    image = tf.random.stateless_uniform([size, size, 3], seed=[3, 4], maxval=255.0).numpy()
    big = round(size * 200 / 180)
    resized = tf.image.resize(image, [big, big]).numpy()
    outcomes = {("none", False): image, ("none", True): image[:, ::-1]}
    for y in range(big - size + 1):
        for x in range(big - size + 1):
            crop = resized[y:y + size, x:x + size]
            outcomes[((y, x), False)], outcomes[((y, x), True)] = crop, crop[:, ::-1]
    keys = list(outcomes)
    family = np.stack([outcomes[k] for k in keys]).reshape(len(keys), -1)

    def shares(augmented):
        picked = []
        for out in augmented.reshape(n, -1):
            distance = np.abs(family - out).max(axis=1)
            assert distance.min() < 1e-3  # one of the outcomes above
            picked.append(keys[int(distance.argmin())])
        return np.mean([where != "none" for where, _ in picked]), np.mean([flip for _, flip in picked])

    seeds = tf.constant([[5, i] for i in range(n)], tf.int64)
    tta = np.stack(list(tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: augment(image, s, size))
                        .as_numpy_iterator()))
    layer = CdiscountAugmentation(seed=5)
    training = np.asarray(layer(np.repeat(image[None], n, axis=0), training=True))
    for cropped, flipped in (shares(tta), shares(training)):
        # 4 binomial standard deviations of the share over n draws.
        assert abs(cropped - 0.75) < 4 * np.sqrt(0.75 * 0.25 / n)
        assert abs(flipped - 0.5) < 4 * np.sqrt(0.25 / n)


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
