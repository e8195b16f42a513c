import csv
import io
import json
import math
import os
import zipfile
from collections import Counter

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from beam_jobs import avito_to_tfrecords as job
from tfrecords import UserError
from tfrecords import avito_ad as kind
from tfrecords.manifest import read_manifest, shard_paths

BEAM = ["--runner=FnApiRunner"]
FOLDS = 3
MIN_COUNT = 3
VOCAB_SIZE = 200
KAGGLE_FOLDER = "data/competition_files/train_jpg/"
REGIONS = ["Свердловская область", "Самарская область", "Ростовская область", "Татарстан"]
RARE_REGION = "Чукотский АО"  # one ad: below --min-count
CITIES = ["Екатеринбург", "Самара", "Ростов-на-Дону", "Казань", "Тольятти"]
PARENTS = ["Личные вещи", "Для дома и дачи", "Бытовая электроника"]
CATEGORIES = ["Товары для детей и игрушки", "Мебель и интерьер", "Телефоны", "Детская одежда и обувь"]
PARAM_1 = ["Постельные принадлежности", "", "Другое", "iPhone", "Для девочек"]
DESCRIPTIONS = [
    'Кокон для сна малыша,пользовались меньше месяца.цвет серый',
    'Стол "Лофт", 120x80, дуб\nсостояние "как новый"',
    '',
    'Диван, кресло, 2 пуфа.\n\nСамовывоз!!! 😀 «торг»',
    '  пробелы по краям  ',
    'Кавычки "" внутри, а ещё,запятые\r\nи перевод строки',
]
# user -> ads in train.csv: a seller with many ads, some with a few, many with one.
USERS = {"u_big": 7, "u_mid": 4, "u_three": 3, "u_two": 2, **{f"u_one_{i}": 1 for i in range(10)}}


def _jpeg(seed: int, size=(24, 16)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), seed, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _write_csv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _row(item_id, user_id, i, image="", title=None, description=None, price=None, seq=None, date=None,
         target=None, param_3=""):
    """A CSV row in Kaggle's columns (target None: a test row)."""
    values = [item_id, user_id, RARE_REGION if i == 13 else REGIONS[i % 4], CITIES[i % 5], PARENTS[i % 3], CATEGORIES[i % 4],
              PARAM_1[i % 5], "Кроватки" if i % 6 == 0 else "", param_3,
              title if title is not None else f"Объявление №{i}, «товар»",
              description if description is not None else DESCRIPTIONS[i % len(DESCRIPTIONS)],
              price if price is not None else ["400", "", "1500.0", "0", "1e3", "99999999"][i % 6],
              seq if seq is not None else str(i * 3 + 1),
              date if date is not None else f"2017-03-{15 + i % 14:02d}",
              ["Private", "Company", "Shop"][i % 3], image, f"{1000 + i % 4}.0" if image else ""]
    return values if target is None else [*values, target]


class Raw:
    """Hand-written Kaggle inputs and what the conversion must make of them."""

    def __init__(self, directory):
        self.dir = directory
        self.pictures = {}  # image name -> bytes of a decodable JPEG
        self.statuses = {}  # item_id -> expected image status
        self.rejects = []  # (file, line, csv_row, reason)
        self.extra_rows = []  # rows of the hand-faulted files that are written (for pandas)
        self._picture_seed = 0

    def picture(self, item_id, status):
        """An image name for the ad, and what its file will be."""
        self.statuses[item_id] = status
        if status == kind.NO_IMAGE:
            return ""
        self._picture_seed += 1
        name = f"{self._picture_seed:04x}c7e016e03247a3bf2d13348fe959fe6f436c1caf64c"
        if status == kind.IMAGE_OK:
            self.pictures[name] = _jpeg(self._picture_seed)
        return name


