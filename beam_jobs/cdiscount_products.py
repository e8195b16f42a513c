"""Cdiscount BSON documents: decoding, validation and the stratified split rule.

Plain functions, shared by the Beam job and by anything that converts without Beam
(the benchmark's single-process baseline), so both write the same records.
"""

import csv
import hashlib
import io
import math
from typing import Dict, List, NamedTuple, Optional, Union

import bson
from apache_beam.io.filesystems import FileSystems

from tfrecords import UserError, cdiscount_product

JPEG_MAGIC = b"\xff\xd8\xff"
CATEGORY_COLUMNS = ("category_id", "category_level1", "category_level2", "category_level3")


class Product(NamedTuple):
    product_id: int
    category_id: Optional[int]
    images: List[bytes]


def decode_product(raw: bytes) -> Union[Product, str]:
    """Decodes one BSON document; returns a Product, or the reason it is rejected."""
    try:
        document = bson.decode(bytes(raw))
    except Exception as e:  # bson raises several types (InvalidBSON, ValueError, ...)
        return f"document does not decode: {type(e).__name__}: {e}"
    product_id = document.get("_id")
    if not isinstance(product_id, int):
        return f"_id is missing or not an integer: {product_id!r}"
    category_id = document.get("category_id")
    if category_id is not None and not isinstance(category_id, int):
        return f"category_id is not an integer: {category_id!r}"
    imgs = document.get("imgs")
    if not isinstance(imgs, list) or not imgs:
        return "no images: 'imgs' is missing or empty"
    if len(imgs) > cdiscount_product.MAX_IMAGES:
        return f"{len(imgs)} images, at most {cdiscount_product.MAX_IMAGES} expected"
    images = []
    for i, img in enumerate(imgs):
        picture = img.get("picture") if isinstance(img, dict) else None
        if not isinstance(picture, bytes) or not picture.startswith(JPEG_MAGIC):
            return f"imgs[{i}].picture is not a JPEG"
        images.append(picture)
    return Product(product_id, category_id, images)


def product_id_of(raw: bytes) -> Optional[int]:
    """The `_id` of a document that failed validation, when it can still be read."""
    try:
        product_id = bson.decode(bytes(raw)).get("_id")
    except Exception:
        return None
    return product_id if isinstance(product_id, int) else None


def split_rank(seed: int, product_id: int, input_index: int, offset: int) -> tuple:
    """A product's place in its category's deterministic shuffle for a given seed.

    A keyed hash rather than a random generator: the rank of a product never depends
    on which worker saw it or in which order.
    """
    digest = hashlib.blake2b(f"{seed}:{product_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little"), input_index, offset)


def validation_count(products: int, fraction: float) -> int:
    """round(fraction * products), rounding halves up (Python's round() would not)."""
    return int(math.floor(fraction * products + 0.5))


def read_categories(path: str) -> List[Dict]:
    """Reads Cdiscount's category_names.csv into classes rows, sorted by category_id."""
    if not FileSystems.exists(path):
        raise UserError(f"categories file not found: {path}")
    with FileSystems.open(path) as f:
        reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8"))
        if not reader.fieldnames or "category_id" not in reader.fieldnames:
            raise UserError(f"{path} has no category_id column (columns: {reader.fieldnames})")
        names = [c for c in reader.fieldnames if c != "category_id"]
        rows = {}
        for line, row in enumerate(reader, start=2):
            try:
                category_id = int(row["category_id"])
            except (TypeError, ValueError):
                raise UserError(f"{path}:{line}: category_id {row['category_id']!r} is not an integer") from None
            rows[category_id] = {n: row[n] for n in names}
    return classes_rows(sorted(rows), rows)


def classes_rows(category_ids: List[int], names: Optional[Dict[int, Dict]] = None) -> List[Dict]:
    """classes.csv rows: class_index follows the sorted category ids, never set order."""
    return [
        {"class_index": i, "category_id": c, **((names or {}).get(c, {}))}
        for i, c in enumerate(sorted(category_ids))
    ]
