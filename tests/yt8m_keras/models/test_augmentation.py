"""Batched, seeded augmentation layers: determinism, inference identity, range, and exact
checks against NumPy / SciPy versions of the albumentations (OpenCV) definitions."""

import numpy as np
import pytest
import tensorflow as tf
import keras
from keras import ops
from scipy import ndimage

from yt8m_keras.models.augmentation import (
    CLAHE, CdiscountAugmentation, Cutout, ElasticTransform, GaussianBlur, GaussNoise, GridDistortion, HueSaturationValue,
    MedianBlur, MelanomaAugmentation, MotionBlur, MultiplicativeContrast, OneOf, OpticalDistortion,
    RandomApply, RandomTranspose, ShiftScaleRotate)
from yt8m_keras.models.augmentation._image_ops import median_network
from yt8m_keras.models.augmentation.clahe import clahe_lightness

# Every layer, as the melanoma recipe configures it, on tiny images.
FACTORIES = {
    "transpose": lambda seed: RandomTranspose(p=0.5, seed=seed),
    "contrast": lambda seed: MultiplicativeContrast(0.2, seed=seed),
    "motion_blur": lambda seed: MotionBlur(5, seed=seed),
    "median_blur": lambda seed: MedianBlur(5, seed=seed),
    "gaussian_blur": lambda seed: GaussianBlur(5, seed=seed),
    "gauss_noise": lambda seed: GaussNoise((5.0, 30.0), seed=seed),
    "optical": lambda seed: OpticalDistortion(1.0, seed=seed),
    "grid": lambda seed: GridDistortion(5, 1.0, seed=seed),
    "elastic": lambda seed: ElasticTransform(3.0, 50.0, 50.0, seed=seed),
    # 2 x 2 tiles: on 32 px images, 8 x 8 tiles of 16 pixels clip every bin at 1 whatever
    # the clip limit drawn (OpenCV's max(int(limit * area / 256), 1)), hiding the draws.
    "clahe": lambda seed: CLAHE(4.0, tile_grid_size=(2, 2), seed=seed),
    "hsv": lambda seed: HueSaturationValue(10, 20, 10, seed=seed),
    "shift_scale_rotate": lambda seed: ShiftScaleRotate(0.1, 0.1, 15, seed=seed),
    "cutout": lambda seed: Cutout(0.375, seed=seed),
    "random_apply": lambda seed: RandomApply(keras.layers.RandomBrightness(0.2, seed=seed), p=0.75, seed=seed),
    "one_of": lambda seed: OneOf([MedianBlur(5, seed=seed), GaussNoise((5.0, 30.0), seed=seed)],
                                 p=0.7, seed=seed),
    "melanoma": lambda seed: MelanomaAugmentation(seed=seed),
    "cdiscount": lambda seed: CdiscountAugmentation(seed=seed),
}


def images(batch=4, size=32, seed=0):
    """Smooth random RGB images (blurred noise, stretched to 0-255) as float32."""
    noise = np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, 2, 2, 0))
    low = smooth.min(axis=(1, 2, 3), keepdims=True)
    high = smooth.max(axis=(1, 2, 3), keepdims=True)
    return ((smooth - low) / (high - low) * 255.0).astype("float32")


def augment(layer, x):
    return ops.convert_to_numpy(layer(x, training=True))


class AddConstant(keras.layers.Layer):
    """A toy 'augmentation' that adds a constant, to see which branch an image took."""

    def __init__(self, constant, **kwargs):
        super().__init__(**kwargs)
        self.constant = float(constant)

    def call(self, x, training=None):
        return ops.cast(x, "float32") + self.constant


