import csv
import io
import json
import os
import re
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from beam_jobs import melanoma_images as mi
from beam_jobs import melanoma_to_tfrecords as job
from tfrecords import UserError
from tfrecords import melanoma_image as kind
from tfrecords.manifest import REJECTED, read_classes, read_manifest, shard_paths
from yt8m_keras.competitions.melanoma import sample

BEAM = ["--runner=FnApiRunner"]
IMAGE_SIZE = 48


def _pipeline():
    return BeamTestPipeline(options=PipelineOptions(BEAM))


def _args(raw, output, *extra):
    return ["--csv", raw["train_csv"], "--images", raw["train_images"], "--csv", raw["test_csv"],
            "--images", raw["test_images"], "--isic2019", raw["isic2019"], "--output", output,
            "--image-size", str(IMAGE_SIZE), *extra, *BEAM]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return sample.write_sample(str(tmp_path_factory.mktemp("melanoma_raw")), images=300, seed=0)


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("melanoma_data"))
    return out, job.run(_args(raw, out, "--overwrite"))


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _records(out, manifest, split):
    """name -> (shard file, parsed record with numpy values) of every record of `split`."""
    records = {}
    for path in shard_paths(out, manifest, split):
        for serialized in tf.data.TFRecordDataset(path):
            record = {k: v.numpy() for k, v in kind.parse(serialized).items()}
            records[record[kind.IMAGE_NAME].decode()] = (os.path.basename(path), record)
    return records


