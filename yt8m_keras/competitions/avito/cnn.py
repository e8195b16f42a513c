"""A `keras.applications` backbone saved as a plain TF SavedModel, for the image-feature Beam job.

    python -m yt8m_keras.competitions.avito.cnn --output models/resnet101-224 \
        [--backbone resnet101] [--weights imagenet|FILE] [--image-size 224] [--overwrite]

`beam_jobs.avito_image_features` runs the CNN over every picture, but Beam jobs never import
Keras (Dataflow workers carry TensorFlow only), so the Keras side stops here: the backbone,
headless and average-pooled, with its own `preprocess_input` inside, saved as

    PATH/saved_model.pb, variables/   signature `serving_default`:
                                      images uint8 [None, S, S, 3] -> {"features": float32 [None, D]}
    PATH/backbone.json                {"backbone", "weights", "image_size", "dim", "preprocessing"}

The directory appears complete or not at all (written under a temporary name, then renamed).
Backbones: resnet50, resnet101 (caffe preprocessing: RGB -> BGR minus the ImageNet means),
mobilenet_v3_small and efficientnet_b0 (both rescale inside the model: their
`preprocess_input` is the identity). Weights: None (random; what the tests use, nothing is
downloaded), "imagenet" (Keras downloads them once), or a weights file of the headless model.

Example:

>>> info = save_backbone("/tmp/mnv3-32", backbone="mobilenet_v3_small", image_size=32)
>>> info["dim"]
576
>>> model = tf.saved_model.load("/tmp/mnv3-32").signatures["serving_default"]
>>> model(images=tf.zeros([2, 32, 32, 3], tf.uint8))["features"].shape
TensorShape([2, 576])
"""

import json
import os
import shutil
import sys
import uuid
from typing import Callable, Dict, NamedTuple, Optional

import tensorflow as tf

from tfrecords import ArgumentParser, UserError, run_main

INFO = "backbone.json"
SIGNATURE = "serving_default"
INPUT = "images"
OUTPUT = "features"
WEIGHTS_IMAGENET = "imagenet"


class Backbone(NamedTuple):
    """Where a backbone lives in `keras.applications`: its module, class and preprocessing mode."""

    module: str
    cls: str
    preprocessing: str  # for backbone.json: what `preprocess_input` does


BACKBONES = {
    "resnet50": Backbone("resnet", "ResNet50", "caffe: RGB->BGR, minus ImageNet means"),
    "resnet101": Backbone("resnet", "ResNet101", "caffe: RGB->BGR, minus ImageNet means"),
    "mobilenet_v3_small": Backbone("mobilenet_v3", "MobileNetV3Small", "inside the model (rescaling)"),
    "efficientnet_b0": Backbone("efficientnet", "EfficientNetB0", "inside the model (rescaling, normalization)"),
}


def _applications(name: str):
    """(constructor, preprocess_input) of a backbone name."""
    import keras

    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r} (known: {', '.join(sorted(BACKBONES))})")
    spec = BACKBONES[name]
    module = getattr(keras.applications, spec.module)
    return getattr(keras.applications, spec.cls), module.preprocess_input


def _check_weights(weights: Optional[str]) -> None:
    if weights in (None, WEIGHTS_IMAGENET):
        return
    if not tf.io.gfile.exists(weights):
        raise UserError(f"weights file not found: {weights} (weights are None, 'imagenet' or a file)")


def build_backbone(backbone: str = "resnet101", weights: Optional[str] = None, image_size: int = 224):
    """The headless, average-pooled Keras backbone and its `preprocess_input`."""
    if not 32 <= image_size <= 1024:
        raise UserError(f"image size must be in [32, 1024], got {image_size}")
    _check_weights(weights)
    constructor, preprocess_input = _applications(backbone)
    model = constructor(include_top=False, weights=weights, pooling="avg", input_shape=(image_size, image_size, 3))
    return model, preprocess_input