# --- Properties every layer has --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_batched_seeded_identity_in_inference_and_range(name):
    x = images()
    layer = FACTORIES[name](seed=7)
    first = augment(layer, x)
    assert first.shape == x.shape and first.dtype == np.float32
    assert np.all(np.isfinite(first)) and first.min() >= 0.0 and first.max() <= 255.0
    # Same seed, same draws; the same layer called again draws anew.
    np.testing.assert_array_equal(augment(FACTORIES[name](seed=7), x), first)
    assert not np.array_equal(augment(layer, x), first)
    # Inference (explicit or not) returns the input as float32.
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x, training=False)), x)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x)), x)
    # uint8 input works and gives float32.
    assert ops.convert_to_numpy(layer(x.astype("uint8"), training=True)).dtype == np.float32


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_compiled_equals_eager_for_a_seed(name):
    x = images()
    eager = augment(FACTORIES[name](seed=3), x)
    layer = FACTORIES[name](seed=3)
    compiled = tf.function(lambda batch: layer(batch, training=True))
    np.testing.assert_allclose(compiled(x).numpy(), eager, atol=2e-3)
    # The compiled function advances the seed state like the eager layer does.
    assert not np.array_equal(compiled(x).numpy(), eager)


def test_full_stack_compiles_with_xla_and_is_deterministic_there():
    # TensorFlow's stateless RNG picks another algorithm under XLA, so XLA draws differ
    # from non-XLA draws for the same seed state; within XLA a seed fixes them.
    x = images(batch=2)
    layer = MelanomaAugmentation(seed=11)
    compiled = tf.function(lambda batch: layer(batch, training=True), jit_compile=True)
    initial = [ops.convert_to_numpy(v) for v in layer.variables]
    runs = []
    for _ in range(2):
        for variable, value in zip(layer.variables, initial):
            variable.assign(value)  # back to the seed's initial state
        runs.append([compiled(x).numpy() for _ in range(2)])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[0][1])
    assert runs[0][0].min() >= 0.0 and runs[0][0].max() <= 255.0


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_config_round_trip_gives_the_same_layer(name):
    x = images(batch=2)
    layer = FACTORIES[name](seed=5)
    config = layer.get_config()
    rebuilt = layer.__class__.from_config(config)
    assert rebuilt.get_config() == config
    np.testing.assert_array_equal(augment(rebuilt, x), augment(layer, x))


# --- Exact checks --------------------------------------------------------------------------


def test_transpose_swaps_rows_and_columns_of_the_picked_images():
    x = images(batch=16)
    out = augment(RandomTranspose(p=0.5, seed=0), x)
    transposed = [np.array_equal(out[i], x[i].transpose(1, 0, 2)) for i in range(16)]
    kept = [np.array_equal(out[i], x[i]) for i in range(16)]
    assert all(t or k for t, k in zip(transposed, kept))
    assert 0 < sum(transposed) < 16


def test_random_apply_with_p_zero_and_one():
    x = images()
    np.testing.assert_array_equal(augment(RandomApply(AddConstant(5.0), p=0.0, seed=0), x), x)
    np.testing.assert_array_equal(augment(RandomApply(AddConstant(5.0), p=1.0, seed=0), x), x + 5.0)
    # The wrapper's own draws do not disturb the inner layer's stream.
    inner = augment(MultiplicativeContrast(0.2, seed=9), x)
    wrapped = RandomApply(MultiplicativeContrast(0.2, seed=9), p=1.0, seed=1)
    np.testing.assert_array_equal(augment(wrapped, x), inner)


def test_random_apply_picks_each_image_with_probability_p():
    x = np.zeros((2000, 1, 1, 1), "float32")
    changed = augment(RandomApply(AddConstant(1.0), p=0.3, seed=0), x)[:, 0, 0, 0]
    assert set(np.unique(changed)) <= {0.0, 1.0}
    assert abs(changed.mean() - 0.3) < 0.04


def test_one_of_applies_exactly_one_of_its_layers_or_none():
    x = np.zeros((3000, 1, 1, 1), "float32")
    layer = OneOf([AddConstant(1.0), AddConstant(2.0), AddConstant(3.0)], p=0.6, seed=0)
    added = augment(layer, x)[:, 0, 0, 0]
    assert set(np.unique(added)) <= {0.0, 1.0, 2.0, 3.0}
    counts = np.array([(added == value).mean() for value in (0.0, 1.0, 2.0, 3.0)])
    np.testing.assert_allclose(counts, [0.4, 0.2, 0.2, 0.2], atol=0.035)
    weighted = OneOf([AddConstant(1.0), AddConstant(2.0)], p=1.0, weights=[1.0, 0.0], seed=0)
    np.testing.assert_array_equal(augment(weighted, x), x + 1.0)
    np.testing.assert_array_equal(augment(OneOf([AddConstant(1.0)], p=0.0, seed=0), x), x)


