"""Every user error is one `error:` line and exit status 2, never a traceback, and nothing
is silently wrong (issue: reliability, points 6-11)."""

import io
import json
import os
import shutil
import time

import pytest

from yt8m_keras.cli import main
from yt8m_keras.progress import Progress


def _error_line(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def _train_argv(data, model_dir, *overrides):
    argv = ["train", "--recipe", "cdiscount_xception:tiny", "--data", data, "--model-dir", model_dir,
            "--set", "data.image_size=32", "--set", "training.batch_size=8", "--set", "training.steps_per_epoch=2",
            "--set", "training.epochs=1"]
    for override in overrides:
        argv += ["--set", override]
    return argv


@pytest.fixture
def data_copy(cdiscount_data, tmp_path):
    """A converted dataset the test may damage."""
    copy = str(tmp_path / "data")
    shutil.copytree(cdiscount_data[0], copy)
    return copy


# --- point 6: an input is never deleted -----------------------------------------------------

def test_input_inside_output_is_refused_and_kept(cdiscount_raw, tmp_path, capsys):
    directory = tmp_path / "dir"
    directory.mkdir()
    train = directory / "train.bson"
    shutil.copy(cdiscount_raw["train"], train)
    before = train.read_bytes()
    assert main(["convert", "bson", "--input", str(train), "--output", str(directory), "--overwrite"]) == 2
    assert _error_line(capsys).startswith(f"error: input {train} is inside the output directory {directory}")
    assert train.read_bytes() == before


def test_input_inside_output_is_refused_for_frames(tmp_path, capsys):
    (tmp_path / "train0000.tfrecord").write_bytes(b"")
    assert main(["convert", "frames", "--input", str(tmp_path / "train*.tfrecord"), "--output", str(tmp_path),
                 "--overwrite"]) == 2
    assert "is inside the output directory" in _error_line(capsys)
    assert (tmp_path / "train0000.tfrecord").exists()


def test_directory_left_by_a_killed_conversion_needs_overwrite(cdiscount_raw, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "index").mkdir(parents=True)
    (out / "_tmp").mkdir()
    assert main(["convert", "bson", "--input", cdiscount_raw["train"], "--output", str(out)]) == 2
    assert "is not empty" in _error_line(capsys)


# --- point 7: no flag is silently ignored ---------------------------------------------------

@pytest.mark.parametrize("fmt, flags, unknown", [
    ("bson", ["--val_fraction", "0.5"], "--val_fraction 0.5"),
    ("bson", ["--bogus-flag", "3"], "--bogus-flag 3"),
    ("frames", ["--num_shards=3"], "--num_shards=3"),
])
def test_unknown_flags_are_errors(cdiscount_raw, tmp_path, capsys, fmt, flags, unknown):
    argv = ["convert", fmt, "--input", cdiscount_raw["train"], "--output", str(tmp_path / "out"), *flags]
    assert main(argv) == 2
    assert _error_line(capsys) == f"error: unrecognized arguments: {unknown}"
    assert not (tmp_path / "out").exists()


def test_beam_pipeline_flags_still_pass(cdiscount_raw, tmp_path, capsys):
    assert main(["convert", "bson", "--input", cdiscount_raw["train"], "--output", str(tmp_path / "out"),
                 "--runner=FnApiRunner", "--direct_num_workers", "1"]) == 0


# --- point 8: one error line for each user error ---------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["convert", "bson", "--input", "RAWDIR", "--output", "TMP/out"], "error: input RAWDIR is a directory"),
    (["convert", "bson", "--input", "TRAIN", "--output", "FILE"], "error: output FILE exists and is not a directory"),
    (["convert", "bson", "--input", "TRAIN", "--output", "FILE/sub"], "error: cannot write to output directory FILE/sub"),
    (["sample", "cdiscount", "--output", "FILE"], "error: --output FILE is a file"),
    (["quickstart", "--workdir", "FILE"], "error: --workdir FILE is a file"),
])
def test_paths_that_cannot_be_used(cdiscount_raw, tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("x")
    values = {"RAWDIR": os.path.dirname(cdiscount_raw["train"]), "TRAIN": cdiscount_raw["train"],
              "FILE": str(tmp_path / "file"), "TMP": str(tmp_path)}
    for key, value in values.items():
        argv = [a.replace(key, value) for a in argv]
        message = message.replace(key, value)
    assert main(argv) == 2
    assert _error_line(capsys).startswith(message)


@pytest.mark.parametrize("override, message", [
    ("model.args.dropout=abc", "error: recipe key model.args.dropout: expected float"),
    ("model.args.hidden_units=1.5", "error: recipe key model.args.hidden_units: expected int"),
    ("model.args.variant=3", "error: recipe key model.args.variant: expected str"),
    ("training.seed=-1", "error: recipe key training.seed: must be at least 0"),
    ("training.learning_rate=nan", "error: recipe key training.learning_rate: must be a finite number"),
    ("training.learning_rate=.inf", "error: recipe key training.learning_rate: must be a finite number"),
    ("training.clipnorm=-1", "error: recipe key training.clipnorm: must be at least 0"),
    ("data.negative_weight=.nan", "error: recipe key data.negative_weight: must be a finite number"),
    ("model.args.dropout=.nan", "error: recipe key model.args.dropout: must be a finite number"),
])
def test_bad_recipe_values(cdiscount_data, tmp_path, capsys, override, message):
    assert main(_train_argv(cdiscount_data[0], str(tmp_path / "m"), override)) == 2
    assert _error_line(capsys).startswith(message)


def test_imagenet_weights_without_network_say_what_to_do(cdiscount_data, tmp_path, capsys, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid/xception.h5: None -- no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    argv = _train_argv(cdiscount_data[0], str(tmp_path / "m"), "model.args.variant=xception",
                       "model.args.weights=imagenet", "data.image_size=71")
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "weights='imagenet' needs a download" in line and "pass its path as model.args.weights" in line


def test_missing_weights_file(cdiscount_data, tmp_path, capsys):
    argv = _train_argv(cdiscount_data[0], str(tmp_path / "m"), "model.args.variant=xception",
                       f"model.args.weights={tmp_path}/no.h5", "data.image_size=71")
    assert main(argv) == 2
    assert "weights file not found" in _error_line(capsys)


def test_recipe_file_not_utf8(cdiscount_data, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"name: caf\xe9\n")
    assert main(["train", "--recipe", str(recipe), "--data", cdiscount_data[0], "--model-dir", str(tmp_path)]) == 2
    assert _error_line(capsys).startswith(f"error: {recipe} is not UTF-8 text")


def test_manifest_without_splits(data_copy, tmp_path, capsys):
    path = os.path.join(data_copy, "manifest.json")
    manifest = json.load(open(path))
    del manifest["splits"]
    json.dump(manifest, open(path, "w"))
    assert main(_train_argv(data_copy, str(tmp_path / "m"))) == 2
    assert "has no 'splits' mapping" in _error_line(capsys)


def test_classes_with_non_integer_values(data_copy, tmp_path, capsys):
    path = os.path.join(data_copy, "classes.csv")
    lines = open(path).read().splitlines()
    lines[2] = "1,abc" + lines[2][lines[2].index(",", 2):]
    open(path, "w").write("\n".join(lines) + "\n")
    assert main(_train_argv(data_copy, str(tmp_path / "m"))) == 2
    assert _error_line(capsys).startswith(f"error: {path}:3: category_id 'abc' is not an integer")


def test_missing_shard(data_copy, tmp_path, capsys):
    manifest = json.load(open(os.path.join(data_copy, "manifest.json")))
    shard = os.path.join(data_copy, manifest["splits"]["train"]["shards"][0])
    os.remove(shard)
    assert main(_train_argv(data_copy, str(tmp_path / "m"))) == 2
    assert _error_line(capsys).startswith(f"error: shard missing: {shard}")


@pytest.mark.parametrize("split, where", [("train", "start"),
                                          pytest.param("val", "middle", marks=pytest.mark.slow)])
def test_corrupted_shard_is_named(data_copy, tmp_path, capsys, split, where):
    manifest = json.load(open(os.path.join(data_copy, "manifest.json")))
    shard = os.path.join(data_copy, manifest["splits"][split]["shards"][0])
    data = bytearray(open(shard, "rb").read())
    position = 2 if where == "start" else len(data) // 2  # val: read when the first epoch ends
    data[position:position + 16] = bytes(b ^ 0xFF for b in data[position:position + 16])
    open(shard, "wb").write(bytes(data))
    assert main(_train_argv(data_copy, str(tmp_path / "m"))) == 2
    assert _error_line(capsys).startswith(f"error: corrupted shard {shard}")


def test_export_of_a_damaged_weights_file(trained_run, tmp_path, capsys):
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained_run[0], model_dir)
    best = os.path.join(model_dir, "best.weights.h5")
    size = os.path.getsize(best)
    with open(best, "r+b") as f:
        f.truncate(size // 2)
    assert main(["export", "--model-dir", model_dir, "--export-dir", str(tmp_path / "export")]) == 2
    assert _error_line(capsys).startswith(f"error: cannot load weights from {best}")
    assert not os.path.exists(tmp_path / "export" / "cdiscount" / "1")


def test_predict_output_in_a_missing_directory_is_checked_first(exported, cdiscount_data, tmp_path, capsys,
                                                                  monkeypatch):
    from yt8m_keras.competitions.cdiscount import predict

    monkeypatch.setattr(predict, "load_served", lambda *a: pytest.fail("predicted before checking --output"))
    output = str(tmp_path / "missing" / "submission.csv")
    assert main(["predict", "--model", exported, "--data", cdiscount_data[0], "--output", output]) == 2
    assert _error_line(capsys).startswith(f"error: --output {output}: directory")


# --- point 9: nothing silently wrong ------------------------------------------------------------

def test_loss_becoming_nan_stops_with_the_step(cdiscount_data, tmp_path, capsys):
    model_dir = str(tmp_path / "m")
    argv = _train_argv(cdiscount_data[0], model_dir, "training.learning_rate=1e30", "training.epochs=2",
                       "training.accumulation_steps=1")
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("error: loss became") and "at step" in line
    assert not os.path.exists(os.path.join(model_dir, "final.weights.h5"))


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_data_with_other_classes_is_refused(trained_run, exported, data_copy, tmp_path, capsys, command):
    path = os.path.join(data_copy, "classes.csv")
    lines = open(path).read().splitlines()
    lines[1] = "0,999999" + lines[1][lines[1].index(",", 2):]
    open(path, "w").write("\n".join(lines) + "\n")
    if command == "evaluate":
        argv = ["evaluate", "--model-dir", trained_run[0], "--data", data_copy]
    else:
        argv = ["predict", "--model", exported, "--data", data_copy, "--output", str(tmp_path / "s.csv")]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert path in line and "differs from the model's" in line


# --- point 10: recipes cannot exhaust memory ----------------------------------------------------

def test_yaml_alias_bomb_is_refused_at_once(cdiscount_data, tmp_path, capsys):
    lines = ["name: bomb", "task: cdiscount", "model:", "  name: xception", "  args:",
             '    a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 8):
        lines.append(f"    a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    assert main(["train", "--recipe", str(recipe), "--data", cdiscount_data[0], "--model-dir", str(tmp_path)]) == 2
    assert time.monotonic() - start < 5  # generous bound: expanding it takes minutes and gigabytes
    assert "aliases (*name) are not allowed in recipes" in _error_line(capsys)


def test_alias_in_set_value_is_refused(cdiscount_data, tmp_path, capsys):
    assert main(_train_argv(cdiscount_data[0], str(tmp_path), "model.args.x=[&a 1, *a]")) == 2
    assert "aliases (*name) are not allowed" in _error_line(capsys)


# --- point 11: progress that reads well in a log --------------------------------------------------

def test_progress_in_a_log_is_whole_lines():
    log = io.StringIO()
    progress = Progress("products", interval=0.0, file=log)
    for _ in range(3):
        progress.update(32, images=64)
    progress.close()
    text = log.getvalue()
    assert "\r" not in text and "\b" not in text
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("32 products, 64 images") and lines[-1].startswith("96 products")
