"""Apache Beam jobs: raw data to sharded TFRecords of the `tfrecords` kinds.

Each job is a module with `run(argv)`; it never imports Keras, so Dataflow workers
install and start only what conversion needs.
"""

import os

# Keep TensorFlow's C++ INFO and WARNING lines out of the output; users can still set it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import logging


class _WithoutFalseNotices(logging.Filter):
    """Drops two warnings Beam logs on the root logger that do not concern these jobs.

    - "apitools not found": `import apache_beam` without the [gcp] extra. It concerns
      BigQuery IO, which no job here uses, and would open every local run; the [dataflow]
      extra installs what Dataflow needs.
    - "Resource module is not available": RunInference, at every memory reading, when
      its model manager cannot import torch (Beam 2.77 then drops the `resource` module
      too, on Linux as well). Only Beam's memory gauge is missing; inference is not
      affected, and the warning would repeat in every batch-inference run.
    """

    NOTICES = ("apitools not found", "Resource module is not available")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in self.NOTICES)


logging.getLogger().addFilter(_WithoutFalseNotices())