def test_median_blur_matches_scipy_median_filter():
    x = np.round(images(batch=3, size=16))
    for size in (3, 5):
        expected = ndimage.median_filter(x, size=(1, size, size, 1), mode="nearest")
        np.testing.assert_array_equal(augment(MedianBlur((size, size), seed=0), x), expected)
    both = augment(MedianBlur(5, seed=1), images(batch=8, size=16))
    assert both.shape == (8, 16, 16, 3)


def test_median_network_is_a_median():
    for count in (9, 25):
        steps, output = median_network(count)
        values = np.random.default_rng(count).integers(0, 4, (20000, count)).astype("float32")
        env = {index: values[:, index] for index in range(count)}
        for index, a, b, wants_min, wants_max in steps:
            if wants_min:
                env[("min", index)] = np.minimum(env[a], env[b])
            if wants_max:
                env[("max", index)] = np.maximum(env[a], env[b])
        np.testing.assert_array_equal(env[output], np.median(values, axis=1))


def test_gaussian_blur_uses_opencv_binomial_kernels_and_reflect101():
    x = images(batch=2, size=16)
    for size, row in ((3, [1, 2, 1]), (5, [1, 4, 6, 4, 1])):
        kernel = np.outer(row, row) / np.sum(row) ** 2
        expected = ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")
        np.testing.assert_allclose(augment(GaussianBlur((size, size), seed=0), x), expected, atol=1e-3)


def test_motion_blur_kernels_are_normalised_line_segments():
    layer = MotionBlur(5, seed=4)
    kernels = ops.convert_to_numpy(layer.kernels(64))
    np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    for kernel in kernels:
        cells = np.argwhere(kernel > 0)
        assert 2 <= len(cells) <= 5 and np.allclose(kernel[kernel > 0], 1.0 / len(cells))
        # One cell per step along the major axis, the minor axis moving by at most 1.
        extent = cells.max(axis=0) - cells.min(axis=0)
        major = int(extent[1] > extent[0])
        steps = np.diff(cells[np.argsort(cells[:, major])], axis=0)
        assert np.all(steps[:, major] == 1) and np.all(np.abs(steps[:, 1 - major]) <= 1)
    # The layer filters with exactly these kernels (same seed, same draws).
    x = images(batch=3, size=16)
    kernels = ops.convert_to_numpy(MotionBlur(5, seed=2).kernels(3))
    out = augment(MotionBlur(5, seed=2), x)
    for i in range(3):
        expected = ndimage.correlate(x[i], kernels[i][:, :, None], mode="mirror")
        np.testing.assert_allclose(out[i], expected, atol=1e-3)


def test_gauss_noise_statistics():
    x = np.full((8, 32, 32, 3), 128.0, "float32")
    noise = augment(GaussNoise((20.0, 20.0), seed=0), x) - 128.0
    assert abs(noise.mean()) < 0.1
    assert abs(noise.std() - np.sqrt(20.0)) < 0.1
    gray = np.full((64, 32, 32, 3), 128.0, "float32")
    per_image_var = (augment(GaussNoise((5.0, 30.0), seed=1), gray) - 128.0).var(axis=(1, 2, 3))
    assert per_image_var.min() > 4.0 and per_image_var.max() < 32.0 and per_image_var.std() > 3.0


def test_cutout_hole_is_a_clipped_square_of_three_eighths_of_the_side():
    x = np.full((200, 32, 32, 3), 200.0, "float32")
    out = augment(Cutout(0.375, seed=0), x)
    side = int(32 * 0.375)
    full = 0
    for image in out:
        hole = image[..., 0] == 0.0
        rows, cols = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
        assert hole.sum() == len(rows) * len(cols)  # a rectangle
        assert len(rows) <= side and len(cols) <= side
        assert np.all(image[~hole] == 200.0) and np.all(image[hole] == 0.0)
        full += hole.sum() == side * side
    # Only holes whose corner lands past 32 - 12 are cut short: (27 / 33)^2 are full.
    assert abs(full / 200 - (27 / 33) ** 2) < 0.08


