import csv
import io
import json
import math
import os
import subprocess
import sys
from collections import Counter

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import taxonomy_to_tfrecords as job
from tfrecords import UserError
from tfrecords import product_text as kind
from tfrecords.manifest import REJECTED, read_manifest, shard_paths

BEAM = ["--runner=FnApiRunner"]
VAL_FRACTION = 0.2
VOCAB_SIZE = 300
# path -> how many labelled lines: big, medium, small and single paths.
PATHS = {("Food", "Noodles", "Instant", "Indomie"): 25, ("Food", "Dairy", "Milk", "Ultra Milk"): 12,
         ("Drinks", "Tea", "Bottled", "Sosro"): 5, ("Care", "Hair", "Shampoo", "Clear"): 1,
         ("Food", "Snacks", "Chips", "Chitato"): 10}


def _features(indoml_id, description=None, retailer=None, price=None):
    return json.dumps({"indoml_id": indoml_id, "description": description or f"item {indoml_id} 250g",
                       "retailer": retailer or f"retailer_{indoml_id % 4}",
                       "price": price if price is not None else indoml_id * 1.25})


def _label(indoml_id, path):
    return json.dumps({"indoml_id": indoml_id, **dict(zip(kind.LABELS, path))})


class Raw:
    """Hand-written inputs: good lines, faults and what the conversion must make of them."""

    def __init__(self, directory):
        self.dir = directory
        self.expected_rejects = []  # (file, line, reason)
        self.products = {}  # indoml_id -> (description, retailer, price, labels or None)

    def write(self, name, lines):
        """lines: (content str|bytes, reason or None); a None content is a blank line."""
        path = str(self.dir / name)
        with open(path, "wb") as f:
            for number, (content, reason) in enumerate(lines, start=1):
                f.write((content.encode() if isinstance(content, str) else content or b"") + b"\n")
                if reason:
                    self.expected_rejects.append((path, number, reason))
        return path


def _raw_dataset(directory) -> Raw:
    raw = Raw(directory)
    features, labels, indoml_id = [], [], 0
    for path, count in PATHS.items():
        for i in range(count):
            indoml_id += 1
            description = f"{path[3].lower()} {path[2].lower()} {i * 7 % 500}g"
            price = [3, 12.5, 0.1, 99999.99][indoml_id % 4]
            features.append((_features(indoml_id, description, None, price), None))
            labels.append((_label(indoml_id, path), None))
            raw.products[indoml_id] = (description, f"retailer_{indoml_id % 4}", price, path)
    features += [(None, None), ("   ", None),
                 ('{"indoml_id": 60, "description": "x", "retailer": "r"', "bad_json"),
                 ("[1, 2, 3]", "not_object"),
                 ('{"indoml_id": 61, "description": "x", "retailer": "r"}', "missing_field"),
                 ('{"indoml_id": true, "description": "x", "retailer": "r", "price": 1}', "wrong_type"),
                 ('{"indoml_id": 62, "description": "x", "retailer": "r", "price": "3.5"}', "wrong_type"),
                 ('{"indoml_id": 63, "description": "x", "retailer": "r", "price": NaN}', "wrong_type"),
                 (b'{"indoml_id": 64, "description": "caf\xe9", "retailer": "r", "price": 1}', "bad_utf8"),
                 (_features(3, "another line with id 3"), "duplicate_id"),
                 (_features(65), "features_without_label"),
                 ('{"indoml_id": 66, "description": 5, "retailer": "r", "price": 1}', "wrong_type"),
                 ('{"indoml_id": 67, "description": "\\ud800", "retailer": "r", "price": 1}', "wrong_type"),
                 (_features(2 ** 63), "wrong_type")]
    labels += [(_label(999, ("Food", "Noodles", "Instant", "Indomie")), "label_without_features"),
               (_label(70, ("Food", "", "Milk", "Ultra Milk")), "wrong_type"),
               (_label(71, ("Food", "Dairy", "Milk", "Ultra | Milk")), "bad_label"),
               ('{"indoml_id": 72, "supergroup": "Food"}', "missing_field")]
    raw.train_features = raw.write("train.features", features)
    raw.train_labels = raw.write("train.labels", labels)
    raw.extra_labels = raw.write("extra.labels", [(_label(5, ("Drinks", "Tea", "Bottled", "Sosro")), "duplicate_id"),
                                                  ('"just a string"', "not_object")])
    test = [(_features(1000 + i, f"test thing {i}"), None) for i in range(8)]
    for i in range(8):
        raw.products[1000 + i] = (f"test thing {i}", f"retailer_{i % 4}", (1000 + i) * 1.25, None)
    raw.test_features = raw.write("test.features", test[:4] + [(None, None), (_features(1), "duplicate_id")] + test[4:])
    return raw


