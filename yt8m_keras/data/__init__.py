"""tf.data input pipelines, one module per record kind: parse -> decode -> augment -> batch."""
