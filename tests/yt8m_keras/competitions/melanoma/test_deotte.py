"""Chris Deotte's TFRecords, written here with plain TensorFlow code in his naming, train as they are."""

import numpy as np
import pytest

from tfrecords import melanoma_image as kind
from yt8m_keras.competitions.melanoma import input as data
from yt8m_keras.recipes import load_recipe
from yt8m_keras.train import train


def test_folds_targets_and_dropped_duplicates(deotte_dir):
    directory, rows = deotte_dir
    src = data.source(directory)
    assert data.fold_paths(src, 1, validation=True, folds=2) == [p for p, _ in src.train[2:]]
    seen = {}
    for batch in data.eval_dataset(directory, "val", 8, 32, fold=0, folds=2):
        for name, index in zip(batch[kind.IMAGE_NAME].numpy(), batch[kind.CLASS_INDEX].numpy()):
            seen[name.decode()] = int(index)
    expected = {r["image_name"]: kind.class_of(r["diagnosis"]) for r in rows
                if r["tfrecord"] in (0, 1)}
    assert seen == expected  # fold 0 = shards 0 and 1; the -1 row is gone; 9-class targets
    assert "ISIC_0000005" not in seen and rows[5]["tfrecord"] == -1
    assert kind.CLASSES[seen["ISIC_0000010"]] == "BKL"  # "lentigo NOS" -> BKL
    assert kind.CLASSES[seen["ISIC_0000011"]] == "unknown"  # "cafe-au-lait macule"


def test_metadata_comes_from_his_csv(deotte_dir):
    directory, rows = deotte_dir
    batch = next(iter(data.eval_dataset(directory, "val", 4, 32, fold=1, folds=2)))
    name = batch[kind.IMAGE_NAME].numpy()[0].decode()
    row = next(r for r in rows if r["image_name"] == name)
    meta = batch["metadata"].numpy()[0]
    assert meta[0] == (1.0 if row["sex"] == "male" else 0.0)
    assert meta[1] == pytest.approx(int(row["age_approx"]) / 90)
    assert meta[2 + kind.SITES.index(row["anatom_site_general_challenge"])] == 1.0
    assert meta[-2] == pytest.approx(np.log1p(2))  # two images per patient in his CSV


def test_his_shards_train_as_they_are(melanoma_run):
    _, recipe, result = melanoma_run
    assert recipe.data.augment and result["step"] == 2
    assert "val_auc" in result["history"] and "auc" in result["history"]


@pytest.mark.slow  # the trainer's mixed precision is exercised by default elsewhere; this is the melanoma model's
def test_mixed_precision_trains(deotte_dir, tmp_path):
    import keras

    recipe = load_recipe("melanoma_effnet:tiny", ["data.image_size=32", "data.folds=2", "data.augment=false",
                                                   "training.steps_per_epoch=1", "training.epochs=1",
                                                   "training.batch_size=4", "training.precision=mixed_float16"])
    try:
        result = train(recipe, deotte_dir[0], str(tmp_path / "model"), verbose=0)
        assert result["model"].get_layer("probabilities").compute_dtype == "float32"
        assert result["model"].get_layer("metadata_dense0").compute_dtype == "float16"
        assert np.isfinite(result["history"]["loss"]).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow  # about a minute: three runs trace the whole augmentation stack
def test_exact_resume_with_augmentation_on_the_model(deotte_dir, tmp_path, monkeypatch):
    from preemption import Preempted, preempt_after, weights_file_arrays

    directory, _ = deotte_dir
    recipe = load_recipe("melanoma_effnet:tiny", ["data.image_size=32", "data.folds=2", "data.fold=0",
                                                   "training.steps_per_epoch=3", "training.epochs=2",
                                                   "training.batch_size=4", "training.backup_every_steps=2"])
    assert recipe.data.augment  # the augmentation's seed states must survive the restart
    train(recipe, directory, str(tmp_path / "whole"), verbose=0)
    preempt_after(monkeypatch, 5)  # the second epoch, after the backup at step 4
    with pytest.raises(Preempted):
        train(recipe, directory, str(tmp_path / "cut"), verbose=0)
    monkeypatch.undo()
    train(recipe, directory, str(tmp_path / "cut"), verbose=0)
    whole = weights_file_arrays(tmp_path / "whole" / "final.weights.h5")
    cut = weights_file_arrays(tmp_path / "cut" / "final.weights.h5")
    assert whole.keys() == cut.keys()
    for name in whole:
        np.testing.assert_allclose(cut[name], whole[name], rtol=0, atol=1e-6, err_msg=name)
