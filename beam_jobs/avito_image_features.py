"""Avito ads' pictures through a CNN, once each, to pooled features in float16 NumPy memmaps.

    python -m beam_jobs.avito_image_features --data data/avito --model models/resnet101-224 \
        --output data/avito/image_features [--batch-size 64] [--overwrite] [--runner DataflowRunner ...]

--data is a converted `avito_ad` dataset (manifest.json and shards, every split is read);
--model a SavedModel written by `yt8m_keras.competitions.avito.cnn.save_backbone` (its
`serving_default` takes uint8 [None, S, S, 3] and applies the backbone's own preprocessing;
this job never imports Keras). The output directory:

    center.npy    float16 [N, D] memmap (`np.load(path, mmap_mode="r")`): row r holds the features
                  of the ad whose `row` is r, its picture's central square (side: the short side),
                  resized to S x S
    pad.npy       float16 [N, D]: the picture padded to a square with black (uint8 0) borders,
                  centred, resized to S x S (nothing cut off)
    mask.npy      uint8 [N]: 1 where the row's features are real, 0 where the ad has no usable
                  picture (its rows in center.npy and pad.npy are zeros)
    index.csv     row,item_id,image_status: every ad, sorted by row
    info.json     backbone.json of the model, variants, N, D, counts, the command: written last

N is the number of records over all splits (the manifest's), D the backbone's feature size.
Resizing is bilinear with antialiasing, rounded back to uint8 (what the SavedModel takes).

How it runs. Every shard is read (`ReadAllFromTFRecord`); each ad gives an index line, and an
ad with an IMAGE_OK picture goes on, keyed by `row // batch_size`, to a GroupByKey: a batch
is the pictures of rows [k*B, (k+1)*B), sorted by row, whatever the runner's bundles, so the
CNN sees the same batches on every run and the output bytes are the same. The shuffle moves
JPEG bytes (about the shards' size), not pixels. A DoFn (the SavedModel loaded once per
instance, in `setup`) decodes each picture once, makes both preprocessings, and runs the
signature on the batch for each. Features are written by the workers as chunks under
`OUTPUT/_tmp/chunks/` (three `.npy` files per chunk: rows, center, pad; np.save without
pickle), whose names are reported as the DoFn's output, so only the chunks of committed
bundles are used (a failed attempt's files are left over, then deleted). The launcher then
checks that every row 0..N-1 has exactly one index line and at most one feature row (only
for IMAGE_OK ads), fills the memmaps, and writes each file under a temporary name renamed
when complete, info.json last; `_tmp/` is removed.

A picture the conversion accepted but TensorFlow cannot decode is counted (`undecodable`)
and gets a zero row and mask 0, as a missing one.

Counters (namespace avito_image_features): ads, images, no_image, undecodable, batches.
"""

import csv
import functools
import importlib
import io
import json
import os
import shutil
import sys
import tempfile
import uuid
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from beam_jobs import common
from tfrecords import ArgumentParser, UserError, avito_ad, run_main
from tfrecords.manifest import join, read_manifest, shard_paths

NAMESPACE = "avito_image_features"
CENTER, PAD = "center", "pad"
VARIANTS = (CENTER, PAD)
VARIANT_DOC = {
    CENTER: "central square crop (side: the short side), resized to S x S (bilinear, antialiased)",
    PAD: "padded to a square with black (uint8 0) borders, centred, resized to S x S (bilinear, antialiased)",
}
MASK = "mask.npy"
INDEX = "index.csv"
INFO = "info.json"
BACKBONE_INFO = "backbone.json"  # written by yt8m_keras.competitions.avito.cnn
SIGNATURE = "serving_default"
CHUNKS = "chunks"
INDEX_REPORT = "index"
CHUNK_REPORT = "chunk_list"
DEFAULT_BATCH = 64
DEFAULT_CHUNK_ROWS = 4096


# ------------------------------------------------------------------------------- preprocessing