def test_shift_scale_rotate_exact_cases():
    x = images(batch=2)
    # A quarter-side shift to the right and down; black fill, as border_mode=0.
    shifted = augment(ShiftScaleRotate((0.25, 0.25), (0, 0), (0, 0), seed=0), x)
    np.testing.assert_allclose(shifted[:, 8:, 8:], x[:, :-8, :-8], atol=1e-3)
    assert np.all(shifted[:, :8] == 0.0) and np.all(shifted[:, :, :8] == 0.0)
    # 90 degrees about (w/2, h/2) = (16, 16): output (x, y) reads input (32 - y, x).
    rotated = augment(ShiftScaleRotate((0, 0), (0, 0), (90, 90), seed=0), x)
    expected = np.zeros_like(x)
    for y in range(1, 32):
        for col in range(32):
            expected[:, y, col] = x[:, col, 32 - y]
    np.testing.assert_allclose(rotated, expected, atol=1e-3)


def test_optical_distortion_matches_the_opencv_undistortion_map():
    x = images(batch=2)
    k = 0.5
    out = augment(OpticalDistortion((k, k), seed=0), x)
    grid_y, grid_x = np.mgrid[0:32, 0:32].astype("float64")
    # initUndistortRectifyMap with the default new camera (principal point at (w-1)/2).
    u, v = (grid_x - 15.5) / 32, (grid_y - 15.5) / 32
    r2 = u * u + v * v
    scale = 1 + k * r2 + k * r2 * r2
    source_x, source_y = 32 * u * scale + 16, 32 * v * scale + 16
    expected = np.stack([
        np.stack([ndimage.map_coordinates(x[i, ..., c], [source_y, source_x], order=1, mode="mirror")
                  for c in range(3)], axis=-1)
        for i in range(2)])
    np.testing.assert_allclose(out, expected, atol=1e-2)


def test_grid_distortion_matches_albumentations_maps():
    size, steps, stretch = 32, 5, 1.3
    x = images(batch=1, size=size)

    def albumentations_axis():  # albumentations 0.4.6 grid_distortion, one axis
        step, coordinates, previous = size // steps, np.zeros(size), 0
        for idx in range(steps + 1):
            start, end = idx * step, idx * step + step
            if end > size:
                end, current = size, size
            else:
                current = previous + step * stretch
            coordinates[start:end] = np.linspace(previous, current, end - start)
            previous = current
        return coordinates

    out = augment(GridDistortion(steps, (stretch - 1, stretch - 1), seed=0), x)
    source_y, source_x = np.meshgrid(albumentations_axis(), albumentations_axis(), indexing="ij")
    expected = np.stack([ndimage.map_coordinates(x[0, ..., c], [source_y, source_x], order=1, mode="mirror")
                         for c in range(3)], axis=-1)
    np.testing.assert_allclose(out[0], expected, atol=1e-2)


def test_elastic_transform_without_field_is_albumentations_affine():
    x = images(batch=4, size=48)
    out = augment(ElasticTransform(alpha=0.0, sigma=50.0, alpha_affine=6.0, seed=0), x)
    assert np.all(np.isfinite(out))
    # A smooth image stays close to some affine warp of itself: the centre moves little.
    assert np.abs(out[:, 20:28, 20:28] - x[:, 20:28, 20:28]).mean() < 40.0
    identity = augment(ElasticTransform(alpha=0.0, sigma=50.0, alpha_affine=0.0, seed=0), x)
    np.testing.assert_allclose(identity, x, atol=1e-3)