def _args(raw, output, *extra):
    return ["--features", raw.train_features, "--labels", raw.train_labels, "--features", raw.test_features,
            "--labels", raw.extra_labels, "--output", output, "--val-fraction", str(VAL_FRACTION),
            "--vocab-size", str(VOCAB_SIZE), *extra, *BEAM]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return _raw_dataset(tmp_path_factory.mktemp("taxonomy_raw"))


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("taxonomy_data"))
    return out, job.run(_args(raw, out, "--overwrite", "--num-shards", "3"))


def _records(out, manifest, split):
    """[(shard name, parsed record with Python values)] of `split`, in file order."""
    records = []
    for path in shard_paths(out, manifest, split):
        for serialized in tf.data.TFRecordDataset(path):
            parsed = {k: v.numpy() for k, v in kind.parse(serialized).items()}
            records.append((os.path.basename(path), {k: v.decode() if isinstance(v, bytes) else v
                                                     for k, v in parsed.items()}))
    return records


def _labels(record):
    return tuple(record[label] for label in kind.LABELS)


# ------------------------------------------------------------------------------ a normal run


def test_manifest_counts_and_accounting(raw, converted):
    out, manifest = converted
    assert manifest == read_manifest(out, kind.KIND, kind.SCHEMA_VERSION)
    labelled = sum(PATHS.values())
    val = sum(math.floor(n * VAL_FRACTION) for n in PATHS.values())
    assert {s: info["records"] for s, info in manifest["splits"].items()} == {
        "train": labelled - val, "val": val, "test": 8}
    assert manifest["input_lines"] == {"features": labelled + 12 + 9, "labels": labelled + 4 + 2}
    assert manifest["labels_joined"] == labelled
    written = sum(s["records"] for s in manifest["splits"].values())
    assert manifest["input_records"] == sum(manifest["input_lines"].values()) - manifest["labels_joined"]
    assert manifest["input_records"] == written + manifest["rejected"] == 61 + 19
    assert [(i["kind"], i["lines"]) for i in manifest["inputs"]] == [
        ("features", labelled + 12), ("features", 9), ("labels", labelled + 4), ("labels", 2)]
    assert manifest["num_classes"] == len(PATHS)
    assert (manifest["val_fraction"], manifest["seed"], manifest["tokenizer"], manifest["tokenizer_source"]) == (
        VAL_FRACTION, 0, "vocabulary.spm", "trained")
    assert manifest["tokenizer_sentences"] == 2 * (labelled - val)
    assert 0 < manifest["vocab_size"] <= VOCAB_SIZE
    assert manifest["command"].startswith("python -m beam_jobs.taxonomy_to_tfrecords --features ")
    assert sorted(os.listdir(out)) == sorted(["manifest.json", "rejected.jsonl", "taxonomy.csv", "vocabulary.spm",
                                              *(n for s in manifest["splits"].values() for n in s["shards"])])


