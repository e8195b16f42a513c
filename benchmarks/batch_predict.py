"""Batch inference: the Beam job (`yt8m-keras predict --beam`) against a plain loop over the same SavedModel and data.

    python benchmarks/batch_predict.py [--competitions cdiscount youtube8m] [--copies 12] [--repeats 2] \
        [--workdir /tmp/batch_predict_bench] [--beam-args "--runner=FnApiRunner"]

For each competition, the quickstart's exported model and converted data (made once with
`yt8m-keras quickstart`, cached in --workdir), and a larger test split: the quickstart's test
records --copies times over, each copy with its own ids (the record's id field rewritten in
the proto), so submissions and YouTube-8M's top-K see distinct products and videos. Then, in
one run, alternating --repeats times, the best time of each:

- plain loop: `yt8m_keras.inference.run_local` (what `yt8m-keras predict` runs), without
  the progress bar;
- Beam job: `yt8m_keras.inference.run_beam` (what `predict --beam` runs) with the same plan (FnApiRunner on this machine unless
  --beam-args says otherwise): read shards, RunInference over the SavedModel, merge, write.

Both include loading the model and writing the file; the job also its pipeline start. Prints
records/s of each and the ratio job/loop (goal >= 0.8), and checks the two files are equal.
Cdiscount scores its products' images with the `pixels` signature (with --tta 1, so an
augmented copy of each image is scored as well); YouTube-8M scores every 5-second segment of
each test video with the segment model, keeping the best K per class.
"""

import argparse
import glob
import json
import os
import shlex
import shutil
import time
from typing import Dict, List, Tuple

import tensorflow as tf

from tfrecords.manifest import MANIFEST, shard_name

# competition -> (how to find its data and model in the quickstart workdir, predict flags, id field)
SETUPS = {
    "cdiscount": ("data", "export/*/1", ["--tta", "1"], ("features", "product_id")),
    "youtube8m": ("yt8m_data", "yt8m_export/yt8m_segment/1", ["--k", "1000"], ("context", "id")),
}


def quickstart(competition: str, workdir: str) -> Tuple[str, str]:
    """(data dir, export) of the competition's quickstart, run once into `workdir`."""
    from yt8m_keras import competitions

    data_name, export_pattern, _, _ = SETUPS[competition]
    exports = glob.glob(os.path.join(workdir, export_pattern))
    if not exports:
        competitions.get(competition).quickstart(workdir)
        exports = glob.glob(os.path.join(workdir, export_pattern))
    return os.path.join(workdir, data_name), sorted(exports)[-1]


def _with_id(record: bytes, where: Tuple[str, str], copy: int) -> bytes:
    """The record with its id made unique per copy (products: + copy * 10^9; videos: suffix)."""
    proto = tf.train.SequenceExample() if where[0] == "context" else tf.train.Example()
    proto.ParseFromString(record)
    feature = (proto.context if where[0] == "context" else proto.features).feature[where[1]]
    if feature.HasField("int64_list"):
        feature.int64_list.value[0] += copy * 10**9
    else:
        feature.bytes_list.value[0] += b"c%d" % copy if copy else b""
    return proto.SerializeToString()


def larger_test_split(data: str, directory: str, copies: int, where: Tuple[str, str]) -> str:
    """A copy of `data` whose test split is its test records `copies` times, in 4 shards (cached)."""
    if os.path.exists(os.path.join(directory, MANIFEST)):
        return directory
    tmp = directory + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(data, tmp)
    with open(os.path.join(data, MANIFEST)) as f:
        manifest = json.load(f)
    records = [r.numpy() for r in tf.data.TFRecordDataset(
        [os.path.join(data, name) for name in manifest["splits"]["test"]["shards"]])]
    for name in manifest["splits"]["test"]["shards"]:
        os.remove(os.path.join(tmp, name))
    everything = [_with_id(record, where, copy) for copy in range(copies) for record in records]
    names = [shard_name("test", i, 4) for i in range(4)]
    for i, name in enumerate(names):
        with tf.io.TFRecordWriter(os.path.join(tmp, name)) as writer:
            for record in everything[i::4]:
                writer.write(record)
    manifest["splits"]["test"] = {"records": len(everything), "shards": names}
    with open(os.path.join(tmp, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    os.rename(tmp, directory)
    return directory


def timed(run, flags: List[str], output: str, *extra) -> float:
    """Seconds `run(plan, output, *extra)` takes on the plan of `yt8m-keras predict FLAGS --output OUTPUT`."""
    from yt8m_keras.cli import build_parser, predict_plan

    args = build_parser().parse_args(["predict", *flags, "--output", output])
    started = time.perf_counter()
    run(predict_plan(args), output, *extra)
    return time.perf_counter() - started


def plain_loop(flags: List[str], output: str) -> float:
    from yt8m_keras.inference import run_local

    return timed(run_local, flags, output, False)  # no progress bar


def beam_job(flags: List[str], output: str, beam_args: List[str]) -> float:
    from yt8m_keras.inference import run_beam

    return timed(run_beam, flags, output, beam_args)


def measure(competition: str, args) -> Dict:
    workdir = os.path.join(args.workdir, competition)
    data, model = quickstart(competition, workdir)
    _, _, extra, where = SETUPS[competition]
    data = larger_test_split(data, os.path.join(workdir, f"bench_data_x{args.copies}"), args.copies, where)
    with open(os.path.join(data, MANIFEST)) as f:
        records = json.load(f)["splits"]["test"]["records"]
    flags = ["--model", model, "--data", data, *extra]
    loop_output, job_output = os.path.join(workdir, "loop_submission"), os.path.join(workdir, "job_submission")
    plain_loop(flags, loop_output)  # warm-up: page cache, TensorFlow's first traces
    loop_times, job_times = [], []
    for _ in range(args.repeats):
        job_times.append(beam_job(flags, job_output, shlex.split(args.beam_args)))
        loop_times.append(plain_loop(flags, loop_output))
    with open(loop_output, "rb") as a, open(job_output, "rb") as b:
        same = a.read() == b.read()
    return {"records": records, "loop": min(loop_times), "job": min(job_times), "same": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--competitions", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--copies", type=int, default=12, help="copies of the quickstart's test split")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/batch_predict_bench")
    parser.add_argument("--beam-args", default="--runner=FnApiRunner", help="Beam pipeline flags for the job")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    for competition in args.competitions:
        r = measure(competition, args)
        print(f"{competition}: {r['records']} test records; plain loop {r['records'] / r['loop']:.1f}/s "
              f"({r['loop']:.1f} s), Beam job {r['records'] / r['job']:.1f}/s ({r['job']:.1f} s); "
              f"ratio job/loop {r['loop'] / r['job']:.2f}; same file: {r['same']}", flush=True)


if __name__ == "__main__":
    main()