def test_hue_shift_turns_red_by_twice_the_shift_in_degrees():
    red = np.zeros((1, 8, 8, 3), "float32")
    red[..., 0] = 255.0
    out = augment(HueSaturationValue((10, 10), (0, 0), (0, 0), seed=0), red)
    # OpenCV hue units are half-degrees: +10 is 20 degrees, RGB (255, 85, 0).
    np.testing.assert_allclose(out[0, 0, 0], [255.0, 85.0, 0.0], atol=0.05)
    darker = augment(HueSaturationValue((0, 0), (0, 0), (-55, -55), seed=0), red)
    np.testing.assert_allclose(darker[0, 0, 0], [200.0, 0.0, 0.0], atol=0.05)


def _opencv_clahe_reference(plane, clip_limit, grid=(8, 8)):
    """A direct NumPy transcription of OpenCV's clahe.cpp (8-bit, one plane)."""
    height, width = plane.shape
    tiles_y, tiles_x = grid
    pad_y = 0 if height % tiles_y == 0 else tiles_y - height % tiles_y
    pad_x = 0 if width % tiles_x == 0 else tiles_x - width % tiles_x
    padded = np.pad(plane, ((0, pad_y), (0, pad_x)), mode="reflect")
    tile_h, tile_w = padded.shape[0] // tiles_y, padded.shape[1] // tiles_x
    area = tile_h * tile_w
    limit = max(int(clip_limit * area / 256), 1)
    luts = np.zeros((tiles_y, tiles_x, 256))
    for ty in range(tiles_y):
        for tx in range(tiles_x):
            tile = padded[ty * tile_h:(ty + 1) * tile_h, tx * tile_w:(tx + 1) * tile_w]
            hist = np.bincount(tile.ravel().astype(int), minlength=256)
            clipped = np.maximum(hist - limit, 0).sum()
            hist = np.minimum(hist, limit) + clipped // 256
            residual = clipped % 256
            if residual:
                step = max(256 // residual, 1)
                for i in range(0, 256, step):
                    if residual <= 0:
                        break
                    hist[i] += 1
                    residual -= 1
            luts[ty, tx] = np.clip(np.round(np.cumsum(hist) * np.float32(255.0 / area)), 0, 255)
    # Blending in float32, as OpenCV does (inv_th = 1.0f / tile height, ...).
    f32, one = np.float32, np.float32(1.0)
    luts = luts.astype("float32")
    out = np.zeros_like(plane, dtype="float32")
    for y in range(height):
        tyf = f32(y) * f32(1.0 / tile_h) - f32(0.5)
        ty1 = int(np.floor(tyf))
        ya = tyf - f32(ty1)
        ty1, ty2 = max(ty1, 0), min(ty1 + 1, tiles_y - 1)
        for x in range(width):
            txf = f32(x) * f32(1.0 / tile_w) - f32(0.5)
            tx1 = int(np.floor(txf))
            xa = txf - f32(tx1)
            tx1, tx2 = max(tx1, 0), min(tx1 + 1, tiles_x - 1)
            value = int(plane[y, x])
            top = luts[ty1, tx1, value] * (one - xa) + luts[ty1, tx2, value] * xa
            bottom = luts[ty2, tx1, value] * (one - xa) + luts[ty2, tx2, value] * xa
            out[y, x] = np.clip(np.round(top * (one - ya) + bottom * ya), 0, 255)
    return out


def test_clahe_equalisation_matches_opencv_algorithm():
    rng = np.random.default_rng(0)
    for size, clip in ((32, 40.0), (35, 9.0), (24, 1.0)):
        plane = np.round(ndimage.gaussian_filter(rng.uniform(0, 255, (size, size)), 2) * 2 - 128).clip(0, 255)
        ours = clahe_lightness(ops.convert_to_tensor(plane[None].astype("float32")),
                               ops.convert_to_tensor([clip], "float32"), (8, 8))
        expected = _opencv_clahe_reference(plane, clip)
        np.testing.assert_allclose(ops.convert_to_numpy(ours)[0], expected, atol=1e-4)
    # On gray images (a = b = 128) only the lightness changes, so the output stays gray.
    gray = np.repeat(images(batch=2)[..., :1], 3, axis=-1)
    out = augment(CLAHE(4.0, seed=0), gray)
    assert np.abs(out - out[..., :1]).max() < 1.0 and np.abs(out - gray).mean() > 1.0


# --- The whole stack in a model --------------------------------------------------------------


def _seed_states(model):
    return [v for v in model.variables if "seed_generator_state" in v.path]


def _small_model(seed):
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = MelanomaAugmentation(seed=seed, name="augmentation")(inputs)
    x = keras.layers.Rescaling(1.0 / 255)(x)
    x = keras.layers.Conv2D(4, 3, strides=4)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def test_melanoma_augmentation_trains_and_its_seed_states_are_model_variables(tmp_path):
    model = _small_model(seed=0)
    states = _seed_states(model)
    # Every SeedGenerator of the stack (RandomApply/OneOf wrappers, their layers, flips).
    assert len(states) == 24
    assert not any("seed_generator_state" in w.path for w in model.weights)
    before = [ops.convert_to_numpy(v) for v in states]

    model.compile(optimizer="adam", loss="binary_crossentropy")
    data = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    history = model.fit(data, np.array([0, 1, 0, 1], "float32"), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [ops.convert_to_numpy(v) for v in states]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))  # fit augmented
    # predict does not augment and does not move the seeds.
    model.predict(data, verbose=0)
    assert all(np.array_equal(ops.convert_to_numpy(v), a) for v, a in zip(states, after))

    # Weights round-trip through save_weights / load_weights; the seed states are not in
    # them (they are model variables), so restoring them is assigning the variables.
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    other = _small_model(seed=0)
    other.load_weights(path)
    for mine, theirs in zip(model.weights, other.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(mine), ops.convert_to_numpy(theirs))
    augmentation = model.get_layer("augmentation")
    first = augment(augmentation, data)
    for variable, value in zip(states, after):
        variable.assign(value)
    np.testing.assert_array_equal(augment(augmentation, data), first)
    for variable, value in zip(_seed_states(other), after):
        variable.assign(value)
    np.testing.assert_array_equal(augment(other.get_layer("augmentation"), data), first)


