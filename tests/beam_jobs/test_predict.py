"""`python -m beam_jobs.predict` (= `yt8m-keras predict --beam`: RunInference over exported SavedModels)
writes the file `yt8m-keras predict` writes.

The other competitions' byte-equality tests sit beside their export fixtures (marked slow):
tests/yt8m_keras/competitions/{youtube8m,melanoma,taxonomy,avito}.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from yt8m_keras.cli import main

# `python -m beam_jobs.predict` in a process where any import of Keras fails: the workers
# must never need it.
WITHOUT_KERAS = """
import runpy, sys
sys.modules["keras"] = None
sys.modules["keras_hub"] = None
runpy.run_module("beam_jobs.predict", run_name="__main__", alter_sys=True)
"""


def test_cdiscount_job_without_keras_writes_the_predict_submission(exported, cdiscount_data, tmp_path):
    data, manifest = cdiscount_data
    flags = ["--model", exported, "--data", data, "--tta", "1", "--combine", "mean"]
    cli_output, beam_output = str(tmp_path / "cli.csv"), str(tmp_path / "beam.csv")
    assert main(["predict", *flags, "--output", cli_output]) == 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", WITHOUT_KERAS, *flags, "--output", beam_output,
                           "--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_threading"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Beam's false "Resource module is not available" warning (RunInference, without torch) is dropped.
    assert "Resource module" not in done.stderr and "apitools" not in done.stderr
    test_products = manifest["splits"]["test"]["records"]
    assert f"wrote {beam_output}: {test_products} rows from {test_products} records" in done.stdout
    with open(cli_output, "rb") as cli, open(beam_output, "rb") as beam:
        assert beam.read() == cli.read()
    assert len(open(beam_output).read().splitlines()) == test_products + 1


def test_flag_and_model_errors_are_user_errors(cdiscount_data, tmp_path, capsys):
    data, _ = cdiscount_data
    output = str(tmp_path / "s.csv")

    def error(*flags):
        assert main(["predict", *flags]) == 2
        return capsys.readouterr().err

    assert "error: unrecognized arguments: --frobnicate" in error(
        "--model", str(tmp_path), "--data", data, "--output", output, "--beam", "--frobnicate")
    assert "error: unrecognized arguments: --runner=FnApiRunner" in error(  # Beam's flags need --beam
        "--model", str(tmp_path), "--data", data, "--output", output, "--runner=FnApiRunner")
    assert "error: no SavedModel in" in error("--model", str(tmp_path), "--data", data, "--output", output, "--beam")
    assert "does not exist" in error("--model", str(tmp_path), "--data", data,
                                     "--output", str(tmp_path / "no" / "s.csv"), "--beam")
    assert not os.path.exists(output)


def test_a_corrupt_shard_is_one_error_naming_it(exported, cdiscount_data, tmp_path, capsys):
    # Beam's reader says "Not a valid TFRecord" with the record's bytes, not the file.
    data = tmp_path / "data"
    shutil.copytree(cdiscount_data[0], data)
    shard = data / cdiscount_data[1]["splits"]["test"]["shards"][0]
    damaged = bytearray(shard.read_bytes())
    damaged[len(damaged) // 2:len(damaged) // 2 + 40] = bytes(40)
    shard.write_bytes(bytes(damaged))
    output = tmp_path / "s.csv"
    assert main(["predict", "--model", exported, "--data", str(data), "--output", str(output), "--beam"]) == 2
    assert re.search(f"^error: corrupted shard {re.escape(str(shard))}: .*convert the data again",
                     capsys.readouterr().err, re.MULTILINE)
    assert not output.exists()


def test_the_module_runs_the_installed_packages_command_line(monkeypatch, capsys):
    import beam_jobs.predict as job

    # setup.cfg declares yt8m_keras' predict as the command `python -m beam_jobs.predict` runs.
    calls = []
    monkeypatch.setattr("yt8m_keras.cli.main", lambda argv: calls.append(argv) or 0)
    assert job.main(["--model", "m", "--runner=FnApiRunner"]) == 0
    assert calls == [["predict", "--beam", "--model", "m", "--runner=FnApiRunner"]]
    # Without a package declaring it: one error line, exit 2.
    monkeypatch.setattr(job, "entry_points", lambda group: [])
    assert job.main(["--model", "m"]) == 2
    assert capsys.readouterr().err.startswith("error: no installed package declares")
