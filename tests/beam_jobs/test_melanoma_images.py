import csv
import io
import os

import numpy as np
import pytest
from PIL import Image

from beam_jobs import melanoma_images as mi
from tfrecords import UserError
from tfrecords import melanoma_image as kind
from yt8m_keras.competitions.melanoma import sample

TRAIN_HEADER = ",".join(mi.TRAIN_COLUMNS)


def _write(path, text):
    path.write_text(text)
    return str(path)


def _jpeg(width=120, height=80, seed=0, quality=92):
    rng = np.random.default_rng(seed)
    pixels = sample.render_lesion(kind.CLASSES[seed % len(kind.CLASSES)], width, height, rng)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _reasons(rows):
    return {row.image_name: row.reason for row in rows}


# ---------------------------------------------------------------------------------------- CSVs


def test_2020_rows_are_validated_one_reason_each(tmp_path):
    path = _write(tmp_path / "train.csv", "\n".join([
        TRAIN_HEADER,
        "ISIC_0000001,IP_1,male,45.0,torso,nevus,benign,0",
        "ISIC_0000002,IP_1,,,,melanoma,malignant,1",                     # missing metadata is fine
        "ISIC_0000003,IP_2,Female,30,Lower Extremity,lentigo NOS,benign,0",  # case does not matter
        "ISIC_0000004,IP_2,male,45.0,torso,nevus,benign,2",
        "ISIC_0000005,IP_2,male,abc,torso,nevus,benign,0",
        "ISIC_0000006,IP_2,male,45.5,torso,nevus,benign,0",
        "ISIC_0000007,IP_2,male,45.0,torso,banana,benign,0",
        "ISIC_0000008,IP_2,male,45.0,torso,melanoma,benign,0",
        "ISIC_0000009,IP_2,male,45.0,torso,nevus,malignant,0",
        "ISIC_0000010,,male,45.0,torso,nevus,benign,0",
        "../etc/passwd,IP_2,male,45.0,torso,nevus,benign,0",
        "ISIC_0000012,IP_2,male,45.0,torso",
        "ISIC_0000013,IP_2,unknown,45.0,torso,nevus,benign,0",
        "ISIC_0000014,IP_2,male,45.0,elbow,nevus,benign,0",
        "ISIC_0000015,IP_2,male,-5,torso,nevus,benign,0",
    ]) + "\n")
    split, rows = mi.read_2020(path)
    assert split == "train" and [r.offset for r in rows] == list(range(2, 17))
    reasons = _reasons(rows)
    assert reasons["ISIC_0000001"] is None and reasons["ISIC_0000002"] is None and reasons["ISIC_0000003"] is None
    assert reasons["ISIC_0000004"] == "target '2' is not 0 or 1"
    assert reasons["ISIC_0000005"] == "age_approx 'abc' is not a number"
    assert reasons["ISIC_0000006"].startswith("age_approx '45.5' is not a whole number")
    assert reasons["ISIC_0000007"].startswith("unknown diagnosis 'banana'")
    assert reasons["ISIC_0000008"] == "diagnosis 'melanoma' contradicts target 0"
    assert reasons["ISIC_0000009"] == "benign_malignant 'malignant' contradicts target 0"
    assert reasons["ISIC_0000010"] == "patient_id is empty"
    assert reasons["../etc/passwd"] == "image_name '../etc/passwd' is not a plain file name"
    assert reasons["ISIC_0000012"] == "the row has fewer fields than the header's 8"
    assert reasons["ISIC_0000013"].startswith("unknown sex 'unknown'")
    assert reasons["ISIC_0000014"].startswith("unknown anatom_site_general_challenge 'elbow'")
    assert reasons["ISIC_0000015"].startswith("age_approx '-5' is not a whole number of years")


def test_test_csv_needs_only_its_columns_and_missing_columns_are_user_errors(tmp_path):
    test_csv = _write(tmp_path / "test.csv", ",".join(mi.TEST_COLUMNS) + "\nISIC_9,IP_9,male,50,torso\n")
    split, rows = mi.read_2020(test_csv)
    assert split == "test" and rows[0].reason is None and rows[0].values["sex"] == "male"
    with pytest.raises(UserError, match="lacks the column.*diagnosis"):
        mi.read_2020(_write(tmp_path / "bad_train.csv", "image_name,patient_id,sex,age_approx,"
                            "anatom_site_general_challenge,target\n"))
    with pytest.raises(UserError, match="lacks the column.*patient_id"):
        mi.read_2020(_write(tmp_path / "bad_test.csv", "image_name,sex\n"))
    with pytest.raises(UserError, match="not UTF-8"):
        (tmp_path / "latin.csv").write_bytes(b"image_name,patient_id\n\xe9\xff\n")
        mi.read_2020(str(tmp_path / "latin.csv"))


