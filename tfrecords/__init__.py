"""Record kinds: the contract shared by Beam writers, tf.data readers and serving signatures.

Each kind is a module declaring its feature keys, spec and schema version once, with
`encode` (Python values to a serialized record) and `parse` (serialized tensor to a
dict of tensors). This package imports only TensorFlow, and only when a kind is used,
so command lines answer `--help` and flag errors without loading it.
"""

import importlib
from types import ModuleType

from tfrecords.errors import ArgumentParser, UserError, run_main

# name -> module; explicit, so nothing registers itself as an import side effect.
KINDS = {
    "avito_ad": "tfrecords.avito_ad",
    "cdiscount_product": "tfrecords.cdiscount_product",
    "melanoma_image": "tfrecords.melanoma_image",
    "product_text": "tfrecords.product_text",
    "yt8m_frame": "tfrecords.yt8m_frame",
    "yt8m_video": "tfrecords.yt8m_video",
}


def kind(name: str) -> ModuleType:
    """The module of record kind `name` (its KIND, SCHEMA_VERSION, encode, parse)."""
    if name not in KINDS:
        raise UserError(f"unknown record kind {name!r} (known: {', '.join(sorted(KINDS))})")
    return importlib.import_module(KINDS[name])


__all__ = ["KINDS", "ArgumentParser", "UserError", "kind", "run_main"]