def test_records_hold_the_input_values_sorted_by_id_within_shards(raw, converted):
    out, manifest = converted
    seen = {}
    for split in ("train", "val", "test"):
        assert manifest["splits"][split]["shards"] == [f"{split}-{i:05d}-of-00003.tfrecord" for i in range(3)]
        records = _records(out, manifest, split)
        for shard in manifest["splits"][split]["shards"]:
            ids = [r[kind.ID] for name, r in records if name == shard]
            assert ids == sorted(ids)
        for _, record in records:
            seen[int(record[kind.ID])] = split
            description, retailer, price, labels = raw.products[record[kind.ID]]
            assert (record[kind.DESCRIPTION], record[kind.RETAILER]) == (description, retailer)
            assert record[kind.PRICE] == np.float32(price)
            assert _labels(record) == (labels or ("", "", "", ""))
            assert (split == "test") == (labels is None)
    assert set(seen) == set(raw.products)


def test_every_dead_letter_is_counted_and_listed_with_file_and_line(raw, converted):
    out, manifest = converted
    letters = [json.loads(line) for line in open(os.path.join(out, REJECTED))]
    assert [(r["file"], r["offset"]) for r in letters] == sorted((r["file"], r["offset"]) for r in letters)
    assert sorted((r["file"], r["offset"], r["reason"]) for r in letters) == sorted(raw.expected_rejects)
    assert manifest["rejected_by_reason"] == dict(sorted(Counter(r for _, _, r in raw.expected_rejects).items()))
    assert set(manifest["rejected_by_reason"]) == set(job.REASONS)
    found = {(os.path.basename(r["file"]), r["offset"]): r for r in letters}
    labelled = sum(PATHS.values())
    assert found[("train.features", labelled + 5)]["field"] == "price"
    assert found[("train.features", labelled + 5)]["indoml_id"] == 61
    assert found[("train.features", labelled + 6)]["indoml_id"] is None
    assert found[("train.features", labelled + 10)]["detail"].startswith("indoml_id 3 repeats ")
    assert found[("train.features", labelled + 10)]["detail"].endswith("train.features:3")
    assert found[("test.features", 6)]["detail"].endswith("train.features:1")  # across files: the first --features
    assert found[("extra.labels", 1)]["detail"].endswith("train.labels:5")
    assert found[("train.labels", labelled + 3)]["reason"] == "bad_label"


@pytest.mark.parametrize("line,reason,field", [
    (b'{"indoml_id": 1, "description": "a", "retailer": "r", "price": 2}', None, None),
    (b'{"indoml_id": 1, "description": "", "retailer": "", "price": -2.5}', None, None),
    (b"\xff{}", "bad_utf8", None),
    (b"{", "bad_json", None),
    (b"[" * 100000, "bad_json", None),
    (b"null", "not_object", None),
    (b'{"indoml_id": 1.0, "description": "a", "retailer": "r", "price": 2}', "wrong_type", "indoml_id"),
    (b'{"indoml_id": 1, "description": null, "retailer": "r", "price": 2}', "wrong_type", "description"),
    (b'{"indoml_id": 1, "description": "a", "retailer": "r", "price": false}', "wrong_type", "price"),
    (b'{"indoml_id": 1, "description": "a", "retailer": "r", "price": 1e39}', "wrong_type", "price"),
    (b'{"indoml_id": 1, "description": "a", "retailer": "r", "price": Infinity}', "wrong_type", "price"),
    (b'{"indoml_id": 1, "description": "a", "price": 2}', "missing_field", "retailer"),
])
def test_parse_features_line(line, reason, field):
    parsed = job.parse_line(job.FEATURES, line)
    if reason is None:
        assert parsed == json.loads(line)
    else:
        assert (parsed.reason, parsed.field) == (reason, field), parsed


