"""Training examples/s of the competitions' models on one accelerator (KERAS_BACKEND=jax), and the share of its peak.

    KERAS_BACKEND=jax python benchmarks/accelerator_training.py [--models xception,efficientnet,nextvlad,t5]
        [--steps 50] [--precision mixed_bfloat16] [--batch NAME=SIZE ...] [--peak-tflops F] [--smoke]

Each model is built from its recipe (`cdiscount_xception`: Xception at 180 px, 5,270
classes; `melanoma_effnet`: EfficientNet-B3 at 384 px with the metadata branch, 9 classes;
`yt8m_nextvlad`: NeXtVLAD over 300 uint8 frames, 3,862 classes; `taxonomy_t5`: T5-small's
dimensions, 256 encoder and 64 decoder tokens, a 32,128-token vocabulary), with the
recipe's per-replica batch size, and trained with Adam in one jitted, stateless JAX step
(`model.stateless_call`, `optimizer.stateless_apply`; the variables donated) on a batch of
random inputs already on the device, so the figure is the accelerator's alone (the host
pipelines have their own benchmarks). Augmentation layers are left out (a few elementwise
ops per pixel) and T5 is built without its tokenizer (TensorFlow Text), so nothing here
imports TensorFlow: the script runs on a host with JAX and Keras alone.

For each model it prints examples/s (median of `--rounds` timed runs of `--steps` steps,
after a compiling and a warm-up step), the model FLOPs of one training example, and the
share of the device's peak they reach: FLOPs per example x examples/s / peak (model FLOPs
utilisation). Model FLOPs are 3 x the forward pass's, as XLA counts them
(`compiled.cost_analysis()` of the inference call: convolutions and matrix products), the
usual convention for forward + backward; XLA's count of the whole training step is kept
in the JSON line too, but it is no measure of useful work: it counts the filter gradients
of grouped (depthwise) convolutions as dense ones (about 3x Xception's model FLOPs, 12x
EfficientNet's; for NeXtVLAD and T5 it is 3x the forward's, as expected). Two peaks: the
datasheet's dense bf16 rate for known devices (or `--peak-tflops`), and the rate of a large
bf16 matrix product measured in the same run (what this device really reaches on the
easiest work).

`--smoke` builds the recipes' tiny variants with small batches and few steps: a check that
the script runs (on a CPU too), not a measurement.

On a GPU host that has JAX but not Keras (the device machines lent to sessions), carry the
wheels it lacks and put the checkout on the path, e.g. for Python 3.12:

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
        keras==3.15.1 keras-hub==0.32.0 namex==0.1.0 optree==0.20.0 kagglehub==1.0.2 kagglesdk==0.1.28
    # there:
    pip install --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax python3 benchmarks/accelerator_training.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from yt8m_keras.models import build_registered  # noqa: E402
from yt8m_keras.models.t5 import CONFIGURATIONS as T5_CONFIGURATIONS  # noqa: E402
from yt8m_keras.recipes import load_recipe  # noqa: E402

# Dense bf16 TFLOP/s from the datasheets (SXM parts; no sparsity), by a substring of
# `jax.devices()[0].device_kind`.
DATASHEET_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L4": 121.0, "A10G": 70.0,
                         "TPU v5p": 459.0, "TPU v5 lite": 197.0, "TPU v4": 275.0, "TPU v3": 123.0}
T5_VOCABULARY = 32128  # flan-t5's
MODELS = ("xception", "efficientnet", "nextvlad", "t5")


def _images(size: int, classes: int, metadata_dim: int = 0):
    """A batch maker for an image classifier: uint8 pixels (and metadata), one-hot labels."""
    def batch(n: int, rng: np.random.Generator):
        images = rng.integers(0, 256, [n, size, size, 3], dtype=np.uint8)
        labels = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
        if not metadata_dim:
            return images, labels
        return {"image": images, "metadata": rng.random([n, metadata_dim], np.float32)}, labels
    return batch


def build(name: str, smoke: bool):
    """(model, loss function, recipe batch size, batch maker (size, rng) -> (inputs, labels)) of a model."""
    variant = ":tiny" if smoke else ""
    if name == "xception":
        recipe = load_recipe("cdiscount_xception" + variant)
        size = recipe.data.image_size
        model = build_registered(recipe, reserved=("augmentation",), num_classes=5270, image_size=size)
        return model, keras.losses.categorical_crossentropy, recipe.training.batch_size, _images(size, 5270)
    if name == "efficientnet":
        recipe = load_recipe("melanoma_effnet" + variant)
        size, metadata_dim = recipe.data.image_size, recipe.model.args.get("metadata_dim", 0)
        model = build_registered(recipe, reserved=("augmentation",), num_classes=9, image_size=size)
        return (model, keras.losses.categorical_crossentropy, recipe.training.batch_size,
                _images(size, 9, metadata_dim))
    if name == "nextvlad":
        recipe = load_recipe("yt8m_nextvlad" + variant)
        model = build_registered(recipe, num_classes=3862)
        frames = recipe.data.max_frames

        def videos(n, rng):
            lengths = rng.integers(frames // 2, frames + 1, n)
            mask = (np.arange(frames)[None] < lengths[:, None]).astype(np.float32)
            real = mask[..., None].astype(np.uint8)  # zero after the last frame, as the input pipeline pads
            features = {"rgb": rng.integers(0, 256, [n, frames, 1024], dtype=np.uint8) * real,
                        "audio": rng.integers(0, 256, [n, frames, 128], dtype=np.uint8) * real, "mask": mask}
            return features, (rng.random([n, 3862]) < 3.0 / 3862).astype(np.float32)
        return model, keras.losses.binary_crossentropy, recipe.training.batch_size, videos
    if name == "t5":
        # The recipe's dimensions and lengths; `build_t5` would also need the tokenizer.
        import keras_hub

        recipe = load_recipe("taxonomy_t5" + variant)
        args = recipe.model.args
        vocabulary = 256 if smoke else T5_VOCABULARY
        backbone = keras_hub.models.T5Backbone(vocabulary_size=vocabulary, dropout=args["dropout"],
                                               **T5_CONFIGURATIONS[args["configuration"]])
        model = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)
        encoder, decoder = args["encoder_length"], args["decoder_length"]

        def token_batch(n, rng):
            def tokens(length):
                return rng.integers(2, vocabulary, [n, length]).astype(np.int32)
            inputs = {"encoder_token_ids": tokens(encoder), "encoder_padding_mask": np.ones([n, encoder], bool),
                      "decoder_token_ids": tokens(decoder), "decoder_padding_mask": np.ones([n, decoder], bool)}
            return inputs, tokens(decoder)  # next-token targets

        def loss(labels, logits):
            return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return model, loss, recipe.training.batch_size, token_batch
    raise ValueError(f"unknown model {name!r}")


def train_step_fn(model, loss_fn, optimizer):
    """A jitted stateless step: (state, inputs, labels) -> (loss, state); the state is donated."""
    def compute_loss(trainable, non_trainable, inputs, labels):
        outputs, non_trainable, losses = model.stateless_call(trainable, non_trainable, inputs, training=True,
                                                              return_losses=True)
        loss = keras.ops.mean(loss_fn(labels, keras.ops.cast(outputs, "float32")))
        return loss + sum(losses, 0.0), non_trainable

    grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

    def step(state, inputs, labels):
        trainable, non_trainable, optimizer_variables = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, inputs, labels)
        trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_variables)

    return jax.jit(step, donate_argnums=0)


def flops_of(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


def measure(name: str, args, rng) -> dict:
    model, loss_fn, batch, make_batch = build(name, args.smoke)
    batch = args.batch.get(name, 2 if args.smoke else batch)
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    inputs, labels = jax.device_put(make_batch(batch, rng))
    step = train_step_fn(model, loss_fn, optimizer)
    started = time.perf_counter()
    compiled = step.lower(state, inputs, labels).compile()
    compile_s = time.perf_counter() - started
    step_flops = flops_of(compiled)
    forward = jax.jit(lambda trainable, non_trainable, x: model.stateless_call(trainable, non_trainable, x)[0])
    flops = 3 * flops_of(forward.lower(state[0], state[1], inputs).compile())
    for _ in range(2):  # warm-up (the first call also transfers the state's layout)
        loss, state = compiled(state, inputs, labels)
    loss.block_until_ready()
    rates = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        for _ in range(args.steps):
            loss, state = compiled(state, inputs, labels)
        loss.block_until_ready()
        rates.append(args.steps * batch / (time.perf_counter() - started))
    if not np.isfinite(float(loss)):
        raise SystemExit(f"error: {name}: the loss is not finite ({float(loss)})")
    return {"model": name, "batch": batch, "parameters": int(model.count_params()),
            "examples_per_s": float(np.median(rates)), "gflops_per_example": flops / batch / 1e9,
            "xla_step_gflops_per_example": step_flops / batch / 1e9, "compile_s": round(compile_s, 1),
            "loss": float(loss)}


def matmul_tflops(size: int, repeats: int = 20) -> float:
    """The rate of a bf16 matrix product of side `size` on the default device: the peak this device reaches."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), "bfloat16")
    product = jax.jit(lambda x, y: x @ y)
    product(a, a).block_until_ready()
    started = time.perf_counter()
    for _ in range(repeats):
        out = product(a, a)
    out.block_until_ready()
    return 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e12


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ", ".join(MODELS))
    parser.add_argument("--steps", type=int, default=50, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="mixed_bfloat16", help="a Keras dtype policy")
    parser.add_argument("--batch", action="append", default=[], metavar="NAME=SIZE",
                        help="a batch size other than the recipe's (per device)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak (default: the datasheet's dense bf16 rate of a known device)")
    parser.add_argument("--matmul-size", type=int, default=8192, help="side of the measured-peak matrix product")
    parser.add_argument("--smoke", action="store_true", help="tiny variants, batch 2: the script runs, no figure")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "jax":
        parser.error("set KERAS_BACKEND=jax (the step is a JAX one)")
    try:
        args.batch = {key: int(value) for key, value in (item.split("=", 1) for item in args.batch)}
    except ValueError:
        parser.error("--batch takes NAME=SIZE, e.g. --batch xception=128")
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(args.models + list(args.batch)) - set(MODELS))
    if unknown or not args.models:
        parser.error(f"unknown model(s) {', '.join(unknown) or '(none given)'} (known: {', '.join(MODELS)})")
    if args.smoke:
        args.steps, args.rounds, args.matmul_size = min(args.steps, 2), 1, min(args.matmul_size, 512)
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)

    device = jax.devices()[0]
    kind = getattr(device, "device_kind", str(device))
    peak = args.peak_tflops or next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in kind), None)
    measured_peak = matmul_tflops(args.matmul_size)
    rng = np.random.default_rng(0)
    results = [measure(name, args, rng) for name in args.models]

    print(f"\n{kind} ({jax.device_count()} device(s), one used), {args.precision}; peak: "
          f"{peak if peak else '?'} TFLOP/s datasheet bf16, {measured_peak:.0f} measured "
          f"({args.matmul_size}^3 bf16 matmul)")
    print(f"{'model':<13}{'batch':>6}{'params':>12}{'examples/s':>12}{'GFLOP/ex':>10}{'TFLOP/s':>9}"
          f"{'% peak':>8}{'% meas.':>8}")
    for r in results:
        tflops = r["gflops_per_example"] * r["examples_per_s"] / 1e3
        r["tflops"] = tflops
        r["share_of_peak"] = tflops / peak if peak else None
        r["share_of_measured_peak"] = tflops / measured_peak
        share = f"{100 * r['share_of_peak']:7.1f}%" if peak else f"{'?':>8}"
        print(f"{r['model']:<13}{r['batch']:>6}{r['parameters']:>12,}{r['examples_per_s']:>12.1f}"
              f"{r['gflops_per_example']:>10.2f}{tflops:>9.1f}{share}{100 * r['share_of_measured_peak']:7.1f}%")
    print(json.dumps({"device": kind, "precision": args.precision, "peak_tflops": peak,
                      "measured_peak_tflops": round(measured_peak, 1), "smoke": args.smoke, "models": results}))


if __name__ == "__main__":
    main()
