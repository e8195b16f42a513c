"""Avito image features: the Beam job against a plain loop; an epoch read from the memmap against one file per image.

    python benchmarks/avito_features.py [--images 1000] [--backbone mobilenet_v3_small] [--image-size 96] \
        [--batch-size 64] [--read-batch 64] [--repeats 3] [--workdir /tmp/avito_features_bench] \
        [--beam-args "--runner=FnApiRunner --direct_num_workers=2"]

Writes synthetic `avito_ad` shards (--images random JPEGs of varied sizes, 120..640 px a side,
and one ad in ten without a picture, in a train and a test split) and saves the backbone with
random weights (`yt8m_keras.competitions.avito.cnn.save_backbone`), both cached in --workdir.
Then, in one run:

(a) computing: `beam_jobs.avito_image_features` (FnApiRunner unless --beam-args says otherwise;
    a first run warms the page cache and TensorFlow) against a plain loop over the same
    shards doing the same work: parse, decode once, both preprocessings (the job's own
    `preprocess_fn`), the same SavedModel on batches of --batch-size per variant, features
    kept in float16 arrays in memory (a warm-up batch first). Both times
    include loading the SavedModel; the job's also its pipeline start and writing the memmaps.
    The two alternate, --repeats times each, and the best time of each is printed (the
    machine may be shared): pictures/s of each and the ratio job/loop.
(b) reading one training epoch of the center features: every row, rows shuffled, batches of
    --read-batch, from `center.npy` opened as a memmap against one file per picture (the
    seed's layout; it pickled each image's features, here each is an `.npy` written with
    np.save and read with np.load, no pickle, so only the layout differs; an ad without a
    picture has no file and reads as zeros). One warm-up epoch each first, so both read
    from the page cache: on a cold disk with Avito's 1.9 million pictures the gap is wider.
    Prints rows/s of each and the ratio memmap/files.
"""

import argparse
import os
import shlex
import shutil
import time

import numpy as np
import tensorflow as tf

from tfrecords import avito_ad
from tfrecords.manifest import MANIFEST, read_manifest, shard_name, shard_paths, write_manifest


def _picture(rng: np.random.Generator, height: int, width: int) -> bytes:
    """A smooth random photo-like picture (a coarse colour field plus noise), as JPEG."""
    coarse = rng.uniform(0, 255, (1, 6, 8, 3)).astype(np.float32)
    image = tf.image.resize(coarse, [height, width], method="bicubic")[0]
    image = image + rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    return tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), quality=90).numpy()