@pytest.mark.parametrize("labels,reason", [
    (("Food", "Dairy", "Milk", "Ultra"), None), (("Food", "Dairy", "Milk", " Ultra"), "bad_label"),
    (("Food > Dairy", "x", "Milk", "Ultra"), "bad_label"), (("Food", "Dairy", "Milk", ""), "wrong_type"),
])
def test_parse_label_line(labels, reason):
    parsed = job.parse_line(job.LABELS, _label(4, labels).encode())
    assert (parsed.reason if reason else parsed) == (reason or {"indoml_id": 4, **dict(zip(kind.LABELS, labels))})


# ------------------------------------------------------------------------------ split, taxonomy


def _product(indoml_id, path=("a", "b", "c", "d")):
    return job.Product(indoml_id, "d", "r", 1.0, path)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.29, 0.45])
def test_assign_splits_holds_out_floor_n_f_of_each_path(fraction):
    for n in (1, 2, 3, 9, 10, 11, 100, 101):
        splits = [split for split, _ in job.assign_splits([_product(i) for i in range(n)], fraction, seed=0)]
        assert splits.count("val") == math.floor(n * fraction + 1e-9), (n, fraction)
        assert splits[0] == "train"
    splits = [s for s, _ in job.assign_splits([_product(i) for i in range(1)], 0.45, seed=3)]
    assert splits == ["train"]  # a path seen once stays in train


def test_assign_splits_is_deterministic_and_seeded():
    products = [_product(i) for i in range(200)]

    def val_ids(seed, order=products):
        return {p.indoml_id for split, p in job.assign_splits(order, 0.1, seed) if split == "val"}

    assert len(val_ids(0)) == 20
    assert val_ids(0) == val_ids(0, list(reversed(products)))  # whatever order the records arrive in
    assert val_ids(0) != val_ids(1)


def test_the_run_stratifies_by_path_and_writes_the_taxonomy(raw, converted):
    out, manifest = converted
    by_path = {path: Counter() for path in PATHS}
    val_ids = {path: set() for path in PATHS}
    for split in ("train", "val"):
        for _, record in _records(out, manifest, split):
            by_path[_labels(record)][split] += 1
            if split == "val":
                val_ids[_labels(record)].add(record[kind.ID])
    for path, n in PATHS.items():
        val = math.floor(n * VAL_FRACTION)
        assert by_path[path] == Counter({"train": n - val, "val": val})
        ids = [i for i, product in raw.products.items() if product[3] == path]
        expected = {p.indoml_id for s, p in job.assign_splits([_product(i, path) for i in ids], VAL_FRACTION, 0)
                    if s == "val"}
        assert val_ids[path] == expected
    # By hand: sorted by the four strings, with each path's train count (n - floor(0.2 n)).
    assert open(os.path.join(out, "taxonomy.csv")).read() == (
        "supergroup,group,module,brand,count\n"
        "Care,Hair,Shampoo,Clear,1\n"
        "Drinks,Tea,Bottled,Sosro,4\n"
        "Food,Dairy,Milk,Ultra Milk,10\n"
        "Food,Noodles,Instant,Indomie,20\n"
        "Food,Snacks,Chips,Chitato,8\n")


# ------------------------------------------------------------------------------ tokenizer


def test_the_tokenizer_loads_in_t5_tokenizer_and_round_trips_every_path(converted):
    import keras_hub

    out, manifest = converted
    proto = open(os.path.join(out, "vocabulary.spm"), "rb").read()
    tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
    assert (tokenizer.token_to_id("<pad>"), tokenizer.token_to_id("</s>"), tokenizer.token_to_id("<unk>")) == (0, 1, 2)
    assert (tokenizer.pad_token_id, tokenizer.end_token_id) == (0, 1)
    assert tokenizer.vocabulary_size() == manifest["vocab_size"]
    with open(os.path.join(out, "taxonomy.csv"), newline="") as f:
        paths = [tuple(row[k] for k in kind.LABELS) for row in csv.DictReader(f)]
    texts = [kind.target_text(path) for path in paths] + [kind.input_text("indomie goreng 85g", "retailer_1", 3.5)]
    for text in texts:
        ids = np.asarray(tokenizer(text))
        assert 2 not in ids.tolist(), text  # no unknown piece
        decoded = np.asarray(tokenizer.detokenize(ids)).item()
        assert (decoded.decode() if isinstance(decoded, bytes) else decoded) == text


