"""The frame-level video pipeline against parsing alone, and the two segment inference forms, in one run.

    python benchmarks/video_input.py [--records 2000] [--frames 300] [--passes 2] [--rounds 3]
                                     [--workdir /tmp/yt8m_bench_video]

Generates official-format `yt8m_frame` records (240-300 frames, random features,
written with `yt8m_frame.encode`, cached in --workdir with a manifest), reads them
once to warm the page cache, then measures with `tfds.benchmark` (first batch
excluded):

- parse only: `tf.io.parse_single_sequence_example` (the bytes of every frame as
  strings; no decode, no dequantize, no padding), a summary of each batched;
- parse + decode: the same parse, then the frames decoded to uint8 (one tensor per
  video, neither padded nor batched; a summary of each batched): the least any
  pipeline that hands the model uint8 frames must do;
- floor: parse + decode + batch, every video cut to 80 % of --frames (all have as many),
  so nothing is padded and no mask or label is made: the decode copy and the copy into the
  batch are all that is left beyond parsing, the bound of a pipeline built of these ops;
- video pipeline: `video_dataset` (parse + decode to uint8 + pad + mask), batched: the
  training stream ends at uint8, the model dequantizes on the accelerator (its
  `Dequantize` layer), so the host's work per video should stay close to parsing alone;

and prints their rates, their host CPU time per video (user + system time of this
process over the pass, all threads: the issue's measure, and less disturbed than wall
time when other work shares the machine) and the ratios (all read unshuffled, so only
the per-record work differs). Then segments/s and host bytes per segment of `segment_inference_dataset`
(a copy of the whole video per segment) against `video_segment_dataset` (segments
grouped by video, windows cut later by `flatten_segments` on the accelerator), and,
for reference, the latter with `flatten_segments` run on the host.
"""

import argparse
import json
import os
import shutil
import time

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfrecords import yt8m_frame as kind
from tfrecords.manifest import MANIFEST, compression_type, read_manifest, shard_name, shard_paths, write_manifest
from yt8m_keras.data.shards import records
from yt8m_keras.competitions.youtube8m.input import (flatten_segments, segment_inference_dataset, video_dataset,
                                  video_segment_dataset)

SPLIT = "test"
NUM_CLASSES = 3862


def make_dataset(out: str, num_records: int, frames: int, shards: int, seed: int = 0) -> None:
    """Writes the records and manifest, unless --workdir already holds the same ones."""
    settings = {"records": num_records, "frames": frames, "shards": shards, "seed": seed}
    if os.path.exists(os.path.join(out, MANIFEST)) and read_manifest(out).get("benchmark") == settings:
        return
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    rng = np.random.default_rng(seed)
    # Frames drawn from a pool: encoding, not random number generation, is what takes time.
    pool_rgb = rng.integers(0, 256, [4 * frames, kind.RGB_SIZE], dtype=np.uint8)
    pool_audio = rng.integers(0, 256, [4 * frames, kind.AUDIO_SIZE], dtype=np.uint8)
    names = [shard_name(SPLIT, i, shards) for i in range(shards)]
    writers = [tf.io.TFRecordWriter(os.path.join(out, name)) for name in names]
    started = time.perf_counter()
    for i in range(num_records):
        length = int(rng.integers(int(frames * 0.8), frames + 1))
        first = int(rng.integers(0, len(pool_rgb) - length))
        labels = rng.choice(NUM_CLASSES, size=int(rng.integers(1, 6)), replace=False)
        writers[i % shards].write(kind.encode(f"v{i:06d}", labels, pool_rgb[first:first + length],
                                              pool_audio[first:first + length]))
    for writer in writers:
        writer.close()
    write_manifest(out, {"kind": kind.KIND, "schema_version": kind.SCHEMA_VERSION, "num_classes": NUM_CLASSES,
                         "input_records": num_records, "rejected": 0, "benchmark": settings,
                         "splits": {SPLIT: {"records": num_records, "shards": names}}})
    print(f"generated {num_records} records in {time.perf_counter() - started:.0f} s")


def _baseline(out: str, batch_size: int, passes: int, per_video) -> tf.data.Dataset:
    """The records read `passes` times, unshuffled, `per_video(context, sequence)` mapped
    over each parsed record, batched: the skeleton of the three baselines."""
    manifest = read_manifest(out, kind.KIND)

    def parse(serialized):
        return per_video(*tf.io.parse_single_sequence_example(serialized, kind.CONTEXT_FEATURES,
                                                              kind.SEQUENCE_FEATURES))

    ds = records(shard_paths(out, manifest, SPLIT), compression_type(manifest)).repeat(passes)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def parse_only(out: str, batch_size: int, passes: int = 1) -> tf.data.Dataset:
    """Records parsed to tensors (every frame's bytes as a string) and nothing more.

    Only a summary of each parse is batched: batching the 2 x 300 strings themselves
    (ragged) costs more than the whole video pipeline's batching and would make the
    baseline slower than the pipeline it is the floor of.
    """
    def summary(context, sequence):
        return {"id": context[kind.ID], "labels": tf.size(context[kind.LABELS]),
                "frames": tf.size(sequence[kind.RGB]) + tf.size(sequence[kind.AUDIO])}

    return _baseline(out, batch_size, passes, summary)


