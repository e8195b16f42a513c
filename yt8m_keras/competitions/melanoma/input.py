"""tf.data input for `melanoma_image` shards: ours (with a manifest) or Chris Deotte's as they are.

Two kinds of directory are read the same way:

- ours, written by `yt8m-keras convert melanoma`: `manifest.json` lists the train shards with
  their folds, the test shards and the flagged duplicates (never read for training);
- Deotte's (`train%.2i-%i.tfrec` with his processed `train.csv`, no manifest): train shard i
  belongs to fold `i // (shards / folds)`; the 9-class target comes from the CSV's `diagnosis`
  strings and the metadata from its `sex`, `age_approx`, `anatom_site_general_challenge`
  (joined on `image_name`); images whose `tfrecord` is -1 (duplicates) are dropped.

The host parses and decodes (uint8) and nothing more: augmentation runs at the model's front.
Images are resized only when the records' size differs from the recipe's.

Example:

>>> ds = train_dataset("data/melanoma", fold=0, batch_size=64, image_size=384)  # folds 1-4
>>> features, labels = next(iter(ds))  # {"image": uint8 [64, 384, 384, 3], "metadata": [64, 11]}, [64]
"""

import csv
import posixpath
import re
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import melanoma_image as kind
from tfrecords.features import parse_examples
from tfrecords.manifest import MANIFEST, compression_type, read_manifest, shard_paths
from yt8m_keras.competitions.melanoma.features import codes_from_strings, metadata
from yt8m_keras.data.shards import AUTOTUNE, deterministic, records

DEOTTE_SHARD = re.compile(r"^(train|test)(\d+)-(\d+)\.tfrec$")
DEOTTE_CSV = "train.csv"
# What training reads of a record (Deotte's also his image_name, to join his CSV).
TRAIN_KEYS = (kind.IMAGE, kind.CLASS_INDEX, kind.SEX, kind.AGE, kind.SITE, kind.PATIENT_IMAGES, kind.FILE_SIZE)


class Source(NamedTuple):
    """Where a directory's records are, and how to complete them (Deotte's lack our extra keys)."""

    train: List[tuple]  # (path, fold) per train shard; Deotte's: (path, place in shard order)
    test: List[str]
    compression: str
    annotations: Optional[Dict[str, tf.Tensor]]  # Deotte's CSV, by image_name; None for ours
    folds: Optional[int]  # ours: from the manifest; Deotte's: None (the recipe's data.folds)


def source(data_dir: str) -> Source:
    """Reads a directory's layout: our manifest, or Deotte's shard names and CSV."""
    if tf.io.gfile.exists(posixpath.join(data_dir, MANIFEST)):
        manifest = read_manifest(data_dir, kind.KIND, kind.SCHEMA_VERSION)
        train = manifest["splits"].get("train", {"shards": [], "folds": []})
        paths = shard_paths(data_dir, manifest, "train") if train["shards"] else []
        test = shard_paths(data_dir, manifest, "test") if "test" in manifest["splits"] else []
        return Source(list(zip(paths, train["folds"])), test, compression_type(manifest), None,
                      int(manifest["folds"]))
    return _deotte_source(data_dir)


def _deotte_source(data_dir: str) -> Source:
    names = sorted(posixpath.basename(p) for p in tf.io.gfile.glob(posixpath.join(data_dir, "*.tfrec")))
    shards = {"train": [], "test": []}
    for name in names:
        match = DEOTTE_SHARD.match(name)
        if match:
            shards[match.group(1)].append((int(match.group(2)), posixpath.join(data_dir, name)))
    if not shards["train"] and not shards["test"]:
        raise UserError(f"{data_dir} has no {MANIFEST} and no Deotte shards (train00-NNNN.tfrec ...)")
    train = sorted(shards["train"])
    annotations = _deotte_annotations(data_dir) if train else None
    return Source([(path, position) for position, (_, path) in enumerate(train)], [p for _, p in sorted(shards["test"])],
                  "", annotations, None)


