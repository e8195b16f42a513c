"""yt8m_keras: from raw competition dumps to Keras models served by TF Serving.

Input pipelines (`data/`), models (`models/`), the trainer, the exporter and the
predictor; the `yt8m-keras` command line ties them to the Beam jobs in `beam_jobs`.
"""

import os

# Keep TensorFlow's C++ INFO and WARNING lines out of the output; users can still set it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
