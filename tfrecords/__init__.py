"""Record kinds: the contract shared by Beam writers, tf.data readers and serving signatures.

Each kind is a module declaring its feature keys, spec and schema version once, with
`encode` (Python values to a serialized record) and `parse` (serialized tensor to a
dict of tensors). This package imports only TensorFlow.
"""

from tfrecords import cdiscount_product
from tfrecords.errors import UserError

# name -> module; explicit, so nothing registers itself as an import side effect.
KINDS = {
    cdiscount_product.KIND: cdiscount_product,
}

__all__ = ["KINDS", "UserError", "cdiscount_product"]