def _isic2019(tmp_path, truth_rows, metadata_rows):
    directory = tmp_path / "isic2019"
    (directory / mi.INPUT_2019).mkdir(parents=True)
    _write(directory / mi.GROUND_TRUTH_2019, ",".join(mi.GROUND_TRUTH_COLUMNS) + "\n"
           + "".join(",".join(r) + "\n" for r in truth_rows))
    _write(directory / mi.METADATA_2019, "image,age_approx,anatom_site_general,lesion_id,sex\n"
           + "".join(",".join(r) + "\n" for r in metadata_rows))
    return str(directory)


def _one_hot(column):
    return ["1.0" if c == column else "0.0" for c in mi.GROUND_TRUTH_COLUMNS[1:]]


def test_2019_rows_take_the_2020_columns(tmp_path):
    directory = _isic2019(tmp_path, [
        ["ISIC_0000001", *_one_hot("MEL")],
        ["ISIC_0000002", *_one_hot("BCC")],
        ["ISIC_0000003", *_one_hot("NV")],             # no metadata row: missing values
        ["ISIC_0000004", *["0.0"] * 9],
        ["ISIC_0000005", "1.0", "1.0", *["0.0"] * 7],
        ["ISIC_0000006", "0.5", *["0.0"] * 8],
        ["ISIC_0000007", *_one_hot("DF")],             # its metadata has a bad age
    ], [
        ["ISIC_0000001", "55.0", "anterior torso", "BCN_1", "female"],
        ["ISIC_0000002", "", "head/neck", "", "male"],
        ["ISIC_0000007", "old", "torso", "", "male"],
    ])
    rows = {r.image_name: r for r in mi.read_2019(directory)}
    mel, bcc, nevus = rows["ISIC_0000001"], rows["ISIC_0000002"], rows["ISIC_0000003"]
    assert mel.reason is None and mel.source == kind.SOURCE_2019 and mel.ground_truth == "MEL"
    assert mel.values == {"image_name": "ISIC_0000001", "patient_id": "", "sex": "female", "age_approx": "55.0",
                          "anatom_site_general_challenge": "anterior torso", "diagnosis": "melanoma",
                          "benign_malignant": "malignant", "target": "1"}
    assert (bcc.values["diagnosis"], bcc.values["benign_malignant"], bcc.values["target"]) == ("BCC", "benign", "0")
    assert nevus.reason is None and nevus.values["sex"] == nevus.values["age_approx"] == ""
    assert rows["ISIC_0000004"].reason == "no ground-truth class is 1.0"
    assert rows["ISIC_0000005"].reason == "several ground-truth classes are 1.0 (MEL, NV)"
    assert rows["ISIC_0000006"].reason == "ground truth MEL is '0.5', expected 0.0 or 1.0"
    bad_age = rows["ISIC_0000007"]
    assert bad_age.reason == "age_approx 'old' is not a number"
    assert (bad_age.file, bad_age.offset) == (os.path.join(directory, mi.METADATA_2019), 4)
    no_class = rows["ISIC_0000004"]
    assert (no_class.file, no_class.offset) == (os.path.join(directory, mi.GROUND_TRUTH_2019), 5)
    element = mi.row_element(mel, {})
    assert element["site"] == kind.SITES.index("torso") and element["sex"] == kind.SEXES.index("female")
    assert element["class_index"] == kind.MELANOMA and element["target"] == 1 and element["patient_id"] == -1
    assert element["diagnosis"] == mi.DIAGNOSES.index("melanoma") == mi.row_element(
        mi.Row("f", 2, "x", "train", kind.SOURCE_2020, {**mel.values, "patient_id": "IP_1"}), {})["diagnosis"]


