"""Runs a competition's Beam conversion job in this process (the CLI and the quickstarts).

Beam is imported only here, when a conversion runs, so the other commands start fast.

Example:

>>> manifest = convert("cdiscount", ["--input", "raw/train.bson", "--output", "data"])
>>> print(summary(manifest, "data"))
"""

import importlib
from typing import Dict, List

from yt8m_keras import competitions

PROG = "yt8m-keras"


def convert(name: str, job_args: List[str]) -> Dict:
    """Runs the job `yt8m-keras convert NAME` runs (NAME: a competition or a format); returns its manifest."""
    jobs = competitions.converters()
    if name not in jobs:
        from tfrecords import UserError

        raise UserError(f"unknown conversion {name!r} (known: {', '.join(sorted(jobs))})")
    module, _ = jobs[name]
    return importlib.import_module(module).run(job_args, prog=f"{PROG} convert {name}")


def summary(manifest: Dict, output: str = None) -> str:
    """A few human lines about a converted dataset."""
    from beam_jobs import common

    return common.summary(manifest, output)
