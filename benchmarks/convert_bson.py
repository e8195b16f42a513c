"""Beam BSON conversion against a plain single-process loop, in one run.

    python benchmarks/convert_bson.py [--megabytes 300] [--workdir /tmp/yt8m_bench_bson]

Generates a Cdiscount-format train.bson of about --megabytes (real JPEGs, drawn
from a pool so generation is quick), converts it with the Beam job on the local
runner, converts it again with a plain loop that writes the same shards with the
same shared functions (no Beam), checks the two outputs are byte-identical, and
prints products/s, MB/s and the ratio Beam/loop.
"""

import argparse
import hashlib
import os
import shutil
import sys
import time

import bson
import numpy as np
import tensorflow as tf

from beam_jobs import bson_to_tfrecords as job
from beam_jobs.bson_index import build_index, iter_documents, read_range
from beam_jobs.cdiscount_products import decode_product, split_rank, validation_count
from tfrecords import cdiscount_product
from tfrecords.manifest import shard_name
from yt8m_keras.sample import cdiscount as sample


def make_bson(path: str, megabytes: int, classes: int = 50, pool_per_class: int = 8, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    pool = [[sample.encode_jpeg(sample.render_image(c, rng)) for _ in range(pool_per_class)] for c in range(classes)]
    size, n = 0, 0
    with open(path + ".tmp", "wb") as f:
        while size < megabytes << 20:
            c = int(rng.integers(classes))
            count = int(rng.choice(4, p=sample.IMAGES_PER_PRODUCT_P)) + 1
            pictures = [pool[c][int(i)] for i in rng.integers(pool_per_class, size=count)]
            blob = bson.encode({"_id": n, "category_id": sample.category_id(c),
                                "imgs": [{"picture": p} for p in pictures]})
            f.write(blob)
            size += len(blob)
            n += 1
    os.replace(path + ".tmp", path)
    return n


def plain_loop(path: str, output: str, num_shards: int, seed: int = 0, fraction: float = 0.1) -> int:
    """The same conversion as the Beam job, as one would write it without Beam."""
    os.makedirs(output)
    index, _ = build_index(path)
    chunks = job.plan_chunks([path], [index], num_shards)
    ranks = {}
    for chunk in chunks:  # pass 1: categories (and validation, as the job does)
        for offset, raw in iter_documents(read_range(path, chunk.start, chunk.end), chunk.start):
            product = decode_product(raw)
            if not isinstance(product, str) and product.category_id is not None:
                ranks.setdefault(product.category_id, []).append(split_rank(seed, product.product_id, 0, offset))
    thresholds = {}
    for category, values in ranks.items():
        values.sort()
        k = validation_count(len(values), fraction)
        thresholds[category] = values[k - 1] if k else None
    labels = {c: i for i, c in enumerate(sorted(ranks))}
    written = 0
    for chunk in chunks:  # pass 2: write
        writers = {}
        for offset, raw in iter_documents(read_range(path, chunk.start, chunk.end), chunk.start):
            product = decode_product(raw)
            if isinstance(product, str):
                continue
            threshold = thresholds[product.category_id]
            rank = split_rank(seed, product.product_id, 0, offset)
            split = "val" if threshold is not None and rank <= threshold else "train"
            if split not in writers:
                name = shard_name(split, chunk.chunk_index, len(chunks))
                writers[split] = tf.io.TFRecordWriter(os.path.join(output, name))
            writers[split].write(cdiscount_product.encode(
                product.product_id, product.images, product.category_id, labels[product.category_id]))
            written += 1
        for writer in writers.values():
            writer.close()
    return written


def digests(directory: str):
    return {name: hashlib.sha256(open(os.path.join(directory, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(directory)) if ".tfrecord" in name}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=300)
    parser.add_argument("--workdir", default="/tmp/yt8m_bench_bson")
    parser.add_argument("--num-shards", type=int, default=4)
    parser.add_argument("--beam-args", default="", help="extra Beam flags, e.g. '--direct_num_workers=2'")
    args = parser.parse_args(argv)

    os.makedirs(args.workdir, exist_ok=True)
    path = os.path.join(args.workdir, f"train-{args.megabytes}mb.bson")
    if not os.path.exists(path):
        print(f"generating {path} ...", flush=True)
        make_bson(path, args.megabytes)
    megabytes = os.path.getsize(path) / 2**20

    beam_out, loop_out = os.path.join(args.workdir, "beam"), os.path.join(args.workdir, "loop")
    for d in (beam_out, loop_out):
        shutil.rmtree(d, ignore_errors=True)

    start = time.perf_counter()
    products = plain_loop(path, loop_out, args.num_shards)
    loop_s = time.perf_counter() - start

    start = time.perf_counter()
    manifest = job.run(["--input", path, "--output", beam_out, "--num-shards", str(args.num_shards),
                        *args.beam_args.split()])
    beam_s = time.perf_counter() - start

    assert manifest["input_records"] == products + manifest["rejected"], "Beam and loop disagree on counts"
    same = digests(beam_out) == digests(loop_out)
    print(f"input: {megabytes:.0f} MB, {products} products, {args.num_shards} shards; outputs identical: {same}")
    print(f"plain loop : {loop_s:6.1f} s  {products / loop_s:8.0f} products/s  {megabytes / loop_s:6.1f} MB/s")
    print(f"Beam {manifest.get('runner', '') or 'local'} : {beam_s:6.1f} s  {products / beam_s:8.0f} products/s  "
          f"{megabytes / beam_s:6.1f} MB/s")
    print(f"ratio Beam/loop: {loop_s / beam_s:.2f}  (goal >= 0.5)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