def serving_function(model, preprocess_input: Callable, image_size: int):
    """`serving_default`: uint8 pixels -> {"features": float32 [batch, D]}, preprocessing inside."""

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name=INPUT)])
    def serve(images):
        pixels = preprocess_input(tf.cast(images, tf.float32))
        return {OUTPUT: tf.cast(model(pixels, training=False), tf.float32)}

    return serve


def save_backbone(path: str, backbone: str = "resnet101", weights: Optional[str] = None, image_size: int = 224,
                  overwrite: bool = False) -> Dict:
    """Builds the backbone and saves it as a SavedModel with `backbone.json`; returns that info.

    Args:
        path: the SavedModel directory (local or gs://); it must not exist unless `overwrite`.
        backbone: one of BACKBONES.
        weights: None, "imagenet" or a weights file of the headless model.
        image_size: the side S of the square uint8 input.
        overwrite: replace an existing directory at `path`.
    """
    path = path.rstrip("/")
    if tf.io.gfile.exists(path) and not overwrite:
        raise UserError(f"{path} already exists (pass overwrite=True / --overwrite to replace it)")
    model, preprocess_input = build_backbone(backbone, weights, image_size)
    serve = serving_function(model, preprocess_input, image_size)
    dim = int(serve.get_concrete_function().structured_outputs[OUTPUT].shape[-1])
    info = {"backbone": backbone, "weights": weights, "image_size": image_size, "dim": dim,
            "preprocessing": BACKBONES[backbone].preprocessing, "signature": SIGNATURE, "input": INPUT,
            "output": OUTPUT}

    module = tf.Module()
    # The variables, not the Keras model: tracking the model saves its whole layer graph,
    # which tf.saved_model.load then rebuilds object by object (4 s for ResNet50, 1 s this way),
    # once per Beam worker thread.
    module.backbone_variables = list(model.variables)
    module.serve = serve
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    tf.saved_model.save(module, tmp, signatures={SIGNATURE: serve})
    with tf.io.gfile.GFile(os.path.join(tmp, INFO), "w") as f:
        f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
    _replace(tmp, path)
    return info


def _replace(tmp: str, path: str) -> None:
    """Renames the finished `tmp` to `path`; an old `path` is moved aside first, then removed."""
    if not tf.io.gfile.exists(path):
        tf.io.gfile.rename(tmp, path)
        return
    old = f"{path}.old-{uuid.uuid4().hex[:8]}"
    tf.io.gfile.rename(path, old)
    tf.io.gfile.rename(tmp, path)
    if "://" in old:
        tf.io.gfile.rmtree(old)
    else:
        shutil.rmtree(old)


def read_info(path: str) -> Dict:
    """backbone.json of a SavedModel written by `save_backbone`."""
    info_path = os.path.join(path, INFO)
    if not tf.io.gfile.exists(info_path):
        raise UserError(f"no {INFO} in {path}: save the model with yt8m_keras.competitions.avito.cnn")
    with tf.io.gfile.GFile(info_path) as f:
        return json.load(f)


def main(argv=None) -> None:
    parser = ArgumentParser(prog="python -m yt8m_keras.competitions.avito.cnn",
                            description="Save a keras.applications backbone (headless, average-pooled) as a "
                            "SavedModel for beam_jobs.avito_image_features.")
    parser.add_argument("--output", required=True, help="the SavedModel directory to write")
    parser.add_argument("--backbone", default="resnet101", choices=sorted(BACKBONES))
    parser.add_argument("--weights", default=None,
                        help="'imagenet' (downloaded by Keras) or a weights file; default: random")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    info = save_backbone(args.output, args.backbone, args.weights, args.image_size, args.overwrite)
    print(f"{info['backbone']} ({info['weights'] or 'random weights'}), {info['image_size']} px -> "
          f"{info['dim']} features: {args.output}")


if __name__ == "__main__":
    sys.exit(run_main(main))
