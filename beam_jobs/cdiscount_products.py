"""Cdiscount BSON documents: decoding, validation and the stratified split rule.

Plain functions, shared by the Beam job and by anything that converts without Beam
(the benchmark's single-process baseline), so both write the same records.

A product is validated as deeply as training reads it: every picture is decoded
with training's own call (`tf.io.decode_jpeg(jpeg, channels=3)`, as in
yt8m_keras/data/augment.py), so a truncated JPEG, or `FF D8 FF` followed by junk,
is a dead letter here rather than a crash mid-training. Decoding is most of the
conversion's cost; one eager call per picture is the cheapest way to do it that
we measured (a tf.function over a product's 1-4 pictures costs more per call than
it saves, see benchmarks/convert_bson.py), and the pixels are thrown away.
"""

import csv
import hashlib
import io
import math
import re
from typing import Dict, List, NamedTuple, Optional, Union

import bson
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems

from tfrecords import UserError, cdiscount_product

JPEG_MAGIC = b"\xff\xd8\xff"
CATEGORY_COLUMNS = ("category_id", "category_level1", "category_level2", "category_level3")


class Product(NamedTuple):
    product_id: int
    category_id: Optional[int]
    images: List[bytes]


def decode_product(raw: bytes, check_pictures: bool = True) -> Union[Product, str]:
    """Decodes one BSON document; returns a Product, or the reason it is rejected.

    Args:
        check_pictures: decode every JPEG as training will. Only a second reading of
            a document that already passed (the job's write pass) turns it off.
    """
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
    if check_pictures:
        for i, picture in enumerate(images):
            problem = jpeg_problem(picture)
            if problem:
                return f"imgs[{i}].picture does not decode: {problem}"
    return Product(product_id, category_id, images)


def jpeg_problem(picture: bytes) -> Optional[str]:
    """The decoder's message if training's JPEG decoding fails on `picture`, else None."""
    try:
        tf.io.decode_jpeg(picture, channels=3)
    except tf.errors.OpError as e:
        return _op_message(e)
    return None


def _op_message(error: "tf.errors.OpError") -> str:
    """The decoder's own words, without TensorFlow's "{{function_node ...}}" and "[Op:...]" wrapping."""
    message = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", error.message)
    return re.sub(r"\s*\[Op:\w+\].*$", "", message, flags=re.S).strip() or type(error).__name__


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
    """Reads Cdiscount's category_names.csv into classes rows, sorted by category_id.

    A repeated category_id or a file without rows is a UserError: either would
    silently change the class list (a duplicate's names overwritten, or no classes).
    """
    if not FileSystems.exists(path):
        raise UserError(f"categories file not found: {path}")
    with FileSystems.open(path) as f:
        reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8"))
        if not reader.fieldnames or "category_id" not in reader.fieldnames:
            raise UserError(f"{path} has no category_id column (columns: {reader.fieldnames})")
        names = [c for c in reader.fieldnames if c != "category_id"]
        rows, lines = {}, {}
        for row in reader:
            # line_num is the physical line where the row ends, right even with quoted newlines.
            line = reader.line_num
            try:
                category_id = int(row["category_id"])
            except (TypeError, ValueError):
                raise UserError(f"{path}:{line}: category_id {row['category_id']!r} is not an integer") from None
            if category_id in rows:
                raise UserError(f"{path}:{line}: duplicate category_id {category_id} "
                                f"(first on line {lines[category_id]})")
            rows[category_id], lines[category_id] = {n: row[n] for n in names}, line
    if not rows:
        raise UserError(f"{path} has a header but no categories")
    return classes_rows(sorted(rows), rows)


def classes_rows(category_ids: List[int], names: Optional[Dict[int, Dict]] = None) -> List[Dict]:
    """classes.csv rows: class_index follows the sorted category ids, never set order."""
    return [
        {"class_index": i, "category_id": c, **((names or {}).get(c, {}))}
        for i, c in enumerate(sorted(category_ids))
    ]