def _raw_dataset(directory) -> Raw:
    raw = Raw(directory)
    zip_members, folder_files = {}, {}

    train, i = [], 0
    for user, count in USERS.items():
        for _ in range(count):
            item_id = f"tr{i:03d}"
            status = [kind.NO_IMAGE, kind.IMAGE_OK, kind.IMAGE_OK][i % 3]
            status = {5: kind.IMAGE_MISSING, 8: kind.IMAGE_BROKEN, 11: kind.IMAGE_BROKEN}.get(i, status)
            image = raw.picture(item_id, status)
            if status == kind.IMAGE_OK:
                zip_members[KAGGLE_FOLDER + image + ".jpg"] = raw.pictures[image]
            elif status == kind.IMAGE_BROKEN:  # a truncated JPEG, and a PNG named .jpg
                zip_members[KAGGLE_FOLDER + image + ".jpg"] = _jpeg(99)[:200] if i == 8 else _png(i)
            train.append(_row(item_id, user, i, image, date={4: "", 7: "28.03.2017"}.get(i),
                              param_3="двух\nстрочный" if i % 7 == 1 else "",
                              target=["0.12789", "0", "1", "0.5", " 0.25"][i % 5]))
            i += 1
    raw.train = _write_csv(directory / "train.csv", job.TRAIN_COLUMNS, train)
    raw.train_items = [row[0] for row in train]
    raw.train_lines = [2 + sum(_write_line(row).count("\n") for row in train[:k]) for k in range(len(train))]

    test = []
    for j in range(8):
        item_id = f"te{j:03d}"
        status = {2: kind.IMAGE_MISSING, 5: kind.IMAGE_BROKEN}.get(j, [kind.IMAGE_OK, kind.NO_IMAGE][j % 2])
        image = raw.picture(item_id, status)
        if status == kind.IMAGE_OK:
            folder_files[image + ".jpg"] = raw.pictures[image]
        elif status == kind.IMAGE_BROKEN:
            folder_files[image + ".jpg"] = b"\xff\xd8\xff not really a JPEG"
        test.append(_row(item_id, f"u_test_{j % 3}", 100 + j, image))
    raw.test = _write_csv(directory / "test.csv", job.TEST_COLUMNS, test)
    raw.test_items = [row[0] for row in test]

    raw.zip = str(directory / "train_jpg.zip")
    with zipfile.ZipFile(raw.zip, "w") as archive:
        archive.writestr("data/competition_files/", b"")
        for name, data in zip_members.items():
            archive.writestr(name, data)
    raw.folder = directory / "test_jpg"
    raw.folder.mkdir()
    for name, data in folder_files.items():
        (raw.folder / name).write_bytes(data)
    raw.folder = str(raw.folder)

    # A training file with every fault: (raw CSV text as bytes, reason or None); a None text is a blank line.
    def line(values):
        return _write_line(values).encode("utf-8")

    good = [_row("bt1", "u_big", 50, target="0.3"), _row("bt3", "u_extra", 51, target="0.7"),
            _row("bt4", "u_extra", 52, description="две\nстроки", target="1.0")]
    bad_train = [(line(good[0]), None),
                 (b"bt2,u9,\xd0\xa0\xd0\xb5\xd0\xb3\xd0\xb8\xd0\xbe\xd0\xbd\n", "wrong_field_count"),
                 (line(_row("bt5", "u9", 53, price="abc", target="0.1")), "bad_price"),
                 (line(_row("bt6", "u9", 54, price="-5", target="0.1")), "bad_price"),
                 (line(_row("bt7", "u9", 55, seq="x1", target="0.1")), "bad_item_seq_number"),
                 (line(_row("", "u9", 56, target="0.1")), "empty_item_id"),
                 (line(_row("bt8", "", 57, target="0.1")), "empty_user_id"),
                 (line(_row("bt9", "u9", 58, target="1.5")), "bad_target"),
                 (line(_row("bt10", "u9", 59, target="")), "bad_target"),
                 (line(_row("bt11", "u9", 60, target="nan")), "bad_target"),
                 (line(_row("tr000", "u9", 61, target="0.1")), "duplicate_item_id"),
                 (line(_row("bt12", "u9", 62, target="0.1")).replace("Объявление".encode(), b"\xff\xfe"), "bad_utf8"),
                 (line(_row("bt13", "u9", 63, description="x" * 140_000, target="0.1")), "bad_csv"),
                 (line(good[1]), None),
                 (None, None),
                 (line(good[2]), None),
                 (line(_row("bt1", "u_other", 64, target="0.9")), "duplicate_item_id")]
    raw.bad_train = str(directory / "bad_train.csv")
    _write_raw(raw, raw.bad_train, ",".join(job.TRAIN_COLUMNS), bad_train)
    good_test = _row("bx1", "u_test_0", 70)
    raw.bad_test = str(directory / "bad_test.csv")
    _write_raw(raw, raw.bad_test, ",".join(job.TEST_COLUMNS),
               [(line(good_test), None), (line(_row("te003", "u_test_9", 71)), "duplicate_item_id"),
                (line(_row("tr004", "u_test_9", 72)), "duplicate_item_id")])
    raw.extra_rows = {"train": [g for g in good], "test": [good_test]}
    for item_id in ("bt1", "bt3", "bt4", "bx1"):
        raw.statuses[item_id] = kind.NO_IMAGE
    return raw