def test_manifest_layout_and_counts(raw, converted):
    out, manifest = converted
    assert manifest == read_manifest(out, kind.KIND, kind.SCHEMA_VERSION)
    assert manifest["input_records"] == 300 + 75 + 150 and manifest["rejected"] == 0 and manifest["unlisted"] == 0
    assert manifest["input_records"] == sum(s["records"] for s in manifest["splits"].values()) + manifest["rejected"]
    assert (manifest["num_classes"], manifest["folds"], manifest["shards_per_fold"], manifest["image_size"]) == (
        9, 5, 3, IMAGE_SIZE)
    assert manifest["duplicates"] == manifest["splits"]["duplicate"]["records"] == 12
    assert manifest["splits"]["train"]["folds"] == [i // 3 for i in range(15)]
    assert manifest["splits"]["test"]["records"] == 75
    assert [i["rows"] for i in manifest["inputs"]] == [300, 75, 150]
    assert manifest["command"].startswith("python -m beam_jobs.melanoma_to_tfrecords --csv ")
    assert [(c["class_index"], c["category_id"], c["name"]) for c in read_classes(out)] == [
        (i, i, name) for i, name in enumerate(kind.CLASSES)]
    for column, values in mi.VOCABULARIES.items():
        assert _csv(os.path.join(out, column + ".csv")) == [{"code": str(i), "value": v} for i, v in enumerate(values)]
    assert open(os.path.join(out, REJECTED)).read() == ""
    assert not os.path.exists(os.path.join(out, "_tmp"))


def test_shards_are_named_as_deotte_and_match_train_csv(converted):
    out, manifest = converted
    rows = {r["image_name"]: r for r in _csv(os.path.join(out, job.TRAIN_CSV))}
    assert list(next(iter(rows.values()))) == list(job.TRAIN_CSV_COLUMNS)
    for split in ("train", "test", "duplicate"):
        records = _records(out, manifest, split)
        for i, name in enumerate(manifest["splits"][split]["shards"]):
            match = re.fullmatch(r"(train|test|duplicate)(\d{2})-(\d+)\.tfrec", name)
            assert match and match[1] == split and int(match[2]) == i
            in_shard = sorted(n for n, (shard, _) in records.items() if shard == name)
            assert int(match[3]) == len(in_shard)
            names = [kind.parse(r)[kind.IMAGE_NAME].numpy().decode()
                     for r in tf.data.TFRecordDataset(os.path.join(out, name))]
            assert names == in_shard  # sorted within the shard
        for name, (shard, record) in records.items():
            if split == "test":
                assert name not in rows and record[kind.TARGET] == -1 and record[kind.FOLD] == -1
                continue
            row = rows[name]
            tfrecord = int(re.fullmatch(r"\D+(\d{2})-\d+\.tfrec", shard)[1]) if split == "train" else -1
            assert int(row["tfrecord"]) == tfrecord and int(row["fold"]) == record[kind.FOLD]
            assert (int(row["width"]), int(row["height"])) == (record[kind.WIDTH], record[kind.HEIGHT])
            assert row["source"] == ("2020" if record[kind.SOURCE] == kind.SOURCE_2020 else "2019")
            assert (row["duplicate_of"] != "") == (split == "duplicate")
    assert len(rows) == manifest["splits"]["train"]["records"] + manifest["splits"]["duplicate"]["records"]


def test_records_carry_the_csv_values_as_codes(raw, converted):
    out, manifest = converted
    train_rows = {r["image_name"]: r for r in _csv(raw["train_csv"])}
    test_rows = {r["image_name"]: r for r in _csv(raw["test_csv"])}
    truth = {r["image"]: r for r in _csv(raw["isic2019_ground_truth"])}
    metadata = {r["image"]: r for r in _csv(raw["isic2019_metadata"])}
    patients = sorted({r["patient_id"] for r in [*train_rows.values(), *test_rows.values()]})
    per_patient = {}
    for r in [*train_rows.values(), *test_rows.values()]:
        per_patient[r["patient_id"]] = per_patient.get(r["patient_id"], 0) + 1
    records = {}
    for split in manifest["splits"]:
        records.update({n: r for n, (_, r) in _records(out, manifest, split).items()})
    assert len(records) == 525

    def code(values, value):
        return values.index(value.lower()) if value else -1

    for name, record in records.items():
        image = tf.io.decode_jpeg(record[kind.IMAGE]).numpy()
        assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        if name in truth:
            column = next(c for c in mi.GROUND_TRUTH_COLUMNS[1:] if truth[name][c] == "1.0")
            meta = metadata[name]
            assert record[kind.SOURCE] == kind.SOURCE_2019 and record[kind.PATIENT_ID] == -1
            assert record[kind.PATIENT_IMAGES] == 1
            assert record[kind.CLASS_INDEX] == kind.class_of(column, kind.SOURCE_2019)
            assert record[kind.TARGET] == int(column == "MEL")
            assert record[kind.DIAGNOSIS] == mi.DIAGNOSES.index(kind.DIAGNOSIS_2019[column])
            assert record[kind.SEX] == code(kind.SEXES, meta["sex"])
            assert record[kind.SITE] == code(kind.SITES, mi.site_value(meta["anatom_site_general"]))
            assert record[kind.AGE] == (int(float(meta["age_approx"])) if meta["age_approx"] else -1)
            path = os.path.join(raw["isic2019_images"], name + ".jpg")
        else:
            row = train_rows.get(name) or test_rows[name]
            assert record[kind.SOURCE] == kind.SOURCE_2020
            assert record[kind.PATIENT_ID] == patients.index(row["patient_id"])
            assert record[kind.PATIENT_IMAGES] == per_patient[row["patient_id"]]
            assert record[kind.SEX] == code(kind.SEXES, row["sex"])
            assert record[kind.SITE] == code(kind.SITES, row["anatom_site_general_challenge"])
            assert record[kind.AGE] == (int(float(row["age_approx"])) if row["age_approx"] else -1)
            if name in train_rows:
                assert record[kind.TARGET] == int(row["target"])
                assert record[kind.CLASS_INDEX] == kind.class_of(row["diagnosis"])
                assert record[kind.DIAGNOSIS] == mi.DIAGNOSES.index(row["diagnosis"])
                path = os.path.join(raw["train_images"], name + ".jpg")
            else:
                assert record[kind.TARGET] == record[kind.DIAGNOSIS] == record[kind.CLASS_INDEX] == -1
                path = os.path.join(raw["test_images"], name + ".jpg")
        assert record[kind.FILE_SIZE] == os.path.getsize(path)
        with Image.open(path) as original:
            assert (record[kind.WIDTH], record[kind.HEIGHT]) == original.size


def test_folds_keep_patients_whole_and_balance_melanoma_and_size(converted):
    out, manifest = converted
    rows = [r for r in _csv(os.path.join(out, job.TRAIN_CSV)) if r["fold"] != "-1"]
    assert all(int(r["fold"]) == int(r["tfrecord"]) // 3 for r in rows)
    folds = {}
    for row in rows:
        if row["patient_id"]:
            folds.setdefault(row["patient_id"], set()).add(row["fold"])
    assert all(len(f) == 1 for f in folds.values())
    rate = np.mean([r["target"] == "1" for r in rows])
    assert 0.12 < rate < 0.28
    lines = []
    for fold in range(5):
        mine = [r for r in rows if r["fold"] == str(fold)]
        fold_rate = np.mean([r["target"] == "1" for r in mine])
        lines.append(f"fold {fold}: {len(mine)} images, melanoma {fold_rate:.3f}")
        assert abs(fold_rate - rate) <= 0.02, lines
        assert abs(len(mine) / (len(rows) / 5) - 1) <= 0.10, lines
    print("\n".join(lines))


def test_planted_duplicates_are_flagged_and_nothing_else(raw, converted):
    out, manifest = converted
    rows = {r["image_name"]: r for r in _csv(os.path.join(out, job.TRAIN_CSV))}
    planted = _csv(raw["planted_duplicates"])
    flagged = {n for n, r in rows.items() if r["duplicate_of"]}
    assert len(flagged) == len(planted) == 12
    for pair in planted:
        original, copy = rows[pair["original"]], rows[pair["copy"]]
        # One of the two is kept (2020 before 2019, then the smaller name), the other points to it.
        kept, flagged_one = sorted((original, copy), key=lambda r: (r["source"] != "2020", r["image_name"]))
        assert kept["duplicate_of"] == "" and kept["tfrecord"] != "-1"
        assert flagged_one["duplicate_of"] == kept["image_name"]
        assert flagged_one["tfrecord"] == flagged_one["fold"] == "-1"
    assert flagged == {r["image_name"] for r in rows.values() if r["tfrecord"] == "-1"}


def test_two_runs_give_the_same_bytes(raw, converted, tmp_path):
    out, manifest = converted
    # In parallel this time: the order records arrive in must not matter.
    again = job.run(_args(raw, str(tmp_path), "--direct_num_workers=2", "--direct_running_mode=multi_threading"))
    assert again["splits"] == manifest["splits"]
    for name in sorted(os.listdir(out)):
        if name != "manifest.json":
            assert open(os.path.join(out, name), "rb").read() == open(tmp_path / name, "rb").read(), name


# ------------------------------------------------------------------------------ dead letters


def _jpeg(seed, width=90, height=70):
    buffer = io.BytesIO()
    Image.fromarray(sample.render_lesion(kind.CLASSES[seed % 9], width, height, np.random.default_rng(seed))).save(
        buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _broken_dataset(tmp_path):
    """Good rows around one row of every kind of fault, 2020 and 2019."""
    images, test_images = tmp_path / "train", tmp_path / "test"
    images.mkdir(parents=True)
    test_images.mkdir()
    lines = [",".join(mi.TRAIN_COLUMNS)]
    for i in range(8):
        name = f"ISIC_{i:07d}"
        (images / f"{name}.jpg").write_bytes(_jpeg(i))
        lines.append(f"{name},IP_{i % 4},male,45.0,torso,{'melanoma,malignant,1' if i % 3 == 0 else 'nevus,benign,0'}")
    (images / "ISIC_0000100.jpg").write_bytes(_jpeg(100)[:400])                   # truncated
    (images / "ISIC_0000101.jpg").write_bytes(b"not a picture at all")          # not an image
    (images / "ISIC_0000109.jpg").write_bytes(_jpeg(109))                       # no row names it
    lines += ["ISIC_0000100,IP_0,male,45.0,torso,nevus,benign,0",
              "ISIC_0000101,IP_0,male,45.0,torso,nevus,benign,0",
              "ISIC_0000102,IP_0,male,45.0,torso,nevus,benign,0",                # no file
              "ISIC_0000001,IP_0,male,45.0,torso,nevus,benign,0",                # repeated name
              "ISIC_0000103,IP_0,male,45.0,torso,nevus,benign,5",                # target
              "ISIC_0000104,IP_0,male,forty,torso,nevus,benign,0",               # age
              "ISIC_0000105,IP_0,male,45.0,torso,mole,benign,0"]                 # diagnosis
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (test_images / "ISIC_0000200.jpg").write_bytes(_jpeg(200))
    (tmp_path / "test.csv").write_text(",".join(mi.TEST_COLUMNS) + "\nISIC_0000200,IP_9,female,,\n")
    directory = tmp_path / "isic2019"
    (directory / mi.INPUT_2019).mkdir(parents=True)
    truth = [",".join(mi.GROUND_TRUTH_COLUMNS)]
    for name, marked in (("ISIC_0000300", ["BCC"]), ("ISIC_0000301", []), ("ISIC_0000302", ["MEL", "NV"]),
                         ("ISIC_0000002", ["NV"])):
        truth.append(",".join([name] + ["1.0" if c in marked else "0.0" for c in mi.GROUND_TRUTH_COLUMNS[1:]]))
        (directory / mi.INPUT_2019 / f"{name}.jpg").write_bytes(_jpeg(int(name[-3:]) + 7))
    (directory / mi.GROUND_TRUTH_2019).write_text("\n".join(truth) + "\n")
    (directory / mi.METADATA_2019).write_text("image,age_approx,anatom_site_general,lesion_id,sex\n"
                                              "ISIC_0000300,50.0,posterior torso,,female\n")
    return tmp_path, directory


def test_every_fault_is_one_dead_letter_and_the_rest_converts(tmp_path):
    raw, isic2019 = _broken_dataset(tmp_path / "raw")
    out = str(tmp_path / "out")
    manifest = job.run(["--csv", str(raw / "train.csv"), "--images", str(raw / "train"), "--csv", str(raw / "test.csv"),
                        "--images", str(raw / "test"), "--isic2019", str(isic2019), "--output", out,
                        "--image-size", "32", "--folds", "2", "--shards-per-fold", "2", *BEAM])
    letters = [json.loads(line) for line in open(os.path.join(out, REJECTED))]
    train_csv, truth_csv = str(raw / "train.csv"), str(isic2019 / mi.GROUND_TRUTH_2019)
    found = {(r["file"], r["offset"], r["image_name"]): r["reason"] for r in letters}
    assert list(found) == sorted(found)  # sorted by file, then line
    assert set(found) == {(train_csv, 10, "ISIC_0000100"), (train_csv, 11, "ISIC_0000101"),
                          (train_csv, 12, "ISIC_0000102"), (train_csv, 13, "ISIC_0000001"),
                          (train_csv, 14, "ISIC_0000103"), (train_csv, 15, "ISIC_0000104"),
                          (train_csv, 16, "ISIC_0000105"), (truth_csv, 3, "ISIC_0000301"),
                          (truth_csv, 4, "ISIC_0000302"), (truth_csv, 5, "ISIC_0000002")}
    assert found[(train_csv, 10, "ISIC_0000100")].startswith("image does not decode: OSError")
    assert found[(train_csv, 11, "ISIC_0000101")].startswith("image does not decode: UnidentifiedImageError")
    assert found[(train_csv, 12, "ISIC_0000102")] == f"image file not found: {raw / 'train' / 'ISIC_0000102.jpg'}"
    assert found[(train_csv, 13, "ISIC_0000001")] == f"image_name ISIC_0000001 repeats {train_csv}:3"
    assert found[(train_csv, 14, "ISIC_0000103")] == "target '5' is not 0 or 1"
    assert found[(train_csv, 15, "ISIC_0000104")] == "age_approx 'forty' is not a number"
    assert found[(train_csv, 16, "ISIC_0000105")].startswith("unknown diagnosis 'mole'")
    assert found[(truth_csv, 3, "ISIC_0000301")] == "no ground-truth class is 1.0"
    assert found[(truth_csv, 4, "ISIC_0000302")] == "several ground-truth classes are 1.0 (MEL, NV)"
    assert found[(truth_csv, 5, "ISIC_0000002")] == f"image_name ISIC_0000002 repeats {train_csv}:4"
    assert manifest["input_records"] == 15 + 1 + 4 and manifest["rejected"] == 10 and manifest["unlisted"] == 1
    assert manifest["splits"]["train"]["records"] == 9 and manifest["splits"]["test"]["records"] == 1
    assert manifest["input_records"] == sum(s["records"] for s in manifest["splits"].values()) + manifest["rejected"]
    assert len(manifest["splits"]["train"]["shards"]) == 4  # some may be empty: shard i is still fold i // 2
    rows = _csv(os.path.join(out, job.TRAIN_CSV))
    assert sorted(r["image_name"] for r in rows) == [f"ISIC_{i:07d}" for i in range(8)] + ["ISIC_0000300"]
    bcc = next(r for r in rows if r["image_name"] == "ISIC_0000300")
    assert (bcc["diagnosis"], bcc["target"], bcc["source"], bcc["anatom_site_general_challenge"]) == (
        "BCC", "0", "2019", "posterior torso")


@pytest.mark.parametrize("change,message", [
    (lambda a: a[:7] + [a[5]] + a[8:], "--images .*test.csv is not a directory"),
    (lambda a: a[:4] + a[6:], "come in pairs: got 1 --csv and 2 --images"),
    (lambda a: a + ["--folds", "0"], r"--folds must be in \[1, 100\], got 0"),
    (lambda a: a + ["--image_size", "64"], "unrecognized arguments: --image_size 64"),
])
def test_user_errors(tmp_path, change, message):
    raw, _ = _broken_dataset(tmp_path / "raw")
    args = ["--csv", str(raw / "train.csv"), "--images", str(raw / "train"), "--csv", str(raw / "test.csv"),
            "--images", str(raw / "test"), "--output", str(tmp_path / "out"), *BEAM]
    with pytest.raises(UserError, match=message):
        job.run(change(args))
    assert not os.path.exists(tmp_path / "out")


def test_missing_columns_and_outputs_that_would_touch_inputs_are_refused(tmp_path):
    raw, isic2019 = _broken_dataset(tmp_path / "raw")
    (tmp_path / "bad.csv").write_text("image_name,patient_id,target\nISIC_0000001,IP_1,0\n")
    with pytest.raises(UserError, match="bad.csv lacks the column.*sex"):
        job.run(["--csv", str(tmp_path / "bad.csv"), "--images", str(raw / "train"), "--output", str(tmp_path / "o")])
    with pytest.raises(UserError, match="inside the output directory"):
        job.run(["--csv", str(raw / "train.csv"), "--images", str(raw / "train"), "--output", str(raw), "--overwrite"])
    (isic2019 / mi.METADATA_2019).unlink()
    with pytest.raises(UserError, match="input not found: .*ISIC_2019_Training_Metadata.csv"):
        job.run(["--csv", str(raw / "train.csv"), "--images", str(raw / "train"), "--isic2019", str(isic2019),
                 "--output", str(tmp_path / "o")])
    assert not os.path.exists(tmp_path / "o")  # refused before anything was written


def test_command_line_error_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "beam_jobs.melanoma_to_tfrecords", "--csv", "x.csv",
                             "--images", "y", "--output", str(tmp_path), "--quality", "101"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: --quality must be in [1, 100], got 101"


# ----------------------------------------------------------------- composite transforms


def _row(name, path, reason=None, split="train", target=0, patient=0):
    return {"file": "train.csv", "offset": 2, "image_name": name, "image_path": path, "split": split,
            "source": kind.SOURCE_2020, "reason": reason, "patient_id": patient, "sex": 0, "age_approx": 40,
            "site": 4, "diagnosis": 11, "target": target, "class_index": kind.CLASSES.index("nevus")}


def test_convert_images_counts_rows_and_sends_faults_to_dead_letters(tmp_path):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    good.write_bytes(_jpeg(1))
    bad.write_bytes(b"GIF89a")
    rows = [_row("ISIC_1", str(good)), _row("ISIC_2", str(bad)), _row("ISIC_3", str(tmp_path / "gone.jpg")),
            _row("ISIC_4", None, reason="target '7' is not 0 or 1")]
    p = _pipeline()
    converted, rejected = p | beam.Create(rows) | job.ConvertImages(image_size=32, quality=90)
    assert_that(converted | beam.Map(lambda c: (c.row["image_name"], c.image.width, c.file_size)),
                equal_to([("ISIC_1", 90, len(good.read_bytes()))]), label="converted")
    assert_that(rejected | beam.Map(lambda r: (r["image_name"], r["reason"].split(":")[0])), equal_to([
        ("ISIC_2", "image does not decode"), ("ISIC_3", "cannot read image " + str(tmp_path / "gone.jpg")),
        ("ISIC_4", "target '7' is not 0 or 1")]), label="rejected")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(job.NAMESPACE))["counters"]}
    assert counters["rows_read"] == 4


def test_plan_and_write_shards_put_each_image_in_its_place(tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(_jpeg(i + 20))
        paths.append(str(path))
    rows = [_row(f"ISIC_{i}", paths[i], patient=i // 2, target=int(i == 0)) for i in range(4)]
    rows += [_row("ISIC_4", paths[0], patient=2), _row("ISIC_5", paths[5], split="test", target=-1, patient=9)]
    out = str(tmp_path / "out")
    p = _pipeline()
    converted, _ = p | beam.Create(rows) | job.ConvertImages(image_size=32, quality=90)
    plan = converted | job.PlanDataset(folds=2, shards_per_fold=1, seed=0)
    reports, listing = converted | job.WriteShards(out, plan)
    assert_that(reports | beam.Map(lambda r: (r["split"], r["records"])) | beam.combiners.Count.PerKey(),
                equal_to([("train", 2), ("test", 1), ("duplicate", 1)]), label="reports")
    assert_that(listing | beam.Map(lambda r: (r["image_name"], r["split"], r["duplicate_of"])) | beam.Filter(
        lambda r: r[1] != "train"), equal_to([("ISIC_4", "duplicate", "ISIC_0"), ("ISIC_5", "test", "")]),
        label="listing")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(job.NAMESPACE))["counters"]}
    assert counters["written"] == 6 and counters["duplicates"] == 1
    written = sorted(os.listdir(os.path.join(out, "_tmp")))
    assert written == ["duplicate-00000.tfrec", "test-00000.tfrec", "train-00000.tfrec", "train-00001.tfrec"]
    for name in written[2:]:
        records = [kind.parse(r) for r in tf.data.TFRecordDataset(os.path.join(out, "_tmp", name))]
        folds = {int(r[kind.FOLD]) for r in records}
        patients = {int(r[kind.PATIENT_ID]) for r in records}
        assert folds == {int(name[-7])} and len(records) == 2 * len(patients)
