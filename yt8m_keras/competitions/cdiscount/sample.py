"""Sample Cdiscount data in the competition's own format: BSON files of real JPEGs.

Each class has a shape (circle, square, triangle, cross) and a colour; every image
varies position, size, colour, background and noise, so a small CNN can learn the
classes but cannot memorise pixels. Products carry 1-4 images like the real data.
"""

import csv
import os
from typing import Dict, List

import bson
import numpy as np
import tensorflow as tf

IMAGE_SIZE = 180
SHAPES = ("circle", "square", "triangle", "cross")
# Well-separated hues, so colour is learnable at 180x180 with JPEG noise.
PALETTE = np.array(
    [
        (220, 40, 40), (40, 170, 60), (50, 80, 220), (230, 200, 40),
        (200, 60, 200), (40, 200, 210), (240, 130, 30), (120, 60, 20),
    ],
    dtype=np.float32,
)
FIRST_CATEGORY_ID = 1000000000
# Cdiscount's share of products with 1, 2, 3, 4 images, roughly.
IMAGES_PER_PRODUCT_P = (0.6, 0.2, 0.1, 0.1)
# Like real listings, some pictures do not show the product (packaging, a manual, a
# lifestyle shot): such a picture shows another class. The first picture is the most
# often right, which is what makes combining a product's pictures worth it.
OFF_PRODUCT_P = (0.1, 0.3)  # (first picture, later pictures)

_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


def category_id(class_index: int) -> int:
    return FIRST_CATEGORY_ID + 1009 * class_index


def class_mask(class_index: int, cx: float, cy: float, r: float) -> np.ndarray:
    shape = SHAPES[class_index % len(SHAPES)]
    dx, dy = _XX - cx, _YY - cy
    if shape == "circle":
        return dx * dx + dy * dy < r * r
    if shape == "square":
        return (np.abs(dx) < r * 0.8) & (np.abs(dy) < r * 0.8)
    if shape == "triangle":
        return (dy > -r) & (dy < r) & (np.abs(dx) < (dy + r) / 2)
    return ((np.abs(dx) < r / 4) & (np.abs(dy) < r)) | ((np.abs(dy) < r / 4) & (np.abs(dx) < r))


def render_image(class_index: int, rng: np.random.Generator) -> np.ndarray:
    """One 180x180x3 uint8 picture of `class_index`, with per-image variation."""
    background = rng.uniform(90, 200, size=3).astype(np.float32)
    image = np.broadcast_to(background, (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
    r = rng.uniform(35, 60)
    cx, cy = rng.uniform(r, IMAGE_SIZE - r, size=2)
    colour = PALETTE[(class_index // len(SHAPES)) % len(PALETTE)] + rng.normal(0, 12, size=3)
    image[class_mask(class_index, cx, cy, r)] = colour
    image += rng.normal(0, 10, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    return tf.io.encode_jpeg(image, quality=quality).numpy()


def _class_probabilities(classes: int) -> np.ndarray:
    # Long-tailed like Cdiscount's 5,270 categories, but mild enough that every class is seen.
    weights = 1.0 / np.sqrt(np.arange(1, classes + 1))
    return weights / weights.sum()


def _write_bson(path: str, documents: List[Dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for document in documents:
            f.write(bson.encode(document))
    os.replace(tmp, path)


def _products(n: int, first_id: int, classes: int, labelled: bool, rng: np.random.Generator) -> List[Dict]:
    labels = rng.choice(classes, size=n, p=_class_probabilities(classes))
    counts = rng.choice(len(IMAGES_PER_PRODUCT_P), size=n, p=IMAGES_PER_PRODUCT_P) + 1
    documents = []
    for i, (label, count) in enumerate(zip(labels, counts)):
        document = {"_id": first_id + i}
        if labelled:
            document["category_id"] = category_id(int(label))
        shown = [int(label) if rng.random() >= OFF_PRODUCT_P[min(k, 1)] else int(rng.integers(classes))
                 for k in range(count)]
        document["imgs"] = [{"picture": encode_jpeg(render_image(c, rng))} for c in shown]
        documents.append(document)
    return documents


def write_sample(output_dir: str, products: int = 400, classes: int = 8, seed: int = 0,
                 test_products: int = None) -> Dict[str, str]:
    """Writes train.bson, test.bson and category_names.csv into `output_dir`.

    Args:
        output_dir: created if missing.
        products: labelled products in train.bson.
        classes: number of categories.
        seed: the same seed writes the same bytes.
        test_products: unlabelled products in test.bson (default: products // 4).

    Returns:
        The paths written, by name.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(output_dir, exist_ok=True)
    test_products = max(1, products // 4) if test_products is None else test_products
    paths = {
        "train": os.path.join(output_dir, "train.bson"),
        "test": os.path.join(output_dir, "test.bson"),
        "categories": os.path.join(output_dir, "category_names.csv"),
    }
    _write_bson(paths["train"], _products(products, 0, classes, True, rng))
    # Test _ids follow the train ids, as in the competition's files.
    _write_bson(paths["test"], _products(test_products, products + 10, classes, False, rng))
    with open(paths["categories"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category_id", "category_level1", "category_level2", "category_level3"])
        for c in range(classes):
            shape = SHAPES[c % len(SHAPES)]
            writer.writerow([category_id(c), f"UNIVERS {c % 3}", f"FORMES {shape.upper()}",
                             f"{shape} colour {(c // len(SHAPES)) % len(PALETTE)}"])
    return paths
