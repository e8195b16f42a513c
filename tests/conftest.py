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
    from yt8m_keras.competitions.cdiscount import sample as cdiscount

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


# The tiny recipe made smaller still: 32 px images, a few steps.
TINY_TRAINING = ["data.image_size=32", "training.batch_size=8", "training.steps_per_epoch=4",
                 "training.epochs=2", "training.backup_every_steps=2", "training.lr_decay_epochs=[1]"]


@pytest.fixture(scope="session")
def tiny_training():
    """`--set` overrides that make the tiny recipe tinier (a list: extend, don't mutate)."""
    return tuple(TINY_TRAINING)


@pytest.fixture(scope="session")
def trained_run(cdiscount_data, tmp_path_factory):
    """A tiny training run on the converted sample: (model_dir, recipe)."""
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    data, _ = cdiscount_data
    model_dir = str(tmp_path_factory.mktemp("model"))
    recipe = load_recipe("cdiscount_xception:tiny", TINY_TRAINING)
    train(recipe, data, model_dir, verbose=0)
    return model_dir, recipe


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """The tiny run exported: BASE/cdiscount/1."""
    from yt8m_keras.export import export

    return export(trained_run[0], str(tmp_path_factory.mktemp("export")))


YT8M_TINY = ["data.max_frames=48", "training.batch_size=8", "training.steps_per_epoch=3", "training.epochs=2",
             "training.backup_every_steps=2", "data.shuffle_buffer=64"]


@pytest.fixture(scope="session")
def yt8m_data(tmp_path_factory):
    """Sample YouTube-8M records converted to the segment vocabulary: (data_dir, raw paths)."""
    from beam_jobs import frames_to_tfrecords
    from yt8m_keras.competitions.youtube8m import sample as yt8m

    raw = yt8m.write_sample(str(tmp_path_factory.mktemp("yt8m_raw")), videos=120, classes=8, segment_classes=4,
                            seed=0, min_frames=20, max_frames=45)
    out = str(tmp_path_factory.mktemp("yt8m_data"))
    frames_to_tfrecords.run(["--input", raw["train"], "--input", raw["validate"], "--input", raw["test"],
                             "--vocabulary", raw["segment_vocabulary"], "--output", out, "--overwrite",
                             *BEAM_TEST_ARGS])
    return out, raw


@pytest.fixture(scope="session")
def yt8m_tiny():
    """`--set` overrides that make the yt8m tiny recipes tinier."""
    return tuple(YT8M_TINY)


@pytest.fixture(scope="session")
def yt8m_pretrained(yt8m_data, tmp_path_factory):
    """A tiny NeXtVLAD video-level run on the sample: its model directory."""
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    model_dir = str(tmp_path_factory.mktemp("yt8m_video"))
    train(load_recipe("yt8m_nextvlad:tiny", YT8M_TINY), yt8m_data[0], model_dir, verbose=0)
    return model_dir


# The tiny taxonomy recipe made smaller still: a few steps of a tiny T5.
TAXONOMY_TINY = ["training.batch_size=16", "training.steps_per_epoch=8", "training.epochs=2",
                 "training.backup_every_steps=4", "training.warmup_epochs=0.5"]


@pytest.fixture(scope="session")
def taxonomy_data(tmp_path_factory):
    """Sample datathon lines (400) converted by the Beam job: (data_dir, raw paths)."""
    from beam_jobs import taxonomy_to_tfrecords
    from yt8m_keras.competitions.taxonomy.sample import write_sample

    raw = write_sample(str(tmp_path_factory.mktemp("taxonomy_raw")), products=400, seed=0)
    out = str(tmp_path_factory.mktemp("taxonomy_data"))
    taxonomy_to_tfrecords.run(["--features", raw["train_features"], "--labels", raw["train_labels"],
                               "--features", raw["test_features"], "--output", out, "--vocab-size", "400",
                               "--overwrite", *BEAM_TEST_ARGS])
    return out, raw


@pytest.fixture(scope="session")
def taxonomy_run(taxonomy_data, tmp_path_factory):
    """A tiny T5 trained a few steps on the sample: its model directory."""
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    model_dir = str(tmp_path_factory.mktemp("taxonomy_run"))
    train(load_recipe("taxonomy_t5:tiny", TAXONOMY_TINY), taxonomy_data[0], model_dir, verbose=0)
    return model_dir


@pytest.fixture(scope="session")
def avito_data(tmp_path_factory):
    """Sample Avito ads (300) converted by the Beam job into 2 seller-grouped folds: (data_dir, raw paths)."""
    from beam_jobs import avito_to_tfrecords
    from yt8m_keras.competitions.avito.sample import write_sample

    raw = write_sample(str(tmp_path_factory.mktemp("avito_raw")), ads=300, seed=0)
    out = str(tmp_path_factory.mktemp("avito_data"))
    avito_to_tfrecords.run(["--csv", raw["train_csv"], "--images", raw["train_images"], "--csv", raw["test_csv"],
                            "--images", raw["test_images"], "--output", out, "--folds", "2", "--min-count", "1",
                            "--vocab-size", "600", "--overwrite", *BEAM_TEST_ARGS])
    return out, raw
