"""`MelanomaAugmentation`: the SIIM-ISIC Melanoma 2020 1st place training augmentation."""

import numpy as np
import keras
from keras import layers, ops

from yt8m_keras.models.augmentation.clahe import CLAHE
from yt8m_keras.models.augmentation.cutout import Cutout
from yt8m_keras.models.augmentation.elastic_transform import ElasticTransform
from yt8m_keras.models.augmentation.gauss_noise import GaussNoise
from yt8m_keras.models.augmentation.gaussian_blur import GaussianBlur
from yt8m_keras.models.augmentation.grid_distortion import GridDistortion
from yt8m_keras.models.augmentation.hue_saturation_value import HueSaturationValue
from yt8m_keras.models.augmentation.median_blur import MedianBlur
from yt8m_keras.models.augmentation.motion_blur import MotionBlur
from yt8m_keras.models.augmentation.multiplicative_contrast import MultiplicativeContrast
from yt8m_keras.models.augmentation.one_of import OneOf
from yt8m_keras.models.augmentation.optical_distortion import OpticalDistortion
from yt8m_keras.models.augmentation.random_apply import RandomApply
from yt8m_keras.models.augmentation.random_transpose import RandomTranspose
from yt8m_keras.models.augmentation.shift_scale_rotate import ShiftScaleRotate

# How many seeds the stack hands out (one per SeedGenerator); fixed so that a seed gives
# the same sub-seeds whatever layers are switched off.
_NUM_SEEDS = 24


