"""Apache Beam jobs: raw data to sharded TFRecords of the `tfrecords` kinds.

Each job is a module with `run(argv)`; it never imports Keras, so Dataflow workers
install and start only what conversion needs.
"""

import os

# Keep TensorFlow's C++ INFO and WARNING lines out of the output; users can still set it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import logging


class _WithoutBigQueryNotice(logging.Filter):
    """Drops the notice `import apache_beam` logs when the [gcp] extra is absent.

    It concerns BigQuery IO, which no job here uses, and would open every local run;
    the [dataflow] extra installs what Dataflow needs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


logging.getLogger().addFilter(_WithoutBigQueryNotice())