def _deotte_annotations(data_dir: str) -> Dict[str, tf.Tensor]:
    """Deotte's train.csv as tensors: per image_name, the 9-class target, metadata codes, kept or not."""
    path = posixpath.join(data_dir, DEOTTE_CSV)
    if not tf.io.gfile.exists(path):
        raise UserError(f"{data_dir} holds Deotte's shards but no {DEOTTE_CSV} (his processed CSV)")
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.DictReader(f))
    required = {"image_name", "patient_id", "diagnosis", "tfrecord"}
    if not rows or not required <= set(rows[0]):
        raise UserError(f"{path} must have the columns {', '.join(sorted(required))}")
    images_of = {}
    for row in rows:
        images_of[row["patient_id"]] = images_of.get(row["patient_id"], 0) + 1
    classes = []
    for line, row in enumerate(rows, start=2):
        index = kind.class_of(row["diagnosis"], kind.SOURCE_2020)
        if index is None:
            index = kind.class_of(row["diagnosis"], kind.SOURCE_2019)
        if index is None:
            raise UserError(f"{path}:{line}: unknown diagnosis {row['diagnosis']!r}")
        classes.append(index)
    sex, age, site = codes_from_strings(
        tf.constant([row.get("sex", "") for row in rows]), tf.constant([row.get("age_approx", "") for row in rows]),
        tf.constant([row.get("anatom_site_general_challenge", "") for row in rows]))
    return {
        "image_name": tf.constant([row["image_name"] for row in rows]),
        "class_index": tf.constant(classes, tf.int64),
        "keep": tf.constant([row["tfrecord"].strip() != "-1" for row in rows]),
        "patient_images": tf.constant([images_of[row["patient_id"]] for row in rows], tf.int64),
        "sex": sex, "age": age, "site": site,
    }


def _annotate(annotations: Dict[str, tf.Tensor]):
    """A map function giving Deotte's records our class_index and metadata codes from his CSV."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(annotations["image_name"],
                                            tf.range(tf.size(annotations["image_name"], out_type=tf.int64))),
        default_value=-1)

    def annotate(features):
        row = table.lookup(features[kind.IMAGE_NAME])
        found = row >= 0
        safe = tf.maximum(row, 0)
        kept = found & tf.gather(annotations["keep"], safe)
        return {**features,
                kind.CLASS_INDEX: tf.where(kept, tf.gather(annotations["class_index"], safe), kind.MISSING),
                kind.SEX: tf.gather(annotations["sex"], safe), kind.AGE: tf.gather(annotations["age"], safe),
                kind.SITE: tf.gather(annotations["site"], safe),
                kind.PATIENT_IMAGES: tf.gather(annotations["patient_images"], safe)}

    return annotate


def decode_image(jpeg: tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG -> uint8 [S, S, 3]; resized only if the record's size is not S (records are square)."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    image = tf.cond(tf.reduce_all(tf.shape(image)[:2] == image_size), lambda: image,
                    lambda: tf.cast(tf.round(tf.image.resize(image, [image_size, image_size])), tf.uint8))
    return tf.ensure_shape(image, [image_size, image_size, 3])


def model_inputs(features: Dict[str, tf.Tensor], image_size: int) -> Dict[str, tf.Tensor]:
    """The model's inputs from parsed (annotated) features: uint8 image and the metadata vector."""
    return {"image": decode_image(features[kind.IMAGE], image_size),
            "metadata": metadata(features[kind.SEX], features[kind.AGE], features[kind.SITE],
                                 features[kind.PATIENT_IMAGES], features[kind.FILE_SIZE])}


