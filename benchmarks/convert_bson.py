"""Beam BSON conversion against a plain single-process loop, in one run.

    python benchmarks/convert_bson.py [--megabytes 300] [--workdir /tmp/yt8m_bench_bson]

Generates a Cdiscount-format train.bson of about --megabytes (real JPEGs, drawn
from a pool so generation is quick), converts it with the Beam job on the local
runner, converts it again with a plain loop that writes the same shards with the
same shared functions (no Beam), checks the two outputs are byte-identical, and
prints products/s, MB/s and the ratio Beam/loop. Both validate alike: every
picture decoded once (as training decodes it), duplicate _ids dropped.

Also printed: the offset index walk alone (its share of both conversions), and the
cost of decoding one picture eagerly against a tf.function over a product's
pictures, the choice `cdiscount_products.jpeg_problem` makes.
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
from beam_jobs.bson_index import build_index, read_documents
from beam_jobs.cdiscount_products import decode_product, split_rank, validation_count
from tfrecords import cdiscount_product
from tfrecords.manifest import shard_name
from yt8m_keras.competitions.cdiscount import sample


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
    index, gaps = build_index(path)
    chunks = job.plan_chunks([path], [index], num_shards, [gaps])
    ranks, seen, skip = {}, set(), set()
    for chunk in chunks:  # pass 1: validation (pictures decoded), first occurrence of each _id, categories
        for offset, raw in read_documents(path, chunk.start, chunk.end, chunk.gaps):
            product = decode_product(raw)
            # Documents come in file order here, so the first one seen is the one the job keeps.
            if isinstance(product, str) or product.product_id in seen:
                skip.add(offset)
                continue
            seen.add(product.product_id)
            if product.category_id is not None:
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
        for offset, raw in read_documents(path, chunk.start, chunk.end, chunk.gaps):
            if offset in skip:
                continue
            product = decode_product(raw, check_pictures=False)
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


def picture_decoding(path: str, pictures: int = 2000):
    """Microseconds per picture: one eager decode each, and one tf.function call per product."""
    products = []
    for _, raw in read_documents(path, 0, min(os.path.getsize(path), 64 << 20)):
        products.append([img["picture"] for img in bson.decode(bytes(raw))["imgs"]])
        if sum(map(len, products)) >= pictures:
            break
    n = sum(map(len, products))

    @tf.function
    def decode_all(jpegs):
        return [tf.shape(tf.io.decode_jpeg(j, channels=3)) for j in jpegs]

    for images in products:  # trace once per picture count, outside the timing
        decode_all([tf.constant(j) for j in images])
    start = time.perf_counter()
    for images in products:
        for jpeg in images:
            tf.io.decode_jpeg(jpeg, channels=3)
    eager = time.perf_counter() - start
    start = time.perf_counter()
    for images in products:
        decode_all([tf.constant(j) for j in images])
    graph = time.perf_counter() - start
    return eager / n * 1e6, graph / n * 1e6


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
    _, gaps = build_index(path)
    index_s = time.perf_counter() - start
    assert not gaps, "the generated file has damaged stretches"
    eager_us, graph_us = picture_decoding(path)

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
    print(f"offset index: {index_s:6.2f} s  {megabytes / index_s:8.0f} MB/s  ({index_s / loop_s:.0%} of the loop)")
    print(f"picture decoding: eager {eager_us:.0f} us/picture, tf.function per product {graph_us:.0f} us/picture")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