def test_repeated_names_missing_files_and_unlisted_images(tmp_path):
    images = tmp_path / "jpeg"
    images.mkdir()
    for name in ("ISIC_1", "ISIC_2", "ISIC_8", "ISIC_9"):
        (images / f"{name}.jpg").write_bytes(b"x")
    (images / "notes.txt").write_text("not an image")
    path = _write(tmp_path / "train.csv", "\n".join([
        TRAIN_HEADER,
        "ISIC_1,IP_1,male,45,torso,nevus,benign,2",      # invalid: not "the first" of ISIC_1
        "ISIC_1,IP_1,male,45,torso,nevus,benign,0",
        "ISIC_1,IP_1,male,45,torso,nevus,benign,0",
        "ISIC_2,IP_1,male,45,torso,nevus,benign,0",
        "ISIC_3,IP_1,male,45,torso,nevus,benign,0",
    ]) + "\n")
    _, rows = mi.read_2020(path)
    rows, unlisted = mi.attach_images(mi.reject_repeated_names(rows), str(images))
    assert [r.reason for r in rows] == [
        "target '2' is not 0 or 1", None, f"image_name ISIC_1 repeats {path}:3", None,
        f"image file not found: {images / 'ISIC_3.jpg'}"]
    assert rows[1].image_path == str(images / "ISIC_1.jpg")
    assert unlisted == 2  # ISIC_8 and ISIC_9; notes.txt is not an image
    with pytest.raises(UserError, match="--images .*train.csv is not a directory"):
        mi.attach_images(rows, path)
    assert mi.patient_codes(rows) == {"IP_1": 0}


# -------------------------------------------------------------------------------------- images