def test_two_runs_give_the_same_bytes(raw, converted, tmp_path):
    out, manifest = converted
    # In parallel this time: the order records arrive in must not matter.
    again = job.run(_args(raw, str(tmp_path), "--num-shards", "3", "--direct_num_workers=2",
                          "--direct_running_mode=multi_threading"))
    assert again["splits"] == manifest["splits"]
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path))
    for name in sorted(os.listdir(out)):
        if name != "manifest.json":
            assert open(os.path.join(out, name), "rb").read() == open(tmp_path / name, "rb").read(), name


def test_an_existing_tokenizer_is_copied_from_a_file_or_a_preset(raw, converted, tmp_path):
    out, _ = converted
    proto = open(os.path.join(out, "vocabulary.spm"), "rb").read()
    preset = tmp_path / "t5_tiny_preset"
    (preset / "assets" / "tokenizer").mkdir(parents=True)
    (preset / "assets" / "tokenizer" / "vocabulary.spm").write_bytes(proto)
    for source in (os.path.join(out, "vocabulary.spm"), str(preset)):
        target = tmp_path / ("from_file" if source.endswith(".spm") else "from_preset")
        manifest = job.run(["--features", raw.test_features, "--tokenizer", source, "--output", str(target), *BEAM])
        assert (target / "vocabulary.spm").read_bytes() == proto
        assert manifest["tokenizer_source"] == source and "tokenizer_sentences" not in manifest
        # Alone, test.features's line with id 1 is no duplicate: 9 test lines.
        assert {s: i["records"] for s, i in manifest["splits"].items()} == {"test": 9}
        assert manifest["num_classes"] == 0 and manifest["rejected"] == 0 and manifest["rejected_by_reason"] == {}
        assert (target / "taxonomy.csv").read_text() == "supergroup,group,module,brand,count\n"


def _sentencepiece_proto(**ids):
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(["a b c d e f g"] * 10), model_writer=model,
                                             vocab_size=12, hard_vocab_limit=False, minloglevel=2, **ids)
    return model.getvalue()


# ------------------------------------------------------------------------------ user errors


@pytest.mark.parametrize("change,message", [
    (lambda a: a + ["--val-fraction", "1"], r"--val-fraction must be in \[0, 1\), got 1.0"),
    (lambda a: a + ["--num-shards", "0"], r"--num-shards must be in \[1, 100000\], got 0"),
    (lambda a: a + ["--vocab-size", "2"], r"--vocab-size must be in \[8, 1000000\], got 2"),
    (lambda a: a + ["--tokenizer-sentences", "0"], r"--tokenizer-sentences must be in \[1, 100000000\], got 0"),
    (lambda a: a + ["--val_fraction", "0.3"], "unrecognized arguments: --val_fraction 0.3"),
    (lambda a: a + ["--labels", a[1]], "input given twice: .*train.features"),
    (lambda a: a[:2] + a[4:], "no --labels: .* pass --tokenizer"),
    (lambda a: a + ["--labels", "/nonexistent/x.labels"], "input not found: /nonexistent/x.labels"),
    (lambda a: a + ["--tokenizer", "t.spm", "--vocab-size", "50"], "--vocab-size sets how a tokenizer is trained"),
    (lambda a: a[:2] + a[4:] + ["--tokenizer", "/nonexistent/t.spm"], "input not found: /nonexistent/t.spm"),
])
def test_user_errors(tmp_path, change, message):
    raw = _raw_dataset(tmp_path)
    args = ["--features", raw.train_features, "--labels", raw.train_labels, "--output", str(tmp_path / "out"),
            *BEAM]
    with pytest.raises(UserError, match=message):
        job.run(change(args))
    assert not os.path.exists(tmp_path / "out")  # refused before anything was written


