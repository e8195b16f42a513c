"""Shared fixtures: sample Cdiscount data written and converted once per test session."""

import os

import pytest

# Keep TensorFlow quiet and on the CPU in every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# In-process runner: no runner binary to fetch, no worker processes to start.
BEAM_TEST_ARGS = ["--runner=FnApiRunner"]


@pytest.fixture(scope="session")
def cdiscount_raw(tmp_path_factory):
    """train.bson (120 labelled products, 4 classes), test.bson and category_names.csv."""
    from yt8m_keras.sample import cdiscount

    return cdiscount.write_sample(str(tmp_path_factory.mktemp("raw")), products=120, classes=4, seed=0)


@pytest.fixture(scope="session")
def cdiscount_data(cdiscount_raw, tmp_path_factory):
    """The sample converted by the Beam job: (output directory, manifest)."""
    from beam_jobs import bson_to_tfrecords

    out = str(tmp_path_factory.mktemp("converted"))
    manifest = bson_to_tfrecords.run([
        "--input", cdiscount_raw["train"], "--input", cdiscount_raw["test"],
        "--categories", cdiscount_raw["categories"], "--output", out, "--overwrite", *BEAM_TEST_ARGS])
    return out, manifest