def parse_and_decode(out: str, batch_size: int, passes: int = 1) -> tf.data.Dataset:
    """The same parse, then every frame decoded to uint8, and nothing more.

    The frames stay one tensor per video (not padded, not batched); a summary of each is
    batched. The summary reads one byte of every frame, so the decode cannot be pruned.
    """
    def decoded_summary(context, sequence):
        rgb, audio = (tf.io.decode_raw(sequence[key], tf.uint8) for key in (kind.RGB, kind.AUDIO))
        return {"id": context[kind.ID], "labels": tf.size(context[kind.LABELS]),
                "frames": tf.reduce_sum(tf.cast(rgb[:, 0], tf.int32) + tf.cast(audio[:, 0], tf.int32))}

    return _baseline(out, batch_size, passes, decoded_summary)


def decode_and_batch(out: str, batch_size: int, frames: int, passes: int = 1) -> tf.data.Dataset:
    """The floor of any pipeline that hands the model batches of uint8 frames: parse, decode, batch.

    Every video is cut to `frames` frames, which all the generated videos have, so nothing
    is padded and no mask or label is made: only the decode copy and the copy into the
    batch are left beyond parsing. Its ratio to parse-only bounds what stock TensorFlow ops
    can reach.
    """
    def first_frames(_, sequence):
        return {key: tf.reshape(tf.io.decode_raw(sequence[key][:frames], tf.uint8), [frames, size])
                for key, size in ((kind.RGB, kind.RGB_SIZE), (kind.AUDIO, kind.AUDIO_SIZE))}

    return _baseline(out, batch_size, passes, first_frames)


def rate(ds: tf.data.Dataset, batch_size: int) -> tuple:
    """(examples/s of a full pass, first batch (pipeline start) excluded; host CPU
    microseconds per example over the whole pass, all threads of this process)."""
    started = os.times()
    stats = tfds.benchmark(ds, batch_size=batch_size).stats
    ended = os.times()
    cpu = (ended.user + ended.system) - (started.user + started.system)
    examples = float(stats["num_examples"]["first"] + stats["num_examples"]["lasts"])
    return float(stats["avg"]["lasts"]), 1e6 * cpu / examples


def segment_rate(ds: tf.data.Dataset, count, seconds: float) -> tuple:
    """(segments/s, host bytes per segment) over about `seconds`, the first element excluded."""
    iterator = iter(ds)
    next(iterator)
    segments, nbytes, started = 0, 0, time.perf_counter()
    for element in iterator:
        segments += count(element)
        nbytes += sum(int(np.prod(t.shape)) * t.dtype.size for t in element.values())
        if time.perf_counter() - started > seconds:
            break
    return segments / (time.perf_counter() - started), nbytes / max(segments, 1)