def _write_line(values) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(values)
    return text.getvalue()


def _write_raw(raw, path, header, lines):
    """Writes lines, recording each expected dead letter's (file, first line, csv_row, reason)."""
    with open(path, "wb") as f:
        f.write(header.encode() + b"\n")
        number, csv_row = 2, 0
        for content, reason in lines:
            if content is None:
                f.write(b"\n")
                number += 1
                continue
            f.write(content)
            if reason:
                raw.rejects.append((path, number, csv_row, reason))
            number += content.count(b"\n")
            csv_row += 1


def _args(raw, output, *extra):
    # Test data first on the command line: the rows still put train first.
    return ["--csv", raw.test, "--images", raw.folder, "--csv", raw.train, "--images", raw.zip,
            "--csv", raw.bad_test, "--images", raw.folder, "--csv", raw.bad_train, "--images", raw.zip,
            "--output", output, "--folds", str(FOLDS), "--min-count", str(MIN_COUNT), "--vocab-size",
            str(VOCAB_SIZE), "--num-shards", "2", *extra, *BEAM]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return _raw_dataset(tmp_path_factory.mktemp("avito_raw"))


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("avito_data"))
    return out, job.run(_args(raw, out, "--overwrite"))


def _records(out, manifest, split):
    records = []
    for path in shard_paths(out, manifest, split):
        for serialized in tf.data.TFRecordDataset(path):
            parsed = {k: v.numpy() for k, v in kind.parse(serialized).items()}
            records.append({k: v.decode() if isinstance(v, bytes) and k != kind.IMAGE else v
                            for k, v in parsed.items()})
    return records


@pytest.fixture(scope="module")
def records(converted):
    out, manifest = converted
    return _records(out, manifest, "train") + _records(out, manifest, "test")