def test_melanoma_augmentation_stays_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = MelanomaAugmentation(seed=0)
        inputs = keras.Input((32, 32, 3), dtype="uint8")
        assert layer(inputs).dtype == "float32"
        assert ops.convert_to_numpy(layer(images(batch=2), training=True)).dtype == np.float32
    finally:
        keras.config.set_dtype_policy(previous)


def test_melanoma_augmentation_switches():
    layer = MelanomaAugmentation(seed=0, transpose_p=0.0, vertical_flip=False, horizontal_flip=False,
                                 brightness_p=0.0, contrast_p=0.0, blur_noise_p=0.0, distortion_p=0.0,
                                 clahe_p=0.0, hsv_p=0.0, shift_scale_rotate_p=0.0, cutout_p=0.0)
    x = images()
    np.testing.assert_array_equal(augment(layer, x), x)
    with pytest.raises(ValueError, match="square"):
        MelanomaAugmentation(seed=0)(np.zeros((1, 32, 16, 3), "float32"), training=True)


# --- Cdiscount ------------------------------------------------------------------------------


def cdiscount_draws(original, augmented, crop_scale=200 / 180):
    """What the Cdiscount augmentation did to each image: (cropped, flipped, crop offsets).

    Each output must equal exactly one candidate: the image or a `size x size` crop of the
    image resized (by TensorFlow's own `tf.image.resize`) to `round(size * crop_scale)`, at
    any offset, each flipped left-right or not. Random images make candidates distinct.
    """
    size = original.shape[1]
    big = int(round(size * crop_scale))
    resized = tf.image.resize(original, [big, big]).numpy()
    candidates = {("none", flip): original[:, :, ::-1] if flip else original for flip in (False, True)}
    for y in range(big - size + 1):
        for x in range(big - size + 1):
            crop = resized[:, y:y + size, x:x + size]
            for flip in (False, True):
                candidates[((y, x), flip)] = crop[:, :, ::-1] if flip else crop
    matches = {key: np.abs(augmented - value).max(axis=(1, 2, 3)) < 1e-3 for key, value in candidates.items()}
    found = np.stack(list(matches.values()), axis=1)
    assert (found.sum(axis=1) == 1).all(), "every output is exactly one crop/flip of its image"
    keys = list(matches)
    picked = [keys[i] for i in found.argmax(axis=1)]
    cropped = np.array([where != "none" for where, _ in picked])
    flipped = np.array([flip for _, flip in picked])
    offsets = np.array([where for where, _ in picked if where != "none"])
    return cropped, flipped, offsets


