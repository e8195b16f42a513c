"""Apache Beam jobs: raw data to sharded TFRecords of the `tfrecords` kinds.

Each job is a module with `run(argv)`; it never imports Keras, so Dataflow workers
install and start only what conversion needs.
"""

import os

# Keep TensorFlow's C++ INFO and WARNING lines out of the output; users can still set it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
