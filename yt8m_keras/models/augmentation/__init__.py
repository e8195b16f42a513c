"""Batched, seeded image augmentation layers (Keras 3, `keras.ops` only).

The host's tf.data pipeline only decodes; random augmentation runs at the model's front,
on the accelerator, in training only (DESIGN.md, "Augmentation"). Each layer draws from
its own `keras.random.SeedGenerator`, whose state is a model variable, so a resumed run
draws the same transformations.

The transforms reproduce albumentations 0.4.6 (the version the SIIM-ISIC Melanoma 2020
winners used) per image, on `[B, H, W, C]` batches; probabilities are applied per image by
`RandomApply` and `OneOf`. `MelanomaAugmentation` assembles the winners' list;
`CdiscountAugmentation` is the Cdiscount seed's random resized crop and flip.
"""

from yt8m_keras.models.augmentation.cdiscount_augmentation import CdiscountAugmentation
from yt8m_keras.models.augmentation.clahe import CLAHE
from yt8m_keras.models.augmentation.cutout import Cutout
from yt8m_keras.models.augmentation.elastic_transform import ElasticTransform
from yt8m_keras.models.augmentation.gauss_noise import GaussNoise
from yt8m_keras.models.augmentation.gaussian_blur import GaussianBlur
from yt8m_keras.models.augmentation.grid_distortion import GridDistortion
from yt8m_keras.models.augmentation.hue_saturation_value import HueSaturationValue
from yt8m_keras.models.augmentation.median_blur import MedianBlur
from yt8m_keras.models.augmentation.melanoma_augmentation import MelanomaAugmentation
from yt8m_keras.models.augmentation.motion_blur import MotionBlur
from yt8m_keras.models.augmentation.multiplicative_contrast import MultiplicativeContrast
from yt8m_keras.models.augmentation.one_of import OneOf
from yt8m_keras.models.augmentation.optical_distortion import OpticalDistortion
from yt8m_keras.models.augmentation.random_apply import RandomApply
from yt8m_keras.models.augmentation.random_transpose import RandomTranspose
from yt8m_keras.models.augmentation.shift_scale_rotate import ShiftScaleRotate

__all__ = [
    "CLAHE",
    "CdiscountAugmentation",
    "Cutout",
    "ElasticTransform",
    "GaussNoise",
    "GaussianBlur",
    "GridDistortion",
    "HueSaturationValue",
    "MedianBlur",
    "MelanomaAugmentation",
    "MotionBlur",
    "MultiplicativeContrast",
    "OneOf",
    "OpticalDistortion",
    "RandomApply",
    "RandomTranspose",
    "ShiftScaleRotate",
]