def real_segments(videos) -> int:
    return int(tf.reduce_sum(tf.cast(videos["start_time"] >= 0, tf.int32)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=kind.MAX_FRAMES)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating passes; the median is reported")
    parser.add_argument("--passes", type=int, default=2,
                        help="times each parse/pipeline measurement reads the records (longer is steadier)")
    parser.add_argument("--segment-seconds", type=float, default=10.0, help="time per segment stream and round")
    parser.add_argument("--workdir", default="/tmp/yt8m_bench_video")
    parser.add_argument("--skip-segments", action="store_true", help="only the parse/pipeline ratio")
    args = parser.parse_args(argv)

    make_dataset(args.workdir, args.records, args.frames, args.shards)
    for path in sorted(tf.io.gfile.glob(os.path.join(args.workdir, f"{SPLIT}-*"))):
        with open(path, "rb") as f:  # into the page cache, so no run pays for the first read
            while f.read(64 << 20):
                pass

    b, frames = args.batch_size, args.frames
    # `passes` reads of the records, in the same order as the baselines' (repeat, unshuffled).
    video = lambda: video_dataset(args.workdir, SPLIT, batch_size=b, max_frames=frames, shuffle=False,
                                  repeat=True, drop_remainder=True).take(args.passes * args.records // b)
    by_video = lambda: video_segment_dataset(args.workdir, SPLIT, videos_per_batch=8, max_frames=frames)
    # name -> a function measuring one pass: (rate, host CPU us per video or host bytes per segment)
    streams = {
        "parse_only": lambda: rate(parse_only(args.workdir, b, args.passes), b),
        "parse_decode": lambda: rate(parse_and_decode(args.workdir, b, args.passes), b),
        "decode_batch_floor": lambda: rate(decode_and_batch(args.workdir, b, int(frames * 0.8), args.passes), b),
        "video_pipeline": lambda: rate(video(), b),
    }
    if not args.skip_segments:
        streams.update({
            "segments_flat": lambda: segment_rate(
                segment_inference_dataset(args.workdir, SPLIT, batch_size=256, max_frames=frames),
                lambda element: int(element["id"].shape[0]), args.segment_seconds),
            "segments_by_video": lambda: segment_rate(by_video(), real_segments, args.segment_seconds),
            "segments_by_video_flattened_on_host": lambda: segment_rate(
                by_video().map(flatten_segments), lambda element: int(element["id"].shape[0]),
                args.segment_seconds),
        })
    # Alternating rounds and medians: other work on a shared machine slows whichever
    # stream runs at the time; the median of rounds spreads that over all of them.
    results = {name: [] for name in streams}
    for _ in range(args.rounds):
        for name, measure in streams.items():
            results[name].append(measure())
    median = {name: float(np.median([r for r, _ in runs])) for name, runs in results.items()}
    second = {name: float(np.median([x for _, x in runs])) for name, runs in results.items()}
    cpu_us = {name: second[name] for name in ("parse_only", "parse_decode", "decode_batch_floor", "video_pipeline")}
    host_bytes = {name: value for name, value in second.items() if name.startswith("segments_")}

    figures = {"cpus": os.cpu_count(), "records": args.records, "passes": args.passes, "frames": frames,
               "batch_size": b, "rounds": args.rounds,
               **{f"{name}_per_s": round(value, 1) for name, value in median.items()},
               **{f"{name}_cpu_us_per_video": round(value, 1) for name, value in cpu_us.items()},
               "ratio_pipeline_over_parse": round(median["video_pipeline"] / median["parse_only"], 3),
               "cpu_ratio_parse_over_pipeline": round(cpu_us["parse_only"] / cpu_us["video_pipeline"], 3)}
    print(f"\nmedians of {args.rounds} rounds ({args.passes} passes over {args.records} videos each), "
          f"{os.cpu_count()} CPUs          examples/s   host CPU us/video")
    print(f"parse only:      {median['parse_only']:9.1f} {cpu_us['parse_only']:9.1f}   "
          f"(parse_single_sequence_example only)")
    print(f"parse + decode:  {median['parse_decode']:9.1f} {cpu_us['parse_decode']:9.1f}   "
          f"(and the frames decoded to uint8: not padded, not batched)")
    print(f"floor:           {median['decode_batch_floor']:9.1f} {cpu_us['decode_batch_floor']:9.1f}   "
          f"(parse + decode + batch of {int(frames * 0.8)} frames: no pad, mask or labels)")
    print(f"video pipeline:  {median['video_pipeline']:9.1f} {cpu_us['video_pipeline']:9.1f}   "
          f"(video_dataset: parse + decode + pad (uint8), batches of {b})")
    # Each round's passes ran back to back: their ratios are the least disturbed figures.
    per_round = [v[0] / p[0] for p, v in zip(results["parse_only"], results["video_pipeline"])]
    cpu_per_round = [p[1] / v[1] for p, v in zip(results["parse_only"], results["video_pipeline"])]
    figures["ratio_pipeline_over_parse_per_round"] = [round(r, 3) for r in per_round]
    figures["cpu_ratio_parse_over_pipeline_per_round"] = [round(r, 3) for r in cpu_per_round]
    print(f"ratio pipeline/parse: {figures['ratio_pipeline_over_parse']:.3f} "
          f"(per round: {', '.join(f'{r:.3f}' for r in per_round)})")
    print(f"host CPU ratio parse/pipeline: {figures['cpu_ratio_parse_over_pipeline']:.3f} "
          f"(per round: {', '.join(f'{r:.3f}' for r in cpu_per_round)})")
    figures["cpu_ratio_parse_over_floor"] = round(cpu_us["parse_only"] / cpu_us["decode_batch_floor"], 3)
    print(f"host CPU ratio parse/floor: {figures['cpu_ratio_parse_over_floor']:.3f} (the most a pipeline "
          f"that batches uint8 frames reaches with these ops)")
    print(f"pipeline's host CPU beyond parsing, per video: decode {cpu_us['parse_decode'] - cpu_us['parse_only']:.1f} us, "
          f"pad + mask + labels + batch {cpu_us['video_pipeline'] - cpu_us['parse_decode']:.1f} us")
    if not args.skip_segments:
        figures.update({f"host_mb_per_segment_{name[len('segments_'):]}": round(value / 2**20, 3)
                        for name, value in host_bytes.items()})
        figures["ratio_by_video_over_flat"] = round(median["segments_by_video"] / median["segments_flat"], 2)
        print(f"\nsegment_inference_dataset (256 segments/batch): {median['segments_flat']:9.1f} segments/s, "
              f"{host_bytes['segments_flat'] / 2**20:.3f} MB/segment on the host")
        print(f"video_segment_dataset (8 videos/batch):         {median['segments_by_video']:9.1f} segments/s, "
              f"{host_bytes['segments_by_video'] / 2**20:.3f} MB/segment on the host")
        print(f"  + flatten_segments on the host:              "
              f"{median['segments_by_video_flattened_on_host']:9.1f} segments/s")
        print(f"ratio by-video/flat: {figures['ratio_by_video_over_flat']:.2f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