def test_cdiscount_augmentation_draws_the_seeds_distribution_per_image():
    # One batch: the shares below can only be near p if every image draws on its own.
    n, size = 1200, 32  # resized to round(32 * 200 / 180) = 36: crop offsets 0-4
    x = np.random.default_rng(1).uniform(0, 255, (n, size, size, 3)).astype("float32")
    cropped, flipped, offsets = cdiscount_draws(x, augment(CdiscountAugmentation(seed=4), x))

    def near(share, p, count):
        # 4 binomial standard deviations: a correct layer fails with odds ~1e-4, while the
        # nearest wrong rules (e.g. p 0.5 instead of 0.75, or flips only with crops) sit
        # more than 10 away.
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / count), (share, p, count)

    near(cropped.mean(), 0.75, n)
    near(flipped.mean(), 0.5, n)
    near(flipped[cropped].mean(), 0.5, cropped.sum())  # flips independent of crops
    near(flipped[~cropped].mean(), 0.5, (~cropped).sum())
    for axis in (0, 1):  # offsets uniform over 0 ... 4 in each direction
        for value in range(5):
            near((offsets[:, axis] == value).mean(), 0.2, len(offsets))


def test_cdiscount_augmentation_probabilities_and_scale_are_its_arguments():
    x = images(batch=8)
    np.testing.assert_array_equal(augment(CdiscountAugmentation(crop_p=0.0, flip_p=0.0, seed=0), x), x)
    cropped, flipped, _ = cdiscount_draws(x, augment(CdiscountAugmentation(crop_p=1.0, flip_p=1.0, seed=0), x))
    assert cropped.all() and flipped.all()
    cropped, _, offsets = cdiscount_draws(
        x, augment(CdiscountAugmentation(crop_p=1.0, flip_p=0.0, crop_scale=1.25, seed=0), x), crop_scale=1.25)
    assert cropped.all() and offsets.max() <= 8  # 32 -> 40 px
    for bad in ({"crop_p": 1.5}, {"flip_p": -0.1}, {"crop_scale": 0.9}):
        with pytest.raises(ValueError):
            CdiscountAugmentation(**bad)
    with pytest.raises(ValueError, match="square"):
        CdiscountAugmentation(seed=0)(np.zeros((1, 32, 16, 3), "float32"), training=True)


def test_cdiscount_augmentation_under_xla_draws_crops_and_flips():
    # XLA draws other numbers for the same seed state (see above); still crops and flips.
    x = images(batch=16)
    layer = CdiscountAugmentation(seed=2)
    compiled = tf.function(lambda batch: layer(batch, training=True), jit_compile=True)
    cropped, flipped, _ = cdiscount_draws(x, compiled(x).numpy())
    assert cropped.any() and flipped.any() and not (cropped & flipped).all()


def test_cdiscount_augmentation_restored_seed_state_redraws_the_same_transformations():
    x = images(batch=8)
    layer = CdiscountAugmentation(seed=9)
    augment(layer, x)  # some steps of training
    saved = [ops.convert_to_numpy(v) for v in layer.variables]
    assert len(saved) == 1  # the seed state is all the layer holds
    following = [augment(layer, x) for _ in range(2)]
    # A resumed run: a new layer (same seed) given the saved state draws what followed.
    resumed = CdiscountAugmentation(seed=9)
    for variable, value in zip(resumed.variables, saved):
        variable.assign(value)
    for expected in following:
        np.testing.assert_array_equal(augment(resumed, x), expected)
    assert not np.array_equal(following[0], following[1])