def test_convert_image_crops_the_centre_resizes_and_is_deterministic():
    # Left third red, middle green, right third blue: the centre square is all green.
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, :100, 0] = pixels[:, 100:200, 1] = pixels[:, 200:, 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    converted = mi.convert_image(buffer.getvalue(), 32, 90)
    assert (converted.width, converted.height) == (300, 100)
    square = np.asarray(Image.open(io.BytesIO(converted.jpeg)).convert("RGB"), np.float32)
    assert square.shape == (32, 32, 3)
    assert square[:, :, 1].mean() > 240 and square[:, :, 0].mean() < 15 and square[:, :, 2].mean() < 15
    assert mi.convert_image(buffer.getvalue(), 32, 90) == converted  # same bytes, same signature
    assert mi.convert_image(buffer.getvalue(), 32, 60).jpeg != converted.jpeg


def test_convert_image_reports_what_does_not_decode():
    jpeg = _jpeg(200, 150)
    assert mi.convert_image(b"", 32, 90).startswith("image does not decode: UnidentifiedImageError")
    assert mi.convert_image(b"\xff\xd8\xff\xe0 junk junk", 32, 90).startswith("image does not decode")
    assert mi.convert_image(jpeg[:len(jpeg) // 2], 32, 90).startswith("image does not decode: OSError")


TRANSPOSES = ("ROTATE_90", "ROTATE_180", "ROTATE_270", "FLIP_LEFT_RIGHT", "FLIP_TOP_BOTTOM", "TRANSPOSE", "TRANSVERSE")


@pytest.mark.parametrize("transpose,scale", [(t, 0.6 if i % 2 else 1.0) for i, t in enumerate(TRANSPOSES)])
def test_a_turned_rescaled_reencoded_copy_matches_and_another_picture_does_not(transpose, scale):
    original = mi.convert_image(_jpeg(320, 240, seed=1), 64, 95).signature
    with Image.open(io.BytesIO(_jpeg(320, 240, seed=1))) as image:
        copy = image.transpose(getattr(Image.Transpose, transpose))
    copy = copy.resize((int(copy.width * scale), int(copy.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    copy.save(buffer, "JPEG", quality=75)
    copied = mi.convert_image(buffer.getvalue(), 64, 95).signature
    other = mi.convert_image(_jpeg(320, 240, seed=10), 64, 95).signature
    assert mi.hash_distance(original, copied) <= mi.DEFAULT_MAX_DISTANCE
    assert mi.correlation(original, copied) >= mi.MIN_CORRELATION
    assert mi.correlation(original, other) < mi.MIN_CORRELATION
    spectra = np.frombuffer(original.spectrum + copied.spectrum, np.float32).reshape(2, -1)
    assert spectra[0] @ spectra[1] >= mi.CANDIDATE_SIMILARITY


# ------------------------------------------------------------------------------ near-duplicates


@pytest.fixture(scope="module")
def sample_signatures(tmp_path_factory):
    """The sample's training images (2020 and 2019) converted at 64 px: names, signatures, planted pairs."""
    raw = sample.write_sample(str(tmp_path_factory.mktemp("raw")), images=300, seed=0)
    files = {}
    for folder in ("train_images", "isic2019_images"):
        for name in os.listdir(raw[folder]):
            files[name[:-4]] = os.path.join(raw[folder], name)
    names = sorted(files)
    signatures = [mi.convert_image(open(files[n], "rb").read(), 64, 95).signature for n in names]
    with open(raw["planted_duplicates"]) as f:
        planted = list(csv.DictReader(f))
    return names, signatures, planted


@pytest.fixture(scope="module")
def distinct(sample_signatures):
    """Signatures of sample pictures that have no planted copy: all different pictures."""
    names, signatures, planted = sample_signatures
    copied = {p[k] for p in planted for k in ("original", "copy")}
    return [s for n, s in zip(names, signatures) if n not in copied]


def test_thresholds_separate_planted_copies_from_every_other_pair(sample_signatures):
    names, signatures, planted = sample_signatures
    index = {n: i for i, n in enumerate(names)}
    pairs = {tuple(sorted((index[p["original"]], index[p["copy"]]))) for p in planted}
    first, second = np.triu_indices(len(names), 1)
    unpacked = mi._Signatures.of(signatures)
    distances = mi._pair_distances(unpacked.hashes, first, second)
    correlations = mi._pair_correlations(unpacked.coefficients, first, second)
    similarities = (unpacked.spectra[first] * unpacked.spectra[second]).sum(axis=1)
    is_planted = np.array([(i, j) in pairs for i, j in zip(first, second)])
    assert is_planted.sum() == len(planted) == 12
    # The figures the thresholds' comments quote (seed 0): copies within 18 bits, 0.998.
    assert distances[is_planted].max() <= 28 < mi.DEFAULT_MAX_DISTANCE
    assert correlations[is_planted].min() >= 0.998 > mi.MIN_CORRELATION
    assert correlations[~is_planted].max() < mi.MIN_CORRELATION
    assert similarities[is_planted].min() > mi.CANDIDATE_SIMILARITY
    assert (similarities[~is_planted] >= mi.CANDIDATE_SIMILARITY).mean() < 0.01  # few candidates to check
    matched = (distances <= mi.DEFAULT_MAX_DISTANCE) & (correlations >= mi.MIN_CORRELATION)
    assert np.array_equal(matched, is_planted)


def test_duplicate_groups_find_every_planted_copy_and_nothing_else(sample_signatures):
    names, signatures, planted = sample_signatures
    groups = [{names[i] for i in group} for group in mi.duplicate_groups(signatures)]
    assert sorted(map(sorted, groups)) == sorted(sorted((p["original"], p["copy"])) for p in planted)


def test_candidate_pairs_are_the_similar_pairs_and_capped():
    rng = np.random.default_rng(0)
    spectra = rng.normal(size=(1200, 20)).astype(np.float32)
    spectra /= np.linalg.norm(spectra, axis=1, keepdims=True)
    first, second = mi.candidate_pairs(spectra, 0.5)
    expected = np.argwhere(np.triu(spectra @ spectra.T >= 0.5, 1))
    assert sorted(zip(first.tolist(), second.tolist())) == sorted(map(tuple, expected.tolist()))
    same = np.ones((300, 4), np.float32) / 2
    first, second = mi.candidate_pairs(same, max_candidates=5)
    assert np.bincount(first).max() == 5 and first[:5].tolist() == [0] * 5 and second[:5].tolist() == [1, 2, 3, 4, 5]


def test_find_duplicates_keeps_2020_then_the_smallest_name_and_ignores_test(distinct):
    picture, other = distinct[0], distinct[1]
    fingerprints = [mi.Fingerprint("ISIC_3", "train", kind.SOURCE_2019, -1, 0, picture),
                    mi.Fingerprint("ISIC_5", "train", kind.SOURCE_2020, 7, 0, picture),
                    mi.Fingerprint("ISIC_4", "train", kind.SOURCE_2020, 8, 0, picture),
                    mi.Fingerprint("ISIC_1", "test", kind.SOURCE_2020, 9, -1, picture),
                    mi.Fingerprint("ISIC_2", "train", kind.SOURCE_2019, -1, 0, other)]
    assert mi.find_duplicates(fingerprints) == {"ISIC_3": "ISIC_4", "ISIC_5": "ISIC_4"}
    assert mi.find_duplicates(fingerprints[:1] + fingerprints[4:]) == {}


# ---------------------------------------------------------------------------------------- folds


def _population(seed=0, patients=200, singletons=400):
    """Patients with 1-40 images (melanoma clustered in some) and 2019-like single images."""
    rng = np.random.default_rng(seed)
    items = []
    for patient in range(patients):
        p = 0.25 if rng.random() < 0.4 else 0.0
        for _ in range(int(rng.integers(1, 41))):
            items.append(mi.Fingerprint(f"ISIC_{len(items):07d}", "train", kind.SOURCE_2020, patient,
                                        int(rng.random() < p), None))
    for _ in range(singletons):
        items.append(mi.Fingerprint(f"ISIC_{len(items):07d}", "train", kind.SOURCE_2019, -1,
                                    int(rng.random() < 0.18), None))
    return items


def _fold_stats(items, shards, per_fold):
    target = {f.image_name: f.target for f in items}
    folds = {}
    for name, shard in shards.items():
        folds.setdefault(shard // per_fold, []).append(target[name])
    return {fold: (len(t), float(np.mean(t))) for fold, t in sorted(folds.items())}


def test_assign_shards_keeps_patients_whole_and_balances_folds():
    items = _population()
    shards = mi.assign_shards(items, folds=5, shards_per_fold=3, seed=0)
    assert sorted(shards) == sorted(f.image_name for f in items) and set(shards.values()) == set(range(15))
    per_patient = {}
    for f in items:
        if f.patient_id >= 0:
            per_patient.setdefault(f.patient_id, set()).add(shards[f.image_name])
    assert all(len(s) == 1 for s in per_patient.values())
    rate = np.mean([f.target for f in items])
    stats = _fold_stats(items, shards, 3)
    for images, fold_rate in stats.values():
        assert abs(images / (len(items) / 5) - 1) <= 0.02 and abs(fold_rate - rate) <= 0.005
    # Shards too, less tightly (fewer groups to move).
    for images, shard_rate in _fold_stats(items, shards, 1).values():
        assert abs(images / (len(items) / 15) - 1) <= 0.10 and abs(shard_rate - rate) <= 0.02
    # 2019 images spread evenly, and so do the patients with many images.
    sources = {f.image_name: f.source for f in items}
    per_fold_2019 = np.bincount([shards[n] // 3 for n in shards if sources[n] == kind.SOURCE_2019])
    assert per_fold_2019.max() - per_fold_2019.min() <= 0.1 * per_fold_2019.mean()


def test_assign_shards_is_deterministic_whatever_the_order_and_seeded():
    items = _population(seed=1, patients=60, singletons=100)
    shards = mi.assign_shards(items, folds=4, shards_per_fold=2, seed=0)
    assert mi.assign_shards(list(reversed(items)), folds=4, shards_per_fold=2, seed=0) == shards
    assert mi.assign_shards(items, folds=4, shards_per_fold=2, seed=1) != shards


def test_fewer_groups_than_shards_leaves_shards_empty():
    items = [mi.Fingerprint(f"ISIC_{i}", "train", kind.SOURCE_2020, i // 2, i % 2, None) for i in range(6)]
    shards = mi.assign_shards(items, folds=2, shards_per_fold=3, seed=0)
    assert len(set(shards.values())) == 3 and all(0 <= s < 6 for s in shards.values())
    assert shards["ISIC_0"] == shards["ISIC_1"] and shards["ISIC_2"] == shards["ISIC_3"]


def test_balance_parts_swaps_equal_groups_to_even_the_rate():
    # Two parts of ten single images: all 4 positives in part 0. Two swaps even them out.
    part = np.array([0] * 10 + [1] * 10)
    sizes = np.ones(20, dtype=np.int64)
    positives = np.array([1, 1, 1, 1] + [0] * 16)
    balanced = mi.balance_parts(part, sizes, positives, np.zeros(20, dtype=np.int64), 2)
    assert np.bincount(balanced).tolist() == [10, 10]
    assert positives[balanced == 0].sum() == positives[balanced == 1].sum() == 2


def test_plan_dataset_splits_test_evenly_and_sends_copies_to_the_duplicate_split(distinct):
    signatures = distinct
    train = [mi.Fingerprint(f"ISIC_{i:03d}", "train", kind.SOURCE_2020, i // 3, int(i % 5 == 0), signatures[i])
             for i in range(30)]
    copy = mi.Fingerprint("ISIC_900", "train", kind.SOURCE_2019, -1, 1, signatures[0])
    test = [mi.Fingerprint(f"ISIC_5{i:02d}", "test", kind.SOURCE_2020, 100 + i, -1, signatures[40 + i])
            for i in range(7)]
    plan = mi.plan_dataset(train + [copy] + test, folds=2, shards_per_fold=2, seed=0, test_shards=3)
    assert plan.shards == {"train": 4, "test": 3, "duplicate": 1} and plan.duplicates == 1
    assert plan.assignments["ISIC_900"] == mi.Assignment("duplicate", 0, -1, "ISIC_000", 1)
    assert [plan.assignments[f.image_name].shard for f in test] == [0, 0, 0, 1, 1, 2, 2]
    assert all(plan.assignments[f.image_name].fold == -1 for f in test)
    kept = [plan.assignments[f.image_name] for f in train]
    assert all(a.split == "train" and a.fold == a.shard // 2 and a.patient_images == 3 for a in kept)
