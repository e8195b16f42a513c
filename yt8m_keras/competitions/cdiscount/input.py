"""tf.data input for `cdiscount_product` shards.

Two streams over the same records:

- `image_dataset`: the training stream. Products are flattened to images (each
  with its product's label), shuffled across shards and products and decoded;
  batches of (images, labels). Nothing more: the random crop and flip run at the
  model's front, batched (`CdiscountAugmentation`, DESIGN.md "Augmentation").
- `product_dataset`: the evaluation stream. All images of a product stay
  together, with its product_id, so predictions can be combined per product.

Example:

>>> ds = image_dataset("data/cdiscount", "train", batch_size=64, seed=1)
>>> images, labels = next(iter(ds))   # [64, 180, 180, 3] float32, [64] int64
"""

import tensorflow as tf

from tfrecords import cdiscount_product as kind
from tfrecords.manifest import compression_type, read_manifest, shard_paths
from yt8m_keras.data.images import decode
from yt8m_keras.data.shards import deterministic, records

AUTOTUNE = tf.data.AUTOTUNE


def shard_files(data_dir: str, split: str):
    """The split's shard paths and their TFRecord compression, from the manifest."""
    manifest = read_manifest(data_dir, kind.KIND, kind.SCHEMA_VERSION)
    return shard_paths(data_dir, manifest, split), compression_type(manifest)


def _images_with_labels(features):
    images = features[kind.IMAGES]
    return images, tf.fill(tf.shape(images), features[kind.LABEL])


def image_dataset(data_dir: str, split: str = "train", batch_size: int = 64, image_size: int = 180,
                  shuffle: bool = True, seed: int = 0, repeat: bool = True,
                  shuffle_buffer: int = 8192, drop_remainder: bool = True,
                  skip_batches: int = 0) -> tf.data.Dataset:
    """Batches of (images float32 [B, S, S, 3] in [0, 255], labels int64 [B]), one entry per image.

    Images are decoded and resized to `image_size` (float32, as the model's `images`
    input and the serving signatures take them) and never augmented here.

    Args:
        data_dir: a directory written by `yt8m-keras convert bson`.
        split: "train", "val" or "test".
        batch_size: images per batch.
        image_size: decoded images are resized to this square side.
        shuffle: shuffle shards and images (with `seed`).
        seed: the same seed gives the same stream, batch for batch.
        repeat: repeat forever (epochs are then `steps_per_epoch` long).
        shuffle_buffer: images in the shuffle buffer.
        drop_remainder: drop the last partial batch (static batch size for TPUs).
        skip_batches: start after this many batches of the same stream (a resumed
            run); skipped images are never decoded.
    """
    paths, compression = shard_files(data_dir, split)
    ds = records(paths, compression, shuffle=shuffle, seed=seed)
    ds = ds.map(kind.parse, num_parallel_calls=AUTOTUNE).map(_images_with_labels).unbatch()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.skip(skip_batches * batch_size)
    ds = ds.map(lambda jpeg, label: (decode(jpeg, image_size), label), num_parallel_calls=AUTOTUNE,
                deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)
    return _shard_by_data(deterministic(ds))


def _shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Distribution strategies split this stream by batches (DATA), never by shard files.

    FILE sharding (what AUTO picks for a file reader) fails with fewer shards than workers,
    and under it a last partial batch of 7 images on 2 replicas splits 7 + 0 rather than
    4 + 3: TensorFlow's CPU convolutions mishandle the empty piece. DATA is also what AUTO
    fell back to while the stream was `enumerate`d (a range source), so runs split as before.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def product_dataset(data_dir: str, split: str = "val", batch_size: int = 32,
                    image_size: int = 180) -> tf.data.Dataset:
    """Batches of whole products, in shard order, for evaluation and prediction.

    Each element is a dict: `product_id` [B], `label` [B] (-1 for test),
    `category_id` [B], `num_images` [B] and `images` [B, MAX_IMAGES, S, S, 3]
    (zero-padded after `num_images`).
    """
    return deterministic(batch_products(records(*shard_files(data_dir, split)), batch_size, image_size)
                         .prefetch(AUTOTUNE))


def batch_products(serialized: tf.data.Dataset, batch_size: int, image_size: int) -> tf.data.Dataset:
    """Serialized products -> `product_dataset`'s batches (what evaluation and batch inference decode)."""
    def prepare(record):
        features = kind.parse(record)
        images = tf.map_fn(lambda jpeg: decode(jpeg, image_size), features[kind.IMAGES],
                           fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
        return {
            kind.PRODUCT_ID: features[kind.PRODUCT_ID],
            kind.LABEL: features[kind.LABEL],
            kind.CATEGORY_ID: features[kind.CATEGORY_ID],
            kind.NUM_IMAGES: features[kind.NUM_IMAGES],
            kind.IMAGES: images,
        }

    ds = serialized.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.padded_batch(batch_size, padded_shapes={
        kind.PRODUCT_ID: [], kind.LABEL: [], kind.CATEGORY_ID: [], kind.NUM_IMAGES: [],
        kind.IMAGES: [kind.MAX_IMAGES, image_size, image_size, 3]})
