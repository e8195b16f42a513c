"""`yt8m-keras predict --beam` against `yt8m-keras predict`: the same flags, the same bytes."""

import os
from typing import Sequence

from yt8m_keras.cli import main

# Two worker threads: bundles scored and partial submissions merged in parallel, as on Dataflow.
WORKERS = ["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_threading"]


def assert_beam_job_matches_predict(flags: Sequence[str], directory) -> bytes:
    """Runs both with `flags` (without --output) and asserts their files are byte-equal; returns the bytes."""
    cli_output, beam_output = (os.path.join(str(directory), name) for name in ("cli_submission", "beam_submission"))
    assert main(["predict", *flags, "--output", cli_output]) == 0
    assert main(["predict", *flags, "--output", beam_output, "--beam", *WORKERS]) == 0
    with open(cli_output, "rb") as cli, open(beam_output, "rb") as beam:
        expected, written = cli.read(), beam.read()
    assert written == expected
    return written