def _to_uint8(image: tf.Tensor, size: int) -> tf.Tensor:
    resized = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def preprocess_fn(size: int):
    """A tf.function: JPEG bytes (scalar string) -> (center, pad), each uint8 [size, size, 3].

    The picture is decoded once; `center` is its central square (side: the short side),
    `pad` the picture centred on a black square (side: the long side); both resized.
    """

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def preprocess(jpeg):
        image = tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE")
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        short, long = tf.minimum(height, width), tf.maximum(height, width)
        center = tf.image.crop_to_bounding_box(image, (height - short) // 2, (width - short) // 2, short, short)
        pad = tf.image.pad_to_bounding_box(image, (long - height) // 2, (long - width) // 2, long, long)
        return _to_uint8(center, size), _to_uint8(pad, size)

    return preprocess


@functools.lru_cache(maxsize=None)
def _cached_preprocess_fn(size: int):
    return preprocess_fn(size)


def preprocess(jpeg: bytes, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(center, pad) uint8 [size, size, 3] of one JPEG: what the job feeds the SavedModel."""
    center, pad = _cached_preprocess_fn(size)(tf.constant(jpeg))
    return center.numpy(), pad.numpy()


# ---------------------------------------------------------------------------------- transforms


class Ad(NamedTuple):
    row: int
    item_id: str
    image_status: int
    image: bytes


class Features(NamedTuple):
    """One ad's features: its row and float16 [D] per variant."""

    row: int
    center: np.ndarray
    pad: np.ndarray


_AD_KEYS = (avito_ad.ROW, avito_ad.ITEM_ID, avito_ad.IMAGE_STATUS, avito_ad.IMAGE)


@functools.lru_cache(maxsize=None)
def _parse_fn():
    # A graph, not eager ops: eagerly, parse_example builds its 24 default tensors on every
    # call (5 ms a record, as much as the CNN of a small backbone).
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def parse(serialized):
        record = avito_ad.parse(serialized)
        return tuple(record[key] for key in _AD_KEYS)

    return parse


def parse_ad(serialized: bytes) -> Ad:
    """The fields this job uses, parsed with the record kind's own parser."""
    row, item_id, status, image = (t.numpy() for t in _parse_fn()(tf.constant(serialized)))
    return Ad(int(row), item_id.decode("utf-8"), int(status), image)


def has_picture(ad: Ad) -> bool:
    return ad.image_status == avito_ad.IMAGE_OK and len(ad.image) > 0


def index_entry(ad: Ad) -> Dict:
    return {"row": ad.row, "item_id": ad.item_id, "image_status": ad.image_status}


class _Parse(beam.DoFn):
    INDEX = "index"

    def __init__(self, batch_size: int):
        self._batch_size = batch_size
        self._ads = Metrics.counter(NAMESPACE, "ads")
        self._no_image = Metrics.counter(NAMESPACE, "no_image")

    def process(self, serialized: bytes):
        ad = parse_ad(serialized)
        self._ads.inc()
        yield beam.pvalue.TaggedOutput(self.INDEX, index_entry(ad))
        if has_picture(ad):
            yield ad.row // self._batch_size, (ad.row, ad.image)
        else:
            self._no_image.inc()


class _RunModel(beam.DoFn):
    """A batch of (row, JPEG) -> Features per decodable picture; the SavedModel is loaded in `setup`."""

    def __init__(self, model_path: str, image_size: int):
        self._model_path, self._image_size = model_path, image_size
        self._images = Metrics.counter(NAMESPACE, "images")
        self._undecodable = Metrics.counter(NAMESPACE, "undecodable")
        self._batches = Metrics.counter(NAMESPACE, "batches")

    def setup(self):
        self._model = tf.saved_model.load(self._model_path)
        self._serve = self._model.signatures[SIGNATURE]
        self._preprocess = preprocess_fn(self._image_size)

    def process(self, element):
        _, pictures = element
        rows, centers, pads = [], [], []
        for row, jpeg in sorted(pictures):  # by row: the same batch on every run
            try:
                center, pad = self._preprocess(tf.constant(jpeg))
            except tf.errors.InvalidArgumentError:
                self._undecodable.inc()
                continue
            rows.append(row)
            centers.append(center)
            pads.append(pad)
        if not rows:
            return
        features = {variant: self._serve(images=tf.stack(pixels))["features"].numpy().astype(np.float16)
                    for variant, pixels in ((CENTER, centers), (PAD, pads))}
        self._images.inc(len(rows))
        self._batches.inc()
        for i, row in enumerate(rows):
            yield Features(row, features[CENTER][i], features[PAD][i])


class ExtractFeatures(beam.PTransform):
    """Serialized `avito_ad` records -> (Features of each ad with a picture, index dicts of every ad).

    An index dict is {"row", "item_id", "image_status"}. Features are float16.

    Args:
        model_path: a SavedModel of `yt8m_keras.competitions.avito.cnn.save_backbone`.
        image_size: its input side S.
        batch_size: rows [k*B, (k+1)*B) with pictures make one batch of the CNN.

    Example:

    >>> features, index = records | ExtractFeatures("models/resnet101-224", image_size=224)
    """

    def __init__(self, model_path: str, image_size: int, batch_size: int = DEFAULT_BATCH):
        super().__init__()
        self._model_path, self._image_size, self._batch_size = model_path, image_size, batch_size

    def expand(self, records):
        parsed = records | "Parse" >> beam.ParDo(_Parse(self._batch_size)).with_outputs(_Parse.INDEX, main="pictures")
        features = (parsed.pictures
                    | "Batch" >> beam.GroupByKey()
                    | "RunModel" >> beam.ParDo(_RunModel(self._model_path, self._image_size)))
        return features, parsed[_Parse.INDEX]


def _save_npy(path: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    with FileSystems.create(path) as f:
        f.write(buffer.getvalue())


class _WriteChunks(beam.DoFn):
    """Buffers Features and writes them as chunks of `chunk_rows`; yields each chunk's file names."""

    def __init__(self, output: str, chunk_rows: int):
        self._output, self._chunk_rows = output, chunk_rows

    def start_bundle(self):
        self._buffer: List[Features] = []

    def process(self, features: Features):
        self._buffer.append(features)
        if len(self._buffer) >= self._chunk_rows:
            yield self._flush()

    def finish_bundle(self):
        if self._buffer:
            yield GlobalWindows.windowed_value(self._flush())

    def _flush(self) -> Dict:
        buffer, self._buffer = sorted(self._buffer, key=lambda f: f.row), []
        # A fresh name per attempt: a retried bundle never overwrites a committed one's files.
        prefix = common.tmp_path(self._output, f"{CHUNKS}/{uuid.uuid4().hex}")
        arrays = {"rows": np.array([f.row for f in buffer], np.int64),
                  CENTER: np.stack([f.center for f in buffer]).astype(np.float16),
                  PAD: np.stack([f.pad for f in buffer]).astype(np.float16)}
        paths = {}
        for name, array in arrays.items():
            paths[name] = f"{prefix}-{name}.npy"
            _save_npy(paths[name], array)
        return {"records": len(buffer), **paths}


class WriteChunks(beam.PTransform):
    """Features -> chunk reports ({"records", "rows", "center", "pad"}: paths under OUTPUT/_tmp/chunks/)."""

    def __init__(self, output: str, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        super().__init__()
        self._output, self._chunk_rows = output, chunk_rows

    def expand(self, features):
        return features | beam.ParDo(_WriteChunks(self._output, self._chunk_rows))


# ------------------------------------------------------------------------------------ launcher


def read_backbone_info(model: str) -> Dict:
    """backbone.json of --model, checked for what the job needs."""
    if not tf.io.gfile.exists(join(model, "saved_model.pb")):
        raise UserError(f"--model {model} is not a SavedModel directory (no saved_model.pb): "
                        "write one with python -m yt8m_keras.competitions.avito.cnn")
    path = join(model, BACKBONE_INFO)
    if not tf.io.gfile.exists(path):
        raise UserError(f"no {BACKBONE_INFO} in --model {model}: write the model with "
                        "python -m yt8m_keras.competitions.avito.cnn")
    with tf.io.gfile.GFile(path) as f:
        try:
            info = json.load(f)
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON: {e}") from None
    for key in ("image_size", "dim"):
        if not isinstance(info.get(key), int) or info[key] < 1:
            raise UserError(f"{path}: {key!r} must be a positive integer, got {info.get(key)!r}")
    return info


def _read_lines(paths: Iterable[str]) -> Iterable[Dict]:
    for path in paths:
        with FileSystems.open(path) as f:
            for line in io.TextIOWrapper(f, encoding="utf-8"):
                if line.strip():
                    yield json.loads(line)


def _report_paths(output: str, name: str) -> List[str]:
    return sorted(m.path for m in FileSystems.match([common.tmp_path(output, name) + "-*.jsonl"])[0].metadata_list)


class _Index(NamedTuple):
    item_ids: List[str]
    status: np.ndarray  # int64 [N]


def read_index(entries: Iterable[Dict], n: int) -> _Index:
    """Every row 0..N-1 exactly once, or one UserError saying which rows are not."""
    item_ids: List[Optional[str]] = [None] * n
    status = np.full(n, -1, np.int64)
    for entry in entries:
        row = entry["row"]
        if not 0 <= row < n:
            raise UserError(f"ad {entry['item_id']!r} has row {row}, outside 0..{n - 1} "
                            f"(N = {n} records in the manifest): convert the data again")
        if item_ids[row] is not None:
            raise UserError(f"row {row} is held by two ads ({item_ids[row]!r} and {entry['item_id']!r}): "
                            "every row must be one ad's; convert the data again")
        item_ids[row] = entry["item_id"]
        status[row] = entry["image_status"]
    missing = np.flatnonzero(status < 0)
    if missing.size:
        raise UserError(f"{missing.size} of {n} rows have no ad (first: row {missing[0]}): the shards hold "
                        "fewer ads than the manifest counts, or rows are not 0..N-1; convert the data again")
    return _Index(item_ids, status)


def _atomic_local(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}"


def assemble(directory: str, index: _Index, chunks: Sequence[Dict], dim: int) -> Dict:
    """Writes center.npy, pad.npy, mask.npy and index.csv into local `directory`; returns counts."""
    tmp = {variant: _atomic_local(os.path.join(directory, variant + ".npy")) for variant in VARIANTS}
    try:
        return _assemble(directory, index, chunks, dim, tmp)
    finally:  # after a failure, no half-written file is left (after success they were renamed)
        for name in [*tmp.values(), *(_atomic_local(os.path.join(directory, f)) for f in (MASK, INDEX))]:
            if os.path.exists(name):
                os.remove(name)


def _assemble(directory: str, index: _Index, chunks: Sequence[Dict], dim: int, tmp: Dict[str, str]) -> Dict:
    n = len(index.item_ids)
    memmaps = {variant: np.lib.format.open_memmap(tmp[variant], mode="w+", dtype=np.float16, shape=(n, dim))
               for variant in VARIANTS}
    mask = np.zeros(n, np.uint8)
    for chunk in sorted(chunks, key=lambda c: c["rows"]):
        rows = _load_npy(chunk["rows"])
        arrays = {variant: _load_npy(chunk[variant]) for variant in VARIANTS}
        for variant, array in arrays.items():
            if array.shape != (rows.size, dim):
                raise RuntimeError(f"chunk {chunk[variant]} has shape {array.shape}, expected {(rows.size, dim)}")
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise RuntimeError(f"chunk {chunk['rows']} has rows outside 0..{n - 1}")
        if np.any(mask[rows]) or np.unique(rows).size != rows.size:
            raise RuntimeError(f"row {rows[np.argmax(mask[rows])]} has features twice (chunk {chunk['rows']})")
        for variant, array in arrays.items():
            memmaps[variant][rows] = array
        mask[rows] = 1
    no_picture = np.flatnonzero(mask.astype(bool) & (index.status != avito_ad.IMAGE_OK))
    if no_picture.size:
        raise RuntimeError(f"row {no_picture[0]} has features but image_status {index.status[no_picture[0]]}")
    for variant, memmap in memmaps.items():
        memmap.flush()
        del memmap
    memmaps.clear()
    for variant in VARIANTS:
        os.replace(tmp[variant], os.path.join(directory, variant + ".npy"))
    mask_path = os.path.join(directory, MASK)
    with open(_atomic_local(mask_path), "wb") as f:
        np.save(f, mask, allow_pickle=False)
    os.replace(_atomic_local(mask_path), mask_path)
    index_path = os.path.join(directory, INDEX)
    with open(_atomic_local(index_path), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["row", "item_id", "image_status"])
        writer.writerows(zip(range(n), index.item_ids, index.status.tolist()))
    os.replace(_atomic_local(index_path), index_path)
    image_ok = int(np.sum(index.status == avito_ad.IMAGE_OK))
    return {"ads": n, "with_features": int(mask.sum()), "image_ok": image_ok,
            "undecodable": image_ok - int(mask.sum()),
            "no_image": int(np.sum(index.status == avito_ad.NO_IMAGE)),
            "image_missing": int(np.sum(index.status == avito_ad.IMAGE_MISSING)),
            "image_broken": int(np.sum(index.status == avito_ad.IMAGE_BROKEN))}


def _load_npy(path: str) -> np.ndarray:
    with FileSystems.open(path) as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


def _publish(local_dir: str, output: str, names: Sequence[str]) -> None:
    """Copies finished files of a local directory to a remote output, each under a temporary name first."""
    for name in names:
        target = join(output, name)
        tf.io.gfile.copy(os.path.join(local_dir, name), target + ".tmp", overwrite=True)
        tf.io.gfile.rename(target + ".tmp", target, overwrite=True)


def summary(info: Dict) -> str:
    counts = info["counts"]
    backbone = info["backbone"]
    return "\n".join([
        f"avito image features in {info['output']}",
        f"  {backbone.get('backbone')} ({backbone.get('weights') or 'random weights'}), "
        f"{backbone['image_size']} px, D = {info['dim']}, float16",
        f"  ads {counts['ads']}: features {counts['with_features']}, no image {counts['no_image']}, "
        f"missing {counts['image_missing']}, broken {counts['image_broken']}, undecodable {counts['undecodable']}",
        f"  files {', '.join(v + '.npy' for v in VARIANTS)}, {MASK}, {INDEX}, {INFO}",
    ])


def _parser(prog: str) -> ArgumentParser:
    parser = common.job_parser(
        prog, "Run a CNN SavedModel over every picture of a converted Avito dataset (center crop and pad-to-square) "
        "and write pooled float16 features as NumPy memmaps in row order.")
    parser.add_argument("--data", required=True, help="converted avito_ad dataset directory (manifest.json)")
    parser.add_argument("--model", required=True,
                        help="SavedModel of python -m yt8m_keras.competitions.avito.cnn (with backbone.json)")
    parser.add_argument("--output", required=True, help="output directory, e.g. DATA/image_features")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                        help=f"pictures per CNN batch: rows [k*B, (k+1)*B) (default {DEFAULT_BATCH})")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
                        help=f"feature rows per temporary chunk a worker writes (default {DEFAULT_CHUNK_ROWS})")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    return parser


def run(argv: Optional[List[str]] = None, prog: str = "python -m beam_jobs.avito_image_features") -> Dict:
    """Runs the job; returns info.json's content. Raises UserError for bad flags or inputs.

    Example:

    >>> info = run(["--data", "data/avito", "--model", "models/resnet101-224",
    ...             "--output", "data/avito/image_features"])
    >>> info["rows"], info["dim"], info["counts"]["with_features"]
    (2011862, 2048, 1856665)
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args, pipeline_args = common.parse_args(_parser(prog), argv)
    for flag, value, low, high in (("--batch-size", args.batch_size, 1, 4096),
                                   ("--chunk-rows", args.chunk_rows, 1, 1 << 20)):
        if not low <= value <= high:
            raise UserError(f"{flag} must be in [{low}, {high}], got {value}")
    manifest = read_manifest(args.data, avito_ad.KIND, avito_ad.SCHEMA_VERSION)
    paths = [path for split in manifest["splits"] for path in shard_paths(args.data, manifest, split)]
    n = sum(info["records"] for info in manifest["splits"].values())
    backbone = read_backbone_info(args.model)
    options = common.pipeline_options(pipeline_args)
    common.prepare_output(args.output, args.overwrite, [args.data, args.model])

    with beam.Pipeline(options=options) as p:
        records = (p | "Shards" >> beam.Create(paths)
                   | "Read" >> beam.io.ReadAllFromTFRecord())
        features, index = records | "Extract" >> ExtractFeatures(args.model, backbone["image_size"],
                                                                 args.batch_size)
        _ = (features | "WriteChunks" >> WriteChunks(args.output, args.chunk_rows)
             | "ReportChunks" >> common.WriteReport(args.output, CHUNK_REPORT))
        _ = index | "WriteIndex" >> common.WriteReport(args.output, INDEX_REPORT)

    index = read_index(_read_lines(_report_paths(args.output, INDEX_REPORT)), n)
    chunks = list(_read_lines(_report_paths(args.output, CHUNK_REPORT)))
    remote = "://" in args.output
    directory = tempfile.mkdtemp(prefix="avito_features-") if remote else args.output
    try:
        counts = assemble(directory, index, chunks, backbone["dim"])
        info = {
            "kind": "avito_image_features",
            "backbone": backbone,
            "model": args.model,
            "data": args.data,
            "output": args.output,
            "rows": n,
            "dim": backbone["dim"],
            "dtype": "float16",
            "variants": {variant: {"file": variant + ".npy", "preprocessing": VARIANT_DOC[variant]}
                         for variant in VARIANTS},
            "mask": MASK,
            "index": INDEX,
            "splits": {split: value["records"] for split, value in manifest["splits"].items()},
            "counts": counts,
            "batch_size": args.batch_size,
            "command": common.command_line(prog, argv),
        }
        info_path = os.path.join(directory, INFO)
        with open(_atomic_local(info_path), "w", encoding="utf-8") as f:
            f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
        os.replace(_atomic_local(info_path), info_path)
        if remote:
            _publish(directory, args.output, [*(v + ".npy" for v in VARIANTS), MASK, INDEX, INFO])
    finally:
        if remote:
            shutil.rmtree(directory, ignore_errors=True)
    FileSystems.delete([join(args.output, common.TMP)])
    return info


def main(argv: Optional[List[str]] = None) -> None:
    # The installed module's run, not __main__'s: Dataflow workers import DoFns by their real name.
    job = importlib.import_module("beam_jobs.avito_image_features")
    print(job.summary(job.run(argv)))


if __name__ == "__main__":
    sys.exit(run_main(main))