@keras.saving.register_keras_serializable(package="yt8m_keras")
class MelanomaAugmentation(layers.Layer):
    """The 1st place SIIM-ISIC Melanoma 2020 augmentation, as batched Keras layers.

    The winners' albumentations `Compose` (Ha, Liu, Liu; albumentations 0.4.6), in their
    order, each probability per image:

    1. `RandomTranspose` (p 0.5), `keras.layers.RandomFlip("vertical")` and
       `RandomFlip("horizontal")` (p 0.5 each, fixed by Keras);
    2. `keras.layers.RandomBrightness` (+-0.2 x 255, p 0.75), `MultiplicativeContrast`
       (x (1 +- 0.2), p 0.75);
    3. one of `MotionBlur`, `MedianBlur`, `GaussianBlur` (kernels 3 or 5),
       `GaussNoise` (variance 5-30) (p 0.7);
    4. one of `OpticalDistortion` (k +-1), `GridDistortion` (5 steps, +-1),
       `ElasticTransform` (alpha 3, sigma 50, affine +-50 px) (p 0.7);
    5. `CLAHE` (clip limit U(1, 4), 8 x 8 tiles) (p 0.7);
    6. `HueSaturationValue` (+-10, +-20, +-10 on OpenCV's scales) (p 0.5);
    7. `ShiftScaleRotate` (shift +-0.1, scale +-0.1, rotate +-15 degrees, black border)
       (p 0.85);
    8. `Cutout`, one hole of 37.5 % of the side (p 0.7).

    (The winners resized between 7 and 8; here images arrive at the model's size.)
    Pixel-sized magnitudes (`elastic_alpha_affine`, `elastic_sigma`, noise variance, blur
    kernels) were used by the winners on images of 512 to 1024 px before resizing.

    Input: `[B, H, W, 3]` uint8 or float images on the 0-255 scale, square (for the
    transpose) and of a static size. Output: float32 in [0, 255], same shape. Only
    `training=True` augments; otherwise the output is the input cast to float32. All
    randomness comes from the sublayers' `SeedGenerator`s, which are model variables
    (`model.variables`, not `model.weights`).

    Args:
        seed: optional int; every sublayer's seed derives from it
            (`np.random.SeedSequence(seed)`), so one seed fixes the whole stack.
        transpose_p: float, probability of a transpose.
        vertical_flip, horizontal_flip: bools, include the (p 0.5) flips.
        brightness_limit, brightness_p: brightness shift range (fraction of 255) and
            probability.
        contrast_limit, contrast_p: contrast factor range (1 +- limit) and probability.
        blur_limit: largest blur kernel size (odd sizes from 3).
        noise_var_limit: pair, Gaussian noise variance range (0-255 scale).
        blur_noise_p: probability of one of the blurs or the noise.
        optical_distort_limit: range of the optical distortion's `k`.
        grid_num_steps, grid_distort_limit: the grid distortion's grid and range.
        elastic_alpha, elastic_sigma, elastic_alpha_affine: `ElasticTransform`'s arguments.
        distortion_p: probability of one of the three distortions.
        clahe_clip_limit, clahe_tile_grid_size, clahe_p: `CLAHE`'s arguments, probability.
        hue_shift_limit, sat_shift_limit, val_shift_limit, hsv_p: `HueSaturationValue`'s
            arguments and probability.
        shift_limit, scale_limit, rotate_limit, shift_scale_rotate_p:
            `ShiftScaleRotate`'s arguments and probability.
        cutout_size, cutout_p: hole side (fraction of the image side) and probability.
        **kwargs: standard `keras.layers.Layer` arguments (`dtype` defaults to float32).

    Example:

    ```python
    import keras
    from yt8m_keras.models.augmentation import MelanomaAugmentation

    images = keras.Input((384, 384, 3), dtype="uint8")
    x = MelanomaAugmentation(seed=0)(images)  # float32, 0-255; augments in fit only
    backbone = keras.applications.EfficientNetB0(include_top=False, weights=None, pooling="avg")
    outputs = keras.layers.Dense(1, activation="sigmoid")(backbone(x))
    model = keras.Model(images, outputs)
    ```
    """

    def __init__(
        self,
        seed=None,
        transpose_p=0.5,
        vertical_flip=True,
        horizontal_flip=True,
        brightness_limit=0.2,
        brightness_p=0.75,
        contrast_limit=0.2,
        contrast_p=0.75,
        blur_limit=5,
        noise_var_limit=(5.0, 30.0),
        blur_noise_p=0.7,
        optical_distort_limit=1.0,
        grid_num_steps=5,
        grid_distort_limit=1.0,
        elastic_alpha=3.0,
        elastic_sigma=50.0,
        elastic_alpha_affine=50.0,
        distortion_p=0.7,
        clahe_clip_limit=4.0,
        clahe_tile_grid_size=(8, 8),
        clahe_p=0.7,
        hue_shift_limit=10,
        sat_shift_limit=20,
        val_shift_limit=10,
        hsv_p=0.5,
        shift_limit=0.1,
        scale_limit=0.1,
        rotate_limit=15,
        shift_scale_rotate_p=0.85,
        cutout_size=0.375,
        cutout_p=0.7,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.seed = seed
        self.transpose_p = transpose_p
        self.vertical_flip = bool(vertical_flip)
        self.horizontal_flip = bool(horizontal_flip)
        self.brightness_limit = brightness_limit
        self.brightness_p = brightness_p
        self.contrast_limit = contrast_limit
        self.contrast_p = contrast_p
        self.blur_limit = blur_limit
        self.noise_var_limit = tuple(noise_var_limit)
        self.blur_noise_p = blur_noise_p
        self.optical_distort_limit = optical_distort_limit
        self.grid_num_steps = grid_num_steps
        self.grid_distort_limit = grid_distort_limit
        self.elastic_alpha = elastic_alpha
        self.elastic_sigma = elastic_sigma
        self.elastic_alpha_affine = elastic_alpha_affine
        self.distortion_p = distortion_p
        self.clahe_clip_limit = clahe_clip_limit
        self.clahe_tile_grid_size = tuple(clahe_tile_grid_size)
        self.clahe_p = clahe_p
        self.hue_shift_limit = hue_shift_limit
        self.sat_shift_limit = sat_shift_limit
        self.val_shift_limit = val_shift_limit
        self.hsv_p = hsv_p
        self.shift_limit = shift_limit
        self.scale_limit = scale_limit
        self.rotate_limit = rotate_limit
        self.shift_scale_rotate_p = shift_scale_rotate_p
        self.cutout_size = cutout_size
        self.cutout_p = cutout_p

        if seed is None:
            seeds = [None] * _NUM_SEEDS
        else:
            # 31-bit seeds: the seed state is int32 on some backends (uint32 on JAX).
            seeds = [int(value) >> 1 for value in np.random.SeedSequence(int(seed)).generate_state(_NUM_SEEDS)]
        seeds = iter(seeds)
        common = {"dtype": "float32"}

        def apply(layer, p):
            return RandomApply(layer, p=p, seed=next(seeds), **common)

        stack = [RandomTranspose(p=transpose_p, seed=next(seeds), **common)]
        vertical_seed, horizontal_seed = next(seeds), next(seeds)
        if self.vertical_flip:
            stack.append(layers.RandomFlip("vertical", seed=vertical_seed, **common))
        if self.horizontal_flip:
            stack.append(layers.RandomFlip("horizontal", seed=horizontal_seed, **common))
        stack += [
            apply(layers.RandomBrightness(brightness_limit, value_range=(0, 255), seed=next(seeds), **common),
                  brightness_p),
            apply(MultiplicativeContrast(contrast_limit, seed=next(seeds), **common), contrast_p),
            OneOf([
                MotionBlur(blur_limit, seed=next(seeds), **common),
                MedianBlur(blur_limit, seed=next(seeds), **common),
                GaussianBlur(blur_limit, seed=next(seeds), **common),
                GaussNoise(self.noise_var_limit, seed=next(seeds), **common),
            ], p=blur_noise_p, seed=next(seeds), **common),
            OneOf([
                OpticalDistortion(optical_distort_limit, seed=next(seeds), **common),
                GridDistortion(grid_num_steps, grid_distort_limit, seed=next(seeds), **common),
                ElasticTransform(elastic_alpha, elastic_sigma, elastic_alpha_affine, seed=next(seeds),
                                 **common),
            ], p=distortion_p, seed=next(seeds), **common),
            apply(CLAHE(clahe_clip_limit, self.clahe_tile_grid_size, seed=next(seeds), **common), clahe_p),
            apply(HueSaturationValue(hue_shift_limit, sat_shift_limit, val_shift_limit, seed=next(seeds),
                                     **common), hsv_p),
            apply(ShiftScaleRotate(shift_limit, scale_limit, rotate_limit, seed=next(seeds), **common),
                  shift_scale_rotate_p),
            apply(Cutout(cutout_size, seed=next(seeds), **common), cutout_p),
        ]
        self.stack = stack
        self.built = True

    def call(self, images, training=None):
        images = ops.cast(images, "float32")
        if not training:
            return images
        for layer in self.stack:
            images = ops.cast(layer(images, training=True), "float32")
        return ops.clip(images, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            seed=self.seed,
            transpose_p=self.transpose_p,
            vertical_flip=self.vertical_flip,
            horizontal_flip=self.horizontal_flip,
            brightness_limit=self.brightness_limit,
            brightness_p=self.brightness_p,
            contrast_limit=self.contrast_limit,
            contrast_p=self.contrast_p,
            blur_limit=self.blur_limit,
            noise_var_limit=self.noise_var_limit,
            blur_noise_p=self.blur_noise_p,
            optical_distort_limit=self.optical_distort_limit,
            grid_num_steps=self.grid_num_steps,
            grid_distort_limit=self.grid_distort_limit,
            elastic_alpha=self.elastic_alpha,
            elastic_sigma=self.elastic_sigma,
            elastic_alpha_affine=self.elastic_alpha_affine,
            distortion_p=self.distortion_p,
            clahe_clip_limit=self.clahe_clip_limit,
            clahe_tile_grid_size=self.clahe_tile_grid_size,
            clahe_p=self.clahe_p,
            hue_shift_limit=self.hue_shift_limit,
            sat_shift_limit=self.sat_shift_limit,
            val_shift_limit=self.val_shift_limit,
            hsv_p=self.hsv_p,
            shift_limit=self.shift_limit,
            scale_limit=self.scale_limit,
            rotate_limit=self.rotate_limit,
            shift_scale_rotate_p=self.shift_scale_rotate_p,
            cutout_size=self.cutout_size,
            cutout_p=self.cutout_p,
        )
        return config
