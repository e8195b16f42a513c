"""The melanoma task: EfficientNet (+ metadata) on 9 diagnosis classes, scored by the AUC of P(melanoma).

What the one trainer and the one exporter need. `--set data.fold=K` picks the validation
fold; the best checkpoint is the epoch with the best validation AUC of P(melanoma).
"""

from typing import Dict, List

import keras
import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import melanoma_image as kind
from yt8m_keras.competitions.melanoma import input as data
from yt8m_keras.competitions.melanoma.features import METADATA_DIM, codes_from_strings, metadata
from yt8m_keras.models import apply_stage, build_registered
from yt8m_keras.models.efficientnet import set_trainable_stage

MONITOR = "val_auc"
MONITOR_MODE = "max"


class MelanomaAUC(keras.metrics.AUC):
    """ROC AUC of P(melanoma) from 9-class labels and probabilities (the competition's score).

    Args:
        name: the metric's name (its logs key).

    Example:
        >>> metric = MelanomaAUC()
        >>> metric.update_state([6, 7], [[0, 0, 0, 0, 0, 0, .9, .1, 0], [0, 0, 0, 0, 0, 0, .2, .8, 0]])
        >>> float(metric.result())  # 1.0
    """

    def __init__(self, name: str = "auc", **kwargs):
        super().__init__(name=name, num_thresholds=1000, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(keras.ops.equal(keras.ops.reshape(y_true, (-1,)), kind.MELANOMA), "float32")
        return super().update_state(y_true, y_pred[:, kind.MELANOMA], sample_weight)


def read_manifest(data_dir: str) -> Dict:
    """Our manifest, or (Deotte's directory has none) a description of his shards."""
    src = data.source(data_dir)
    return {"kind": kind.KIND, "train_shards": len(src.train), "test_shards": len(src.test)}


def read_classes(data_dir: str) -> List[Dict]:
    """The 9 classes: fixed by the task, so Deotte's directories (no classes.csv) train too."""
    return [{"class_index": i, "category_id": i, "name": name} for i, name in enumerate(kind.CLASSES)]


def uses_metadata(recipe) -> bool:
    dim = recipe.model.args.get("metadata_dim", METADATA_DIM)
    if dim not in (0, METADATA_DIM):
        raise UserError(f"recipe key model.args.metadata_dim: {METADATA_DIM} (with metadata) or 0 (image only), "
                        f"got {dim}")
    return dim > 0


def build_model(recipe, num_classes: int) -> keras.Model:
    augmentation = None
    if recipe.data.augment:
        from yt8m_keras.models.augmentation import MelanomaAugmentation

        augmentation = MelanomaAugmentation(seed=recipe.training.seed, name="augmentation")
    args = {"metadata_dim": METADATA_DIM if uses_metadata(recipe) else 0}
    return build_registered(recipe, reserved=("augmentation",), num_classes=num_classes,
                            image_size=recipe.data.image_size, augmentation=augmentation,
                            **{k: v for k, v in args.items() if k not in recipe.model.args})


def set_stage(model: keras.Model, stage: str) -> None:
    apply_stage(set_trainable_stage, model, stage)


def compile_args() -> Dict:
    return {"loss": keras.losses.SparseCategoricalCrossentropy(),
            "metrics": [MelanomaAUC(name="auc"), keras.metrics.SparseCategoricalAccuracy(name="accuracy")]}


def _inputs_for(recipe):
    keep = ("image", "metadata") if uses_metadata(recipe) else ("image",)
    return lambda features, labels: ({k: features[k] for k in keep}, labels)


def train_dataset(recipe, data_dir: str, global_batch: int, skip_batches: int = 0) -> tf.data.Dataset:
    d = recipe.data
    ds = data.train_dataset(data_dir, d.fold, global_batch, d.image_size, seed=recipe.training.seed, folds=d.folds,
                            shuffle_buffer=d.shuffle_buffer, skip_batches=skip_batches)
    return ds.map(_inputs_for(recipe))


def val_dataset(recipe, data_dir: str, global_batch: int) -> tf.data.Dataset:
    d = recipe.data
    return data.val_dataset(data_dir, d.fold, global_batch, d.image_size, folds=d.folds).map(_inputs_for(recipe))


# --- serving -------------------------------------------------------------------------------

def _center_square(image: tf.Tensor, size: int) -> tf.Tensor:
    """What the conversion does to a raw photo: the central square, resized to `size` (uint8)."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
    square = image[top:top + side, left:left + side]
    return tf.cast(tf.round(tf.image.resize(square, [size, size])), tf.uint8)


def serving_signatures(model: keras.Model, recipe, classes: List[Dict]) -> Dict:
    """`serving_default` (JPEG bytes + metadata strings), `tf_example` (our records), `pixels`."""
    size = recipe.data.image_size
    with_metadata = uses_metadata(recipe)

    def outputs(images, meta):
        inputs = {"image": images, **({"metadata": meta} if with_metadata else {})}
        probabilities = model(inputs, training=False)
        return {"melanoma": probabilities[:, kind.MELANOMA], "probabilities": probabilities}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                  tf.TensorSpec([None], tf.string, name="sex"),
                                  tf.TensorSpec([None], tf.string, name="age_approx"),
                                  tf.TensorSpec([None], tf.string, name="anatom_site_general_challenge")])
    def serve_raw(image_bytes, sex, age_approx, anatom_site_general_challenge):
        images = tf.map_fn(lambda jpeg: _center_square(tf.io.decode_jpeg(jpeg, channels=3), size), image_bytes,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        sex_code, age_code, site_code = codes_from_strings(sex, age_approx, anatom_site_general_challenge)
        # A client sends the original photo, so its length is the file size; the patient's
        # image count is unknown here (the tf_example signature carries it).
        unknown = tf.fill(tf.shape(sex_code), tf.constant(kind.MISSING, tf.int64))
        meta = metadata(sex_code, age_code, site_code, unknown, tf.strings.length(image_bytes))
        return outputs(images, meta)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tf_example")])
    def serve_records(tf_example):
        # The same parse and preprocessing as training: serving cannot drift from the records.
        features = kind.parse(tf_example)
        images = tf.map_fn(lambda jpeg: data.decode_image(jpeg, size), features[kind.IMAGE],
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        meta = metadata(features[kind.SEX], features[kind.AGE], features[kind.SITE], features[kind.PATIENT_IMAGES],
                        features[kind.FILE_SIZE])
        return {kind.IMAGE_NAME: features[kind.IMAGE_NAME], **outputs(images, meta)}

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images"),
                                  tf.TensorSpec([None, METADATA_DIM], tf.float32, name="metadata")])
    def serve_pixels(images, metadata):
        return outputs(images, metadata)

    return {"serving_default": serve_raw, "tf_example": serve_records, "pixels": serve_pixels}


def warmup_inputs(recipe) -> Dict[str, Dict[str, np.ndarray]]:
    """One small request per signature, replayed by TF Serving at load time."""
    size = recipe.data.image_size
    jpeg = tf.io.encode_jpeg(tf.fill([size, size, 3], tf.constant(128, tf.uint8))).numpy()
    return {
        "serving_default": {"image_bytes": np.array([jpeg], dtype=object), "sex": np.array([b"male"], dtype=object),
                            "age_approx": np.array([b"45"], dtype=object),
                            "anatom_site_general_challenge": np.array([b"torso"], dtype=object)},
        "tf_example": {"tf_example": np.array([kind.encode(jpeg, "ISIC_warmup")], dtype=object)},
        "pixels": {"images": np.zeros([1, size, size, 3], np.uint8),
                   "metadata": np.zeros([1, METADATA_DIM], np.float32)},
    }