@pytest.mark.parametrize("content,message", [
    (b"not a model", "is not a SentencePiece model"),
    (None, r"pad id 0 \"<pad>\" and eos id 1 \"</s>\" \(T5's\), got pad id -1, eos id 2"),
    ("dir", "no assets/tokenizer/vocabulary.spm in the directory"),
])
def test_bad_tokenizers_are_refused(tmp_path, content, message):
    raw = _raw_dataset(tmp_path)
    path = tmp_path / "tokenizer"
    if content == "dir":
        path.mkdir()
    else:
        path.write_bytes(content or _sentencepiece_proto())  # sentencepiece's default ids: unk 0, bos 1, eos 2
    with pytest.raises(UserError, match=message):
        job.run(["--features", raw.test_features, "--tokenizer", str(path), "--output", str(tmp_path / "out"), *BEAM])
    assert not os.path.exists(tmp_path / "out")


def test_inputs_are_never_inside_the_output(tmp_path):
    raw = _raw_dataset(tmp_path)
    with pytest.raises(UserError, match="inside the output directory"):
        job.run(["--features", raw.train_features, "--labels", raw.train_labels, "--output", str(tmp_path),
                 "--overwrite", *BEAM])
    assert os.path.exists(raw.train_features)


def test_a_vocabulary_too_small_for_the_text_is_one_error(tmp_path):
    raw = _raw_dataset(tmp_path)
    with pytest.raises(UserError, match="cannot train a tokenizer of --vocab-size 8 on .* texts: Vocabulary size is "
                       "smaller than required_chars"):
        job.run(["--features", raw.train_features, "--labels", raw.train_labels, "--output", str(tmp_path / "out"),
                 "--vocab-size", "8", *BEAM])
    assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_command_line_error_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "beam_jobs.taxonomy_to_tfrecords", "--features", "x.features",
                             "--labels", "x.labels", "--output", str(tmp_path), "--seed", "-1"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: --seed must be in [0, 4294967295], got -1"


# ------------------------------------------------------------------------------ composite transforms


def test_read_products_joins_decides_test_files_and_sends_faults_to_dead_letters(tmp_path):
    raw = Raw(tmp_path)
    path = ("Food", "Tea", "Bottled", "Sosro")
    train = raw.write("a.features", [(_features(1, "tea"), None), (_features(2, "tea"), None), ("{", None)])
    # A UTF-8 byte order mark (as some editors write) is not part of the first line.
    labels = raw.write("a.labels", [(b"\xef\xbb\xbf" + _label(1, path).encode(), None), (_label(9, path), None)])
    test = raw.write("b.features", [(None, None), (_features(5, "new"), None)])
    p = BeamTestPipeline(options=PipelineOptions(BEAM))
    files = p | beam.Create([job.InputFile(job.FEATURES, 0, train), job.InputFile(job.LABELS, 0, labels),
                             job.InputFile(job.FEATURES, 1, test)])
    labelled, tests, rejected, counts = files | job.ReadProducts()
    assert_that(labelled, equal_to([job.Product(1, "tea", "retailer_1", 1.25, path)]), label="labelled")
    assert_that(tests, equal_to([job.Product(5, "new", "retailer_1", 6.25, None)]), label="test")
    assert_that(rejected | beam.Map(lambda r: (os.path.basename(r["file"]), r["offset"], r["reason"])), equal_to([
        ("a.features", 2, "features_without_label"), ("a.features", 3, "bad_json"),
        ("a.labels", 2, "label_without_features")]), label="rejected")
    assert_that(counts | beam.Map(lambda c: (c["kind"], c["index"], c["lines"])),
                equal_to([("features", 0, 3), ("labels", 0, 2), ("features", 1, 1)]), label="counts")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(job.NAMESPACE))["counters"]}
    assert (counters["features_lines"], counters["label_lines"]) == (4, 2)