def _parsed(paths: List[str], src: Source, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    ds = records(paths, src.compression, shuffle=shuffle, seed=seed)
    ds = ds.map(kind.parse, num_parallel_calls=AUTOTUNE, deterministic=True)
    # Our records carry everything; only Deotte's need his CSV joined in (a stage less otherwise).
    return ds if src.annotations is None else ds.map(_annotate(src.annotations))


def decode_records(records: List[bytes], src: Source, image_size: int) -> Dict[str, np.ndarray]:
    """Serialized records of `src` -> a batch of `image_name`, `image` (uint8) and `metadata` arrays:
    the parsing and decoding of `eval_dataset`, for records that arrive one batch at a time."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(records, tf.string))
    ds = ds.map(kind.parse, num_parallel_calls=AUTOTUNE, deterministic=True)
    if src.annotations is not None:
        ds = ds.map(_annotate(src.annotations))
    ds = ds.map(lambda f: {**model_inputs(f, image_size), kind.IMAGE_NAME: f[kind.IMAGE_NAME]},
                num_parallel_calls=AUTOTUNE, deterministic=True)
    return {key: value.numpy() for key, value in next(iter(ds.batch(len(records)))).items()}


def fold_paths(src: Source, fold: int, validation: bool, folds: int = 5) -> List[str]:
    """The train shards of fold `fold` (validation) or of the other folds.

    Deotte's shard i belongs to fold i // (shards / folds), `folds` being the recipe's.
    """
    if src.folds is None:
        if len(src.train) % folds:
            raise UserError(f"{len(src.train)} train shards cannot make {folds} folds (recipe key data.folds)")
        per_fold = len(src.train) // folds
        shard_folds = [(path, index // per_fold) for path, index in src.train]
    else:
        folds, shard_folds = src.folds, src.train
    if not 0 <= fold < folds:
        raise UserError(f"recipe key data.fold: must be in [0, {folds}), got {fold}")
    return [path for path, f in shard_folds if (f == fold) == validation]


def train_dataset(data_dir: str, fold: int, batch_size: int, image_size: int, seed: int = 0, folds: int = 5,
                  shuffle_buffer: int = 2048, skip_batches: int = 0) -> tf.data.Dataset:
    """Endless shuffled batches of ({image, metadata}, class_index) from every fold but `fold`.

    Deterministic for `seed`; `skip_batches` resumes the same stream without decoding what it skips.
    """
    src = source(data_dir)
    parse = _parser(src)
    ds = records(fold_paths(src, fold, validation=False, folds=folds), src.compression, shuffle=True, seed=seed)
    ds = ds.filter(_labelled(parse))
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.skip(skip_batches * batch_size)
    return _batched_inputs(ds, parse, batch_size, image_size, drop_remainder=True)


def _parser(src: Source):
    """parse(serialized, keys): those keys of one record or a batch; Deotte's completed from his CSV.

    One function for the label filter and the batches, so Deotte's CSV becomes one lookup table.
    """
    annotate = None if src.annotations is None else _annotate(src.annotations)

    def parse(serialized: tf.Tensor, keys) -> Dict[str, tf.Tensor]:
        if annotate is None:
            return parse_examples(serialized, {key: kind.FEATURES[key] for key in keys})
        return annotate(parse_examples(serialized, {key: kind.FEATURES[key] for key in (kind.IMAGE_NAME, *keys)}))

    return parse


def _labelled(parse):
    """A filter predicate on serialized records: labelled (not a test row, not Deotte's duplicate).

    It reads the label alone, so the records the filter drops and the shuffle buffer holds are
    never parsed further, and the batches parse the rest at once.
    """
    return lambda record: parse(record, (kind.CLASS_INDEX,))[kind.CLASS_INDEX] >= 0


def _batched_inputs(ds: tf.data.Dataset, parse, batch_size: int, image_size: int,
                    drop_remainder: bool) -> tf.data.Dataset:
    """({image, metadata}, class_index) batches of serialized records: one parallel map per batch.

    The batch is parsed at once, its JPEGs decoded in one `map_fn` and its metadata vectors
    computed together: a parse map before the shuffle and a map per image cost the host
    ~0.15 ms per 512 px image in function calls and thread hand-offs, over decode-only's
    ~1.07 ms; this way ~0.06 ms (benchmarks/melanoma_input.py).
    """
    spec = tf.TensorSpec([image_size, image_size, 3], tf.uint8)

    def inputs(serialized):
        f = parse(serialized, TRAIN_KEYS)
        images = tf.map_fn(lambda jpeg: decode_image(jpeg, image_size), f[kind.IMAGE], fn_output_signature=spec)
        codes = metadata(f[kind.SEX], f[kind.AGE], f[kind.SITE], f[kind.PATIENT_IMAGES], f[kind.FILE_SIZE])
        return {"image": images, "metadata": codes}, f[kind.CLASS_INDEX]

    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return deterministic(ds.map(inputs, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE))


def val_dataset(data_dir: str, fold: int, batch_size: int, image_size: int, folds: int = 5) -> tf.data.Dataset:
    """One pass over fold `fold`, in shard order: ({image, metadata}, class_index)."""
    src = source(data_dir)
    parse = _parser(src)
    ds = records(fold_paths(src, fold, validation=True, folds=folds), src.compression).filter(_labelled(parse))
    return _batched_inputs(ds, parse, batch_size, image_size, drop_remainder=False)


def eval_dataset(data_dir: str, split: str, batch_size: int, image_size: int, fold: Optional[int] = None,
                 folds: int = 5) -> tf.data.Dataset:
    """Batches of dicts for evaluation and prediction: image_name, image, metadata, class_index, target, source.

    `split` is "val" (fold `fold` of the train shards) or "test".
    """
    src = source(data_dir)
    if split == "test":
        paths = src.test
    elif split == "val":
        paths = fold_paths(src, fold, validation=True, folds=folds)
    else:
        raise UserError(f"melanoma: --split is val (a fold) or test, got {split!r}")
    if not paths:
        raise UserError(f"{data_dir} has no {split} shards")
    ds = _parsed(paths, src)
    if split == "val":
        ds = ds.filter(lambda f: f[kind.CLASS_INDEX] >= 0)

    def prepare(f):
        return {**model_inputs(f, image_size), kind.IMAGE_NAME: f[kind.IMAGE_NAME],
                kind.CLASS_INDEX: f[kind.CLASS_INDEX], kind.TARGET: f[kind.TARGET], kind.SOURCE: f[kind.SOURCE]}

    return deterministic(ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
                         .batch(batch_size).prefetch(AUTOTUNE))
