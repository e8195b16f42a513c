import subprocess
import sys

import pytest

from yt8m_keras.cli import main


def _error_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("argv, message", [
    (["convert", "bson", "--input", "/no/such.bson", "--output", "OUT"], "error: input not found: /no/such.bson"),
    (["convert", "bson", "--input", "TRAIN", "--output", "OUT", "--val-fraction", "0"], "error: --val-fraction must be in (0, 1)"),
    (["convert", "bson", "--input", "TRAIN", "--output", "OUT", "--val-fraction", "abc"], "error: argument --val-fraction"),
    (["convert", "parquet"], "error: argument format: invalid choice"),
    (["sample", "cdiscount", "--output", "OUT", "--products", "0"], "error: argument --products"),
    (["frobnicate"], "error: argument command: invalid choice"),
    ([], "error: the following arguments are required: command"),
])
def test_user_errors_are_one_line(cdiscount_raw, tmp_path, capsys, argv, message):
    argv = [a.replace("TRAIN", cdiscount_raw["train"]).replace("OUT", str(tmp_path / "out")) for a in argv]
    assert main(argv) == 2
    assert _error_line(capsys).startswith(message)


def test_non_empty_output_needs_overwrite(cdiscount_raw, cdiscount_data, capsys):
    out, _ = cdiscount_data
    assert main(["convert", "bson", "--input", cdiscount_raw["train"], "--output", out]) == 2
    assert _error_line(capsys).startswith(f"error: output directory {out} is not empty (pass --overwrite")


def test_sample_then_convert(tmp_path, capsys):
    assert main(["sample", "cdiscount", "--output", str(tmp_path / "raw"), "--products", "30", "--classes", "3"]) == 0
    assert main(["convert", "bson", "--input", str(tmp_path / "raw" / "train.bson"), "--output",
                 str(tmp_path / "data"), "--runner=FnApiRunner"]) == 0
    out = capsys.readouterr().out
    assert "input records 30, rejected 0" in out and "train" in out


def test_console_script_help_lists_subcommands():
    result = subprocess.run([sys.executable, "-m", "yt8m_keras.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("sample", "convert", "quickstart"):
        assert command in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["train", "--recipe", "cdiscount_xception:tiny", "--data", "DATA", "--model-dir", "OUT", "--set",
      "training.batchsize=3"], "error: unknown recipe key training.batchsize"),
    (["train", "--recipe", "cdiscount_xception:tiny", "--data", "DATA", "--model-dir", "OUT", "--set",
      "training.epochs=many"], "error: recipe key training.epochs: expected int, got 'many'"),
    (["train", "--recipe", "no_such_recipe", "--data", "DATA", "--model-dir", "OUT"], "error: recipe not found"),
    (["train", "--recipe", "cdiscount_xception:tiny", "--data", "OUT", "--model-dir", "OUT"], "error: no manifest.json"),
    (["train", "--recipe", "cdiscount_xception:tiny", "--data", "DATA", "--model-dir", "OUT", "--strategy", "tpu"],
     "error: no TPU found"),
    (["export", "--model-dir", "OUT", "--export-dir", "OUT"], "error: no recipe.yaml in"),
    (["evaluate", "--model-dir", "OUT", "--data", "DATA", "--tta", "-1"], "error: argument --tta"),
    (["predict", "--model", "OUT", "--data", "DATA", "--output", "OUT/s.csv"], "error: no SavedModel in"),
])
def test_training_and_serving_user_errors(cdiscount_data, tmp_path, capsys, argv, message):
    argv = [a.replace("DATA", cdiscount_data[0]).replace("OUT", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert _error_line(capsys).startswith(message)