def _pandas(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _written_frame(raw) -> pd.DataFrame:
    """Every written ad as pandas reads it, in row order."""
    return pd.concat([_pandas(raw.train), pd.DataFrame(raw.extra_rows["train"], columns=job.TRAIN_COLUMNS),
                      _pandas(raw.test), pd.DataFrame(raw.extra_rows["test"], columns=job.TEST_COLUMNS)],
                     ignore_index=True)


def _float(text):
    return float(text) if text.strip() else math.nan


# ------------------------------------------------------------------------------ a normal run


def test_manifest_counts_and_output_layout(raw, converted):
    out, manifest = converted
    assert manifest == read_manifest(out, kind.KIND, kind.SCHEMA_VERSION)
    n_train, n_test = len(raw.train_items) + 3, len(raw.test_items) + 1
    assert {s: i["records"] for s, i in manifest["splits"].items()} == {"train": n_train, "test": n_test}
    assert [len(i["shards"]) for i in manifest["splits"].values()] == [2, 2]
    assert manifest["input_records"] == n_train + n_test + len(raw.rejects) == n_train + n_test + manifest["rejected"]
    assert manifest["rejected_by_reason"] == dict(sorted(Counter(r[3] for r in raw.rejects).items()))
    assert [(i["path"], i["split"], i["records"]) for i in manifest["inputs"]] == [
        (raw.train, "train", len(raw.train_items)), (raw.bad_train, "train", 17 - 1),
        (raw.test, "test", len(raw.test_items)), (raw.bad_test, "test", 3)]
    expected_statuses = Counter(job.STATUS_NAMES[s] for s in raw.statuses.values())
    assert {name: manifest[name] for name in job.STATUS_NAMES.values()} == {
        name: expected_statuses[name] for name in job.STATUS_NAMES.values()}
    assert (manifest["folds"], manifest["seed"], manifest["min_count"], manifest["weekday_unknown"]) == (
        FOLDS, 0, MIN_COUNT, 2)
    assert 0 < manifest["vocab_size"] <= VOCAB_SIZE
    assert manifest["command"].startswith("python -m beam_jobs.avito_to_tfrecords --csv ")
    assert sorted(os.listdir(out)) == sorted([
        "manifest.json", "rejected.jsonl", "rejected_images.jsonl", "stats.json", "folds.csv", "vocabulary.spm",
        *(f"vocab_{c}.txt" for c in kind.CATEGORICAL), *(n for s in manifest["splits"].values() for n in s["shards"])])


def test_records_equal_what_pandas_reads_row_by_row(raw, records):
    frame = _written_frame(raw)
    assert [r[kind.ROW] for r in records] == list(range(len(frame)))
    weekdays = pd.to_datetime(frame["activation_date"], format="%Y-%m-%d", errors="coerce").dt.weekday
    for record, (index, expected) in zip(records, frame.iterrows()):
        for column in (kind.ITEM_ID, kind.USER_ID, kind.TITLE, kind.DESCRIPTION, *kind.CATEGORICAL):
            assert record[column] == expected[column], (index, column)
        assert record[kind.IMAGE_NAME] == expected["image"]
        for column in kind.NUMBERS:
            np.testing.assert_equal(record[column], np.float32(_float(expected[column])))
        assert record[kind.WEEKDAY] == (-1 if pd.isna(weekdays[index]) else weekdays[index])
        is_train = isinstance(expected[kind.TARGET], str)
        assert record[kind.TARGET] == (np.float32(float(expected[kind.TARGET])) if is_train else -1)
        assert (record[kind.FOLD] >= 0) == is_train
    # The edge cases are in there, as written.
    descriptions = {r[kind.DESCRIPTION] for r in records}
    assert set(DESCRIPTIONS) | {"две\nстроки"} <= descriptions
    assert any(math.isnan(r[kind.PRICE]) for r in records)


def test_pictures_come_from_the_zip_and_the_folder_and_problems_are_flagged(raw, converted, records):
    out, manifest = converted
    for record in records:
        assert record[kind.IMAGE_STATUS] == raw.statuses[record[kind.ITEM_ID]], record[kind.ITEM_ID]
        if record[kind.IMAGE_STATUS] == kind.IMAGE_OK:
            assert record[kind.IMAGE] == raw.pictures[record[kind.IMAGE_NAME]]
            assert tf.io.decode_jpeg(record[kind.IMAGE]).shape == (16, 24, 3)
        else:
            assert record[kind.IMAGE] == b""
    with open(os.path.join(out, job.REJECTED_IMAGES), encoding="utf-8") as f:
        letters = [json.loads(line) for line in f]
    problems = {r[kind.ITEM_ID]: r[kind.IMAGE_STATUS] for r in records
                if r[kind.IMAGE_STATUS] in (kind.IMAGE_MISSING, kind.IMAGE_BROKEN)}
    assert {l["item_id"]: l["reason"] for l in letters} == {
        item: job.STATUS_NAMES[status] for item, status in problems.items()}
    by_item = {l["item_id"]: l for l in letters}
    assert by_item["tr005"]["picture"].startswith(raw.zip + ":") and by_item["tr005"]["offset"] == raw.train_lines[5]
    assert raw.train_lines[5] > 7  # quoted newlines before it
    assert by_item["tr011"]["detail"].startswith("not a JPEG")
    assert by_item["tr008"]["detail"].startswith("the JPEG does not decode")
    assert by_item["te002"]["picture"] == os.path.join(raw.folder, by_item["te002"]["image_name"] + ".jpg")
    assert manifest["image_missing"] == 2 and manifest["image_broken"] == 3


def test_every_bad_row_is_one_dead_letter_where_it_was(raw, converted):
    out, _ = converted
    with open(os.path.join(out, "rejected.jsonl"), encoding="utf-8") as f:
        letters = [json.loads(line) for line in f]
    assert sorted((l["file"], l["offset"], l["csv_row"], l["reason"]) for l in letters) == sorted(raw.rejects)
    assert {l["reason"] for l in letters} == set(job.REASONS)
    duplicate = next(l for l in letters if l["reason"] == "duplicate_item_id" and l["item_id"] == "tr000")
    assert duplicate["detail"] == f"item_id 'tr000' repeats {raw.train}:2"
    assert all(set(l) == {"file", "offset", "csv_row", "reason", "detail", "field", "item_id"} for l in letters)


def test_folds_group_users_balance_ads_and_match_folds_csv(raw, converted, records):
    out, _ = converted
    train = [r for r in records if r[kind.TARGET] >= 0]
    folds_of_user = {}
    for record in train:
        folds_of_user.setdefault(record[kind.USER_ID], set()).add(record[kind.FOLD])
    assert all(len(folds) == 1 for folds in folds_of_user.values())
    sizes = Counter(r[kind.FOLD] for r in train)
    assert sorted(sizes) == list(range(FOLDS)) and max(sizes.values()) - min(sizes.values()) <= 1
    assert all(r[kind.FOLD] == -1 for r in records if r[kind.TARGET] < 0)
    folds_csv = pd.read_csv(os.path.join(out, job.FOLDS_CSV), dtype={"item_id": str})
    assert list(folds_csv.columns) == ["item_id", "fold"]
    assert list(zip(folds_csv["item_id"], folds_csv["fold"])) == [(r[kind.ITEM_ID], r[kind.FOLD]) for r in train]
    counts = list(Counter(r[kind.USER_ID] for r in train).items())
    assert job.assign_folds(counts, FOLDS, seed=0) == {u: f.pop() for u, f in folds_of_user.items()}
    assert job.assign_folds(counts, FOLDS, seed=0) == job.assign_folds(list(reversed(counts)), FOLDS, seed=0)
    assert job.assign_folds(counts, FOLDS, seed=1) != job.assign_folds(counts, FOLDS, seed=0)


def test_vocabularies_and_stats_match_pandas(raw, converted):
    out, manifest = converted
    frame = _written_frame(raw)
    for column in kind.CATEGORICAL:
        counts = frame[column].value_counts()
        expected = sorted(v for v, n in counts.items() if n >= MIN_COUNT and v and "\n" not in v)
        with open(os.path.join(out, f"vocab_{column}.txt"), encoding="utf-8", newline="") as f:
            assert f.read() == "".join(v + "\n" for v in expected), column
        assert manifest["vocab_sizes"][column] == len(expected)
    assert manifest["vocab_sizes"]["param_3"] == 0  # its only value holds a line break
    assert 0 < manifest["vocab_sizes"]["region"] < frame["region"].nunique()  # one region is too rare
    with open(os.path.join(out, job.STATS)) as f:
        stats = json.load(f)
    assert stats["ads"] == len(frame) and stats["weekday_unknown"] == 2
    for column in kind.NUMBERS:
        values = np.log1p(np.array([_float(v) for v in frame[column] if v.strip()]))
        assert stats[column]["count"] == len(values)
        assert stats[column]["log1p_mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert stats[column]["log1p_std"] == pytest.approx(values.std(), rel=1e-12)


def test_the_tokenizer_loads_in_keras_hub_and_round_trips_the_texts(raw, converted):
    import keras_hub

    out, manifest = converted
    with open(os.path.join(out, "vocabulary.spm"), "rb") as f:
        tokenizer = keras_hub.tokenizers.SentencePieceTokenizer(proto=f.read())
    assert tokenizer.vocabulary_size() == manifest["vocab_size"]
    assert [tokenizer.id_to_token(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    for text in ("Объявление №104, «товар»", "Объявление №3, «товар»"):  # a test ad's title, a train ad's
        ids = np.asarray(tokenizer.tokenize(text))
        assert 2 not in ids.tolist(), text  # no unknown piece
        decoded = np.asarray(tokenizer.detokenize(ids)).item()
        assert (decoded.decode() if isinstance(decoded, bytes) else decoded) == text


def test_two_runs_give_the_same_bytes(raw, converted, tmp_path):
    out, manifest = converted
    again = str(tmp_path / "again")
    manifest_again = job.run(_args(raw, again))
    assert {k: v for k, v in manifest_again.items() if k != "command"} == {
        k: v for k, v in manifest.items() if k != "command"}
    for name in sorted(os.listdir(out)):
        if name != "manifest.json":
            with open(os.path.join(out, name), "rb") as a, open(os.path.join(again, name), "rb") as b:
                assert a.read() == b.read(), name


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("change, message", [
    (lambda a, raw: a + ["--csv", raw.no_price], "--csv and --images come in pairs: got 2 --csv and 1 --images"),
    (lambda a, raw: a + ["--folds", "0"], r"--folds must be in \[1, 100\], got 0"),
    (lambda a, raw: a + ["--min-count", "0"], r"--min-count must be in \[1, 1000000000\], got 0"),
    (lambda a, raw: a + ["--vocab-size", "4"], r"--vocab-size must be in \[8, 1000000\], got 4"),
    (lambda a, raw: a + ["--min_count", "3"], "unrecognized arguments: --min_count 3"),
    (lambda a, raw: a + ["--csv", a[1], "--images", a[3]], "--csv given twice"),
    (lambda a, raw: ["--csv", "/nonexistent/train.csv"] + a[2:], "input not found: /nonexistent/train.csv"),
    (lambda a, raw: a[:3] + ["/nonexistent/train_jpg.zip"] + a[4:], "input not found: /nonexistent/train_jpg.zip"),
    (lambda a, raw: a[:3] + ["/nonexistent/folder"] + a[4:], "--images /nonexistent/folder not found"),
    (lambda a, raw: a[:3] + [raw.train] + a[4:], "is neither a folder nor a .zip file"),
    (lambda a, raw: a[:3] + [raw.not_zip] + a[4:], "is not a zip file"),
    (lambda a, raw: ["--csv", raw.no_price] + a[2:], r"lacks the column\(s\) price"),
    (lambda a, raw: ["--csv", raw.empty] + a[2:], "is empty: expected a header"),
])
def test_user_errors(tmp_path, change, message):
    raw = Raw(tmp_path)
    raw.train = _write_csv(tmp_path / "train.csv", job.TRAIN_COLUMNS, [_row("a", "u", 0, target="0.5")])
    raw.no_price = _write_csv(tmp_path / "no_price.csv", [c for c in job.TEST_COLUMNS if c != "price"], [])
    raw.empty = str(tmp_path / "empty.csv")
    open(raw.empty, "w").close()
    raw.not_zip = str(tmp_path / "pictures.zip")
    with open(raw.not_zip, "wb") as f:
        f.write(b"not a zip")
    (tmp_path / "jpg").mkdir()
    args = ["--csv", raw.train, "--images", str(tmp_path / "jpg"), "--output", str(tmp_path / "out"), *BEAM]
    with pytest.raises(UserError, match=message):
        job.run(change(args, raw))
    assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_outputs_that_would_touch_inputs_are_refused(tmp_path):
    train = _write_csv(tmp_path / "train.csv", job.TRAIN_COLUMNS, [_row("a", "u", 0, target="0.5")])
    (tmp_path / "jpg").mkdir()
    with pytest.raises(UserError, match="inside the output directory"):
        job.run(["--csv", train, "--images", str(tmp_path / "jpg"), "--output", str(tmp_path), "--overwrite", *BEAM])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(UserError, match="is not empty"):
        job.run(["--csv", train, "--images", str(tmp_path / "jpg"), "--output", str(tmp_path / "out"), *BEAM])
    assert os.path.exists(train) and os.path.exists(tmp_path / "out" / "old.txt")


# ------------------------------------------------------------------------------ composite transforms


def test_read_drop_duplicates_and_assign_rows(tmp_path):
    first = _write_csv(tmp_path / "a.csv", job.TRAIN_COLUMNS, [
        _row("x1", "u1", 0, target="0.1"), _row("x2", "u1", 1, target="2"), _row("x3", "u2", 2, target="0.3")])
    second = _write_csv(tmp_path / "b.csv", job.TEST_COLUMNS, [
        _row("y1", "u3", 3, description="многострочное\nописание"), _row("x1", "u4", 4), _row("y2", "u3", 5)])
    files = [job.InputFile(0, first, "pics.zip", job.TRAIN, tuple(job.TRAIN_COLUMNS)),
             job.InputFile(1, second, "pics", job.TEST, tuple(job.TEST_COLUMNS))]
    with BeamTestPipeline(options=PipelineOptions(BEAM)) as p:
        ads, rejected, counts = p | beam.Create(files) | job.ReadAds()
        kept, duplicates = ads | job.DropDuplicates()
        numbered, layout = kept | job.AssignRows(files)
        assert_that(numbered | beam.MapTuple(lambda row, ad: (row, ad.item_id, ad.split, ad.images)),
                    equal_to([(0, "x1", "train", "pics.zip"), (1, "x3", "train", "pics.zip"),
                              (2, "y1", "test", "pics"), (3, "y2", "test", "pics")]), label="Rows")
        assert_that((rejected, duplicates) | beam.Flatten() | beam.Map(
            lambda r: (os.path.basename(r["file"]), r["offset"], r["csv_row"], r["reason"])),
            equal_to([("a.csv", 3, 1, "bad_target"), ("b.csv", 4, 1, "duplicate_item_id")]), label="Rejected")
        assert_that(counts | beam.Map(lambda c: (c["order"], c["records"])), equal_to([(0, 3), (1, 3)]),
                    label="Counts")
        assert_that(layout | beam.Map(lambda l: l.splits), equal_to([{"train": (0, 2), "test": (2, 2)}]),
                    label="Layout")


def _ad(item_id, user_id, region="", price=math.nan, seq=1.0, weekday=0, split=job.TRAIN):
    return job.Ad(item_id, user_id, "", "", (region, *[""] * (len(kind.CATEGORICAL) - 1)), price, seq, weekday,
                  0.5, "", split, 0, 0, "x.csv", 2, "pics")


def test_folds_vocabularies_and_stats_transforms():
    ads = [_ad(f"a{i}", f"u{i % 5}", region=["Б", "А", "В"][i % 3] if i < 9 else "Г", price=float(i),
               weekday=-1 if i == 0 else 2) for i in range(10)]
    with BeamTestPipeline(options=PipelineOptions(BEAM)) as p:
        created = p | beam.Create(ads)
        folds = created | "Folds0" >> job.AssignFolds(folds=2, seed=0)
        assert_that(folds, equal_to([job.assign_folds([(f"u{u}", 2) for u in range(5)], 2, 0)]), label="Folds")
        assert_that(folds | beam.Map(lambda f: sorted(Counter(f.values()).values())), equal_to([[2, 3]]),
                    label="Balanced")
        assert_that(created | job.Vocabularies(min_count=2),
                    equal_to([{"column": "region", "values": ["А", "Б", "В"]}]), label="Vocabularies")
        expected = np.log1p(np.arange(10.0))
        assert_that(created | job.NumberStats() | beam.Map(_rounded), equal_to([_rounded({
            "ads": 10, "weekday_unknown": 1,
            "price": {"count": 10, "log1p_mean": np.mean(expected), "log1p_std": np.std(expected)},
            "item_seq_number": {"count": 10, "log1p_mean": math.log(2), "log1p_std": 0.0}})]), label="Stats")


def _rounded(stats):
    return {k: {m: round(float(x), 12) for m, x in v.items()} if isinstance(v, dict) else v for k, v in stats.items()}
