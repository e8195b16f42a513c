"""Batch inference over exported SavedModels: one plan per competition, two ways to run it.

`yt8m-keras predict` runs a plan as a plain loop in one process (`run_local`); with
`--beam`, the same plan runs with Beam's `RunInference` on many workers (`run_beam`, which
hands it to `beam_jobs.predict`). Both write the same bytes, because they share every step
that computes:

    Plan.files            the split's shards (paths, compression), read by both
    Plan.scorer()         loads the SavedModels (once per worker) and scores a batch of
                          serialized records -> one row per record (plain Python/NumPy)
    Plan.submission       what rows become: create(), add(acc, row), merge(accs), write(acc, path)
                          (a Beam CombineFn's shape, so the Beam job merges partial results of
                          its workers, YouTube-8M's bounded top-K among them)

Why the two agree bit for bit: a row depends only on its own record. Every call of a
signature gets one fixed number of rows, the scorer's own (`fixed_batches` pads the last
chunk by repeating its final row), so the kernels see one shape whatever batches Beam or the
loop formed, and no row's numbers depend on its neighbours. Submissions sort by id before
they write.

TensorFlow (imported when used) and NumPy only, never Keras: Beam workers import this.

Example:

>>> plan = competitions.get("cdiscount").plan(["export/cdiscount/1"], "data", args)
>>> run_local(plan, "submission.csv")["text"]
'wrote submission.csv: 1000 products'
"""

import contextlib
import os
from typing import Any, Callable, Dict, Iterable, List, NamedTuple

import numpy as np

from tfrecords import UserError


class Files(NamedTuple):
    paths: List[str]
    compression: str  # tf.data's compression_type ("" or "GZIP")


class Submission:
    """Rows -> the submission file: collects every row, sorts, writes (override for other merges).

    Subclasses implement `write_rows(rows, path) -> counts`: a dict with the counts and
    `text`, one line saying what was written; YouTube-8M's segment
    submission overrides create/add/merge to keep a bounded top-K instead of every row.
    The object is pickled into Beam's CombineFn: keep it light (no models, no tensors).
    """

    def create(self) -> Any:
        return []

    def add(self, accumulator: Any, row: Any) -> Any:
        accumulator.append(row)
        return accumulator

    def merge(self, accumulators: Iterable[Any]) -> Any:
        merged: List[Any] = []
        for accumulator in accumulators:
            merged.extend(accumulator)
        return merged

    def write(self, accumulator: Any, path: str) -> Dict:
        return self.write_rows(accumulator, path)

    def write_rows(self, rows: List[Any], path: str) -> Dict:
        raise NotImplementedError


class Plan(NamedTuple):
    """What a competition's batch inference needs: inputs, a scorer factory and a submission.

    Attributes:
        files: the shards to read.
        scorer: a picklable callable returning `score(records: List[bytes]) -> List[row]`
            (models loaded when called: once per Beam worker).
        submission: a `Submission`.
        batch_size: records per `score` call (the loop's batches; Beam's too).
        unit: what a row is, for progress ("products", "videos").
    """

    files: Files
    scorer: Callable[[], Callable[[List[bytes]], List[Any]]]
    submission: Submission
    batch_size: int
    unit: str


def fixed_batches(fn: Callable, inputs, size: int):
    """`fn` over `inputs` in calls of exactly `size` rows; returns the outputs of the real rows.

    `inputs` is an array or a dict of arrays sharing their first dimension; `fn` returns the
    same (NumPy-convertible). The last chunk is padded by repeating its final row, so every
    call has one shape and a row's output does not depend on which rows came with it.
    """
    def rows(value, start, stop):
        chunk = value[start:stop]
        missing = size - len(chunk)
        if missing:
            chunk = np.concatenate([chunk, np.repeat(np.asarray(chunk[-1:]), missing, axis=0)])
        return chunk

    first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
    total = len(first)
    outputs = []
    for start in range(0, total, size):
        real = min(size, total - start)
        if isinstance(inputs, dict):
            out = fn({key: rows(value, start, start + size) for key, value in inputs.items()})
        else:
            out = fn(rows(inputs, start, start + size))
        if isinstance(out, dict):
            outputs.append({key: np.asarray(value)[:real] for key, value in out.items()})
        else:
            outputs.append(np.asarray(out)[:real])
    if not outputs:
        return outputs
    if isinstance(outputs[0], dict):
        return {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}
    return np.concatenate(outputs)


def require_saved_model(path: str) -> str:
    """`path`, or one UserError if it holds no exported model (checked without loading it)."""
    import tensorflow as tf

    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        raise UserError(f"no SavedModel in {path} (expected BASE/NAME/VERSION from `yt8m-keras export`)")
    return path


def load_saved_model(path: str):
    """`tf.saved_model.load` of an exported model, or one UserError if `path` is not one."""
    import tensorflow as tf

    return tf.saved_model.load(require_saved_model(path))


def read_records(files: Files, batch_size: int) -> Iterable[List[bytes]]:
    """The shards' serialized records in shard order, `batch_size` at a time."""
    from yt8m_keras.data.shards import records

    for batch in records(files.paths, files.compression, cycle_length=1).batch(batch_size):
        yield list(batch.numpy())


def run_local(plan: Plan, output: str, progress: bool = True) -> Dict:
    """Runs `plan` in this process (a plain loop); returns the submission's counts and `text`."""
    from yt8m_keras.progress import Progress

    score = plan.scorer()
    accumulator = plan.submission.create()
    bar = Progress(plan.unit) if progress else None
    for batch in read_records(plan.files, plan.batch_size):
        for row in score(batch):
            accumulator = plan.submission.add(accumulator, row)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return plan.submission.write(accumulator, output)


def run_beam(plan: Plan, output: str, pipeline_args: List[str]) -> Dict:
    """Runs `plan` on Beam (`beam_jobs.predict`); returns {"records", "rows", "text"}."""
    from beam_jobs.predict import run_plan
    from yt8m_keras.data.shards import unreadable_shard

    try:
        counts = run_plan(plan, output, pipeline_args)
    except UserError:
        raise
    except Exception:  # a worker's failure arrives as the runner's exception, naming no file
        damaged = unreadable_shard(plan.files.paths, plan.files.compression)
        if damaged:
            raise UserError(damaged) from None
        raise
    return {**counts, "text": f"wrote {output}: {counts['rows']} rows from {counts['records']} records"}


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w"):
    """An open file that becomes `path` only when the block completes (local paths and gs://).

    It is written under a temporary name and renamed at the end; on an exception the
    temporary file is removed and `path` is left as it was.
    """
    import tensorflow as tf

    tmp = path + ".tmp"
    try:
        with tf.io.gfile.GFile(tmp, mode) as f:
            yield f
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes a submission atomically (`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(text)