def write_data(directory: str, images: int, seed: int = 0) -> str:
    """`images` ads with a picture and images // 10 without, rows shuffled over 3 train shards and 1 test shard."""
    if os.path.exists(os.path.join(directory, MANIFEST)):
        return directory
    tmp = directory + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    rng = np.random.default_rng(seed)
    ads = images + images // 10
    without = set(rng.choice(ads, ads - images, replace=False).tolist())
    order = rng.permutation(ads)
    parts = {"train": np.array_split(order[: ads * 3 // 4], 3), "test": [order[ads * 3 // 4:]]}
    splits = {}
    for split, shards in parts.items():
        names = [shard_name(split, i, len(shards)) for i in range(len(shards))]
        for name, rows in zip(names, shards):
            with tf.io.TFRecordWriter(os.path.join(tmp, name)) as writer:
                for row in rows.tolist():
                    if row in without:
                        writer.write(avito_ad.encode(f"item{row:07d}", "user", row))
                    else:
                        height, width = (int(v) for v in rng.integers(120, 641, 2))
                        writer.write(avito_ad.encode(f"item{row:07d}", "user", row, image=_picture(rng, height, width),
                                                     image_name=f"{row}.jpg", image_status=avito_ad.IMAGE_OK))
        splits[split] = {"records": sum(len(rows) for rows in shards), "shards": names}
    write_manifest(tmp, {"kind": avito_ad.KIND, "schema_version": avito_ad.SCHEMA_VERSION, "input_records": ads,
                         "rejected": 0, "splits": splits})
    os.rename(tmp, directory)
    return directory


def save_model(path: str, backbone: str, image_size: int) -> str:
    from yt8m_keras.competitions.avito.cnn import save_backbone

    if not os.path.exists(path):
        save_backbone(path, backbone=backbone, weights=None, image_size=image_size)
    return path


def run_job(data: str, model: str, output: str, batch_size: int, beam_args) -> float:
    from beam_jobs import avito_image_features as job

    started = time.perf_counter()
    job.run(["--data", data, "--model", model, "--output", output, "--batch-size", str(batch_size), "--overwrite",
             *beam_args])
    return time.perf_counter() - started


def plain_loop(data: str, model: str, image_size: int, batch_size: int, limit_batches=None):
    """(seconds, pictures, {row: (center, pad)}): the job's work without Beam."""
    from beam_jobs.avito_image_features import preprocess_fn

    started = time.perf_counter()
    serve = tf.saved_model.load(model).signatures["serving_default"]
    preprocess = preprocess_fn(image_size)
    manifest = read_manifest(data, avito_ad.KIND)
    paths = [p for split in manifest["splits"] for p in shard_paths(data, manifest, split)]
    features, rows, centers, pads, batches = {}, [], [], [], 0

    def flush():
        out = [serve(images=tf.stack(pixels))["features"].numpy().astype(np.float16) for pixels in (centers, pads)]
        features.update({row: (out[0][i], out[1][i]) for i, row in enumerate(rows)})
        rows.clear(), centers.clear(), pads.clear()

    for records in tf.data.TFRecordDataset(paths).batch(256):
        ads = avito_ad.parse(records)
        for row, status, jpeg in zip(ads[avito_ad.ROW].numpy(), ads[avito_ad.IMAGE_STATUS].numpy(),
                                     ads[avito_ad.IMAGE].numpy()):
            if status != avito_ad.IMAGE_OK or not jpeg:
                continue
            center, pad = preprocess(tf.constant(jpeg))
            rows.append(int(row)), centers.append(center), pads.append(pad)
            if len(rows) == batch_size:
                flush()
                batches += 1
                if limit_batches and batches >= limit_batches:
                    return time.perf_counter() - started, len(features), features
    if rows:
        flush()
    return time.perf_counter() - started, len(features), features


def write_per_image(features_dir: str, directory: str) -> str:
    """One `<row>.npy` per picture from center.npy (the seed's one-file-per-image layout, without pickle)."""
    if os.path.exists(os.path.join(directory, "done")):
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    center = np.load(os.path.join(features_dir, "center.npy"), mmap_mode="r")
    for row in np.flatnonzero(np.load(os.path.join(features_dir, "mask.npy"))):
        np.save(os.path.join(directory, f"{row}.npy"), np.asarray(center[row]), allow_pickle=False)
    open(os.path.join(directory, "done"), "w").close()
    return directory


def read_epoch_memmap(path: str, order: np.ndarray, batch: int) -> float:
    started = time.perf_counter()
    features = np.load(path, mmap_mode="r")
    total = 0.0
    for i in range(0, order.size, batch):
        total += float(features[order[i:i + batch]][:, 0].astype(np.float32).sum())  # touch the batch
    return time.perf_counter() - started


def read_epoch_files(directory: str, dim: int, order: np.ndarray, batch: int) -> float:
    started = time.perf_counter()
    zeros = np.zeros(dim, np.float16)
    total = 0.0
    for i in range(0, order.size, batch):
        rows = []
        for row in order[i:i + batch].tolist():
            path = os.path.join(directory, f"{row}.npy")
            rows.append(np.load(path, allow_pickle=False) if os.path.exists(path) else zeros)
        total += float(np.stack(rows)[:, 0].astype(np.float32).sum())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="ads with a picture (plus one in ten without)")
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64, help="CNN batch of the job and the loop")
    parser.add_argument("--read-batch", type=int, default=64, help="rows per batch of the reading epoch")
    parser.add_argument("--beam-args", default="--runner=FnApiRunner", help="Beam pipeline flags of the job")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best is printed")
    parser.add_argument("--workdir", default="/tmp/avito_features_bench")
    args = parser.parse_args()

    data = write_data(os.path.join(args.workdir, f"data_{args.images}"), args.images)
    model = save_model(os.path.join(args.workdir, f"model_{args.backbone}_{args.image_size}"), args.backbone,
                       args.image_size)
    output = os.path.join(args.workdir, f"features_{args.images}_{args.backbone}_{args.image_size}")
    beam_args = shlex.split(args.beam_args)

    # (a) computing the features: alternating, the best of --repeats each (other work on a
    # shared machine only ever adds time)
    run_job(data, model, output, args.batch_size, beam_args)  # warm-up
    plain_loop(data, model, args.image_size, args.batch_size, limit_batches=1)  # warm-up
    job_times, loop_times = [], []
    for _ in range(args.repeats):
        loop_seconds, pictures, loop_features = plain_loop(data, model, args.image_size, args.batch_size)
        loop_times.append(loop_seconds)
        job_times.append(run_job(data, model, output, args.batch_size, beam_args))
    job_seconds, loop_seconds = min(job_times), min(loop_times)
    mask = np.load(os.path.join(output, "mask.npy"))
    center = np.load(os.path.join(output, "center.npy"), mmap_mode="r")
    pad = np.load(os.path.join(output, "pad.npy"), mmap_mode="r")
    assert int(mask.sum()) == pictures == len(loop_features)
    difference = max(max(np.abs(center[r].astype(np.float32) - c).max(), np.abs(pad[r].astype(np.float32) - p).max())
                     for r, (c, p) in loop_features.items())
    print(f"(a) {pictures} pictures, {args.backbone} at {args.image_size} px (random weights), CNN batch "
          f"{args.batch_size}, 2 preprocessings each, {os.cpu_count()} CPUs, best of {args.repeats}")
    print(f"{'':<32}{'seconds':>9}{'pictures/s':>12}")
    print(f"{'Beam job (' + beam_args[0] + ')':<32}{job_seconds:>9.2f}{pictures / job_seconds:>12.1f}")
    print(f"{'plain loop':<32}{loop_seconds:>9.2f}{pictures / loop_seconds:>12.1f}")
    print(f"ratio job/loop: {loop_seconds / job_seconds:.2f} (features agree within {difference:.2g}; "
          f"{np.count_nonzero(center[mask == 1]) / max(1, center[mask == 1].size):.0%} of them nonzero in float16)")

    # (b) reading one epoch of features
    files = write_per_image(output, os.path.join(args.workdir, f"per_image_{args.images}_{args.backbone}_"
                                                 f"{args.image_size}"))
    n, dim = center.shape
    order = np.random.default_rng(0).permutation(n)
    path = os.path.join(output, "center.npy")
    read_epoch_memmap(path, order, args.read_batch), read_epoch_files(files, dim, order, args.read_batch)  # warm-up
    memmap_seconds = min(read_epoch_memmap(path, order, args.read_batch) for _ in range(args.repeats))
    files_seconds = min(read_epoch_files(files, dim, order, args.read_batch) for _ in range(args.repeats))
    print(f"(b) one epoch: {n} rows x {dim} float16, shuffled, batches of {args.read_batch}, page cache warm, "
          f"best of {args.repeats}")
    print(f"{'':<32}{'seconds':>9}{'rows/s':>12}")
    print(f"{'memmap center.npy':<32}{memmap_seconds:>9.3f}{n / memmap_seconds:>12.0f}")
    print(f"{'one .npy per picture':<32}{files_seconds:>9.3f}{n / files_seconds:>12.0f}")
    print(f"ratio memmap/files: {files_seconds / memmap_seconds:.1f}")


if __name__ == "__main__":
    main()
