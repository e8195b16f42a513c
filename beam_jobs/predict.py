"""Batch inference over exported SavedModels on Beam: the submission `yt8m-keras predict` writes.

    python -m beam_jobs.predict --model BASE/NAME/VERSION [--model ...] --data DATA --output submission.csv \
        [--task T] [--split test] [the competition's flags: --combine, --tta, --k, --decoding, ...] \
        [Beam pipeline flags: --runner DataflowRunner --project P --region R \
         --temp_location gs://B/tmp --extra_package dist/yt8m_keras-0.1.0-py3-none-any.whl ...]

is `yt8m-keras predict` with the same flags plus `--beam` and Beam's. The command builds the
competition's plan (`yt8m_keras.inference.Plan`: the shards, a scorer, the submission) from
the first model's recipe, as without `--beam`, and hands it to `run_plan`; the output is the
same file, byte for byte. This module only knows a plan's shape, so it imports nothing of
yt8m_keras (DESIGN.md §1): `python -m beam_jobs.predict` runs the command line that the
installed package declares under the entry-point group `beam_jobs.predict` (setup.cfg), and
the workers unpickle the scorer and the submission from the installed package.

    shard paths -> ReadAllFromTFRecord -> RunInference(SavedModelHandler)  one row per record
                -> CombineGlobally(the Submission)   partial results merged across workers
                                                     (YouTube-8M: bounded top-K per class)
                -> write                             one file, temporary name then rename

`SavedModelHandler` is a small `ModelHandler` over the plan's scorer, which calls
`tf.saved_model.load(...).signatures`: Beam's stock TensorFlow handler imports
tensorflow_hub and cannot load a `tf.saved_model.save` directory written under Keras 3.
The models are loaded once per worker (`load_model`); batches hold the plan's batch size of
serialized records, and the scorer calls every signature with one fixed shape, so a row
never depends on how Beam batched it. No Keras is imported on the workers.

Counters (namespace `predict`): records, rows.
"""

import logging
import sys
from importlib.metadata import entry_points
from typing import Any, Callable, Dict, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.tfrecordio import ReadAllFromTFRecord
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, RunInference

from beam_jobs import common

NAMESPACE = "predict"
# Packages that build plans declare their command line here (name -> `f(argv) -> exit status`).
ENTRY_POINTS = "beam_jobs.predict"


class SavedModelHandler(ModelHandler):
    """RunInference's handler for our exports: a competition's scorer over SavedModel signatures.

    Args:
        scorer: a picklable factory (`Plan.scorer`) that loads the SavedModels and returns
            `score(records: List[bytes]) -> List[row]`, one row per record.
        batch_size: records per batch (every batch but a bundle's last has exactly this many).

    Example:

    >>> rows = records | RunInference(SavedModelHandler(plan.scorer, plan.batch_size))
    """

    def __init__(self, scorer: Callable[[], Callable[[List[bytes]], List[Any]]], batch_size: int):
        self._scorer = scorer
        self._batch_size = batch_size

    def load_model(self) -> Callable[[List[bytes]], List[Any]]:
        return self._scorer()

    def run_inference(self, batch: Sequence[bytes], model: Callable, inference_args: Optional[Dict] = None):
        rows = model(list(batch))
        if len(rows) != len(batch):
            raise RuntimeError(f"the scorer returned {len(rows)} rows for {len(batch)} records")
        return rows

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(record) for record in batch)

    def batch_elements_kwargs(self) -> Dict[str, int]:
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


class SubmissionCombineFn(beam.CombineFn):
    """A `yt8m_keras.inference.Submission` as a CombineFn: rows -> one accumulator per job."""

    def __init__(self, submission):
        self._submission = submission

    def create_accumulator(self):
        return self._submission.create()

    def add_input(self, accumulator, row):
        return self._submission.add(accumulator, row)

    def merge_accumulators(self, accumulators):
        return self._submission.merge(accumulators)

    def extract_output(self, accumulator):
        return accumulator


class WriteSubmission(beam.DoFn):
    """Writes the merged accumulator as the submission file (temporary name, then rename)."""

    def __init__(self, submission, output: str):
        self._submission, self._output = submission, output

    def process(self, accumulator):
        counts = self._submission.write(accumulator, self._output)
        yield counts["text"]


class BatchPredict(beam.PTransform):
    """A plan's whole batch inference: its shards in, the submission file written; yields its summary line.

    Args:
        plan: a `yt8m_keras.inference.Plan` (what `competition.plan(...)` returns).
        output: the submission file (a local path or gs://).
    """

    def __init__(self, plan, output: str):
        super().__init__()
        self._plan, self._output = plan, output

    def expand(self, pbegin):
        plan = self._plan
        compression = CompressionTypes.GZIP if plan.files.compression == "GZIP" else CompressionTypes.UNCOMPRESSED
        records = (pbegin
                   | "Shards" >> beam.Create(plan.files.paths, reshuffle=False)
                   | "Read" >> ReadAllFromTFRecord(compression_type=compression)
                   | "CountRecords" >> beam.Map(common.CountAs(NAMESPACE, "records")))
        rows = (records
                | "Score" >> RunInference(SavedModelHandler(plan.scorer, plan.batch_size))
                | "CountRows" >> beam.Map(common.CountAs(NAMESPACE, "rows")))
        return (rows
                | "Merge" >> beam.CombineGlobally(SubmissionCombineFn(plan.submission))
                | "Write" >> beam.ParDo(WriteSubmission(plan.submission, self._output)))


def run_plan(plan, output: str, pipeline_args: Sequence[str]) -> Dict[str, int]:
    """Runs `plan`'s batch inference on Beam, writing `output`; returns {"records", "rows"}.

    Args:
        plan: a `yt8m_keras.inference.Plan`.
        output: the submission file (a local path or gs://).
        pipeline_args: Beam pipeline flags (the local FnApiRunner unless --runner says otherwise).

    Example:

    >>> run_plan(plan, "submission.csv", ["--direct_num_workers=2"])["rows"]
    """
    common.check_pipeline_args(pipeline_args)
    pipeline = beam.Pipeline(options=common.pipeline_options(pipeline_args))
    _ = pipeline | "Predict" >> BatchPredict(plan, output)
    # The runner raises a worker's failure with its traceback; Beam's own log of it would
    # print the traceback a second time before a data error's one `error:` line.
    dofn_log = logging.getLogger("apache_beam.runners.common")
    level = dofn_log.level
    dofn_log.setLevel(logging.CRITICAL)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    finally:
        dofn_log.setLevel(level)
    return {name: _counter(result, name) for name in ("records", "rows")}


def _counter(result, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name(name))["counters"]
    return int(sum(c.committed if c.committed is not None else c.attempted for c in found))


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m beam_jobs.predict`: the installed package's predict command line, on Beam.

    The competitions' plans live in yt8m_keras, which this package never imports; the
    package declares its command line under the `beam_jobs.predict` entry points.
    """
    commands = sorted(entry_points(group=ENTRY_POINTS), key=lambda command: command.name)
    if not commands:
        print(f"error: no installed package declares a `{ENTRY_POINTS}` entry point "
              "(install yt8m_keras, which builds the plans)", file=sys.stderr)
        return 2
    return commands[0].load()(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
