import csv
import datetime
import hashlib
import os
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import Ridge

from yt8m_keras.competitions.avito import sample

IDS_AS_TEXT = {"item_id": str, "user_id": str, "image": str, "image_top_1": str}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return sample.write_sample(str(tmp_path_factory.mktemp("avito_raw")), ads=2000, seed=0)


@pytest.fixture(scope="module")
def frames(raw):
    train = pd.read_csv(raw["train_csv"], dtype=IDS_AS_TEXT)
    test = pd.read_csv(raw["test_csv"], dtype=IDS_AS_TEXT)
    truth = pd.read_csv(raw["test_truth"], dtype=IDS_AS_TEXT)
    return train, test, truth


def _csv_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _decodes(path):
    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except Exception:
        return None


def _digests(directory):
    return {name: hashlib.sha256(open(os.path.join(directory, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(directory))}


def test_columns_rows_and_quoted_newlines(raw, frames):
    train, test, truth = frames
    assert tuple(train.columns) == sample.TRAIN_COLUMNS and len(train) == 1600
    assert tuple(test.columns) == sample.TEST_COLUMNS and len(test) == 400
    assert tuple(truth.columns) == sample.TRUTH_COLUMNS and list(truth.item_id) == list(test.item_id)
    # Descriptions hold newlines, quotes and commas; the csv module and pandas agree on the rows.
    descriptions = train.description.dropna()
    assert descriptions.str.contains("\n").mean() > 0.1
    assert descriptions.str.contains('"').sum() > 50 and descriptions.str.contains(",").mean() > 0.5
    with open(raw["train_csv"], encoding="utf-8") as f:
        assert f.read().count("\n") > len(train) + 100  # physical lines > rows: quoted newlines
    assert len(_csv_rows(raw["train_csv"])) == 1600
    assert list(train.item_id) == sorted(train.item_id)
    # Cyrillic, consistent hierarchy and geography.
    assert train.title.str.contains("[а-яё]", case=False).mean() > 0.8
    for row in train.itertuples():
        assert sample.CATEGORIES[row.category_name]["parent"] == row.parent_category_name
        assert row.city in sample.REGIONS[row.region]
        assert row.user_type in sample.USER_TYPES
    assert set(train.category_name) == set(sample.CATEGORIES)
    assert "Свердловская область" in set(train.region)
    assert ("Личные вещи", "Детская одежда и обувь") in set(zip(train.parent_category_name, train.category_name))


def test_ids_dates_codes_and_sellers(frames):
    train, test, _ = frames
    both = pd.concat([train, test])
    assert both.item_id.str.fullmatch("[0-9a-f]{12}").all() and both.user_id.str.fullmatch("[0-9a-f]{12}").all()
    assert both.image.dropna().str.fullmatch("[0-9a-f]{64}").all()
    assert both.image_top_1.dropna().str.fullmatch("[0-9]+").all()
    assert not set(train.item_id) & set(test.item_id) and both.item_id.is_unique and both.image.dropna().is_unique
    dates = pd.to_datetime(both.activation_date, format="%Y-%m-%d")
    assert dates.min() >= pd.Timestamp(2017, 3, 15) and dates.max() < pd.Timestamp(2017, 3, 29)
    assert both.item_seq_number.dtype.kind == "i" and (both.item_seq_number > 0).all()
    # Sellers post 1-20 ads each, most ads come from repeat sellers, and sellers span both files.
    per_user = both.user_id.value_counts()
    assert per_user.max() <= sample.MAX_USER_ADS and per_user.min() >= 1
    assert (per_user >= 2).sum() > 100 and per_user[per_user >= 2].sum() / len(both) > 0.7
    assert len(set(train.user_id) & set(test.user_id)) > 50
    assert (both.groupby("user_id").user_type.nunique() == 1).all()
    assert (both.groupby("user_id").region.nunique() == 1).all()
    assert set(both.user_type) == set(sample.USER_TYPES)
    # A seller's sequence numbers rise with the date.
    for _, ads in both.sort_values(["activation_date", "item_seq_number"]).groupby("user_id"):
        assert ads.item_seq_number.is_monotonic_increasing


def test_empty_fields(raw, frames):
    train, _, _ = frames
    missing = train.isna().mean()
    assert 0.02 < missing["price"] < 0.1
    assert 0.1 < missing["image"] < 0.2 and (train.image.isna() == train.image_top_1.isna()).all()
    assert 0 < missing["description"] < 0.06 and 0 < missing["param_1"] < 0.1
    assert missing["param_2"] > 0.2 and missing["param_3"] > 0.4
    for column in ("item_id", "user_id", "region", "city", "category_name", "title", "activation_date",
                   "user_type", "deal_probability"):
        assert missing[column] == 0
    rows = _csv_rows(raw["train_csv"])
    assert any(r["price"] == "" for r in rows) and all(r["price"] == "" or float(r["price"]) > 0 for r in rows)
    assert all(re.fullmatch(r"\d\.\d{1,5}", r["deal_probability"]) for r in rows)


def test_pictures_broken_and_missing(raw, frames):
    train, test, _ = frames
    sizes = []
    for frame, folder in ((train, raw["train_images"]), (test, raw["test_images"])):
        names = list(frame.image.dropna())
        assert os.path.basename(folder) in ("train_jpg", "test_jpg")
        files = set(os.listdir(folder))
        assert files <= {n + ".jpg" for n in names}  # nothing the CSV does not name
        missing = [n for n in names if n + ".jpg" not in files]
        present = [n for n in names if n + ".jpg" in files]
        decoded = {n: _decodes(os.path.join(folder, n + ".jpg")) for n in present}
        broken = [n for n, size in decoded.items() if size is None]
        # The generator breaks and removes exact shares of each split's pictures (at least one each).
        assert len(missing) == max(1, round(sample.MISSING * len(names)))
        assert len(broken) == max(1, round(sample.BROKEN * len(names)))
        assert len(decoded) - len(broken) > 0.95 * len(names)
        sizes += [size for size in decoded.values() if size]
    widths, heights = np.array(sizes).T
    assert widths.min() >= sample.MIN_SIDE and heights.max() <= sample.MAX_SIDE
    assert (widths > heights).mean() > 0.4 and (widths < heights).mean() > 0.1 and (widths == heights).mean() > 0.05


def test_zip_layout_matches_the_folders(tmp_path):
    zipped = sample.write_sample(str(tmp_path / "zip"), ads=60, seed=5, zip_images=True)
    again = sample.write_sample(str(tmp_path / "zip2"), ads=60, seed=5, zip_images=True)
    folders = sample.write_sample(str(tmp_path / "dir"), ads=60, seed=5)
    assert sorted(os.listdir(tmp_path / "zip")) == ["test.csv", "test_jpg.zip", "test_truth.csv", "train.csv",
                                                    "train_jpg.zip"]
    for split in ("train", "test"):
        path = zipped[f"{split}_images"]
        assert path.endswith(f"{split}_jpg.zip")
        assert open(path, "rb").read() == open(again[f"{split}_images"], "rb").read()
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            prefix = f"data/competition_files/{split}_jpg/"
            assert names == sorted(names) and all(n.startswith(prefix) and n.endswith(".jpg") for n in names)
            folder = folders[f"{split}_images"]
            assert sorted(n[len(prefix):] for n in names) == sorted(os.listdir(folder))
            for name in names:
                assert archive.read(name) == open(os.path.join(folder, name[len(prefix):]), "rb").read()
        assert open(zipped[f"{split}_csv"], "rb").read() == open(folders[f"{split}_csv"], "rb").read()


def test_same_seed_same_bytes(tmp_path):
    a = sample.write_sample(str(tmp_path / "a"), ads=60, seed=3)
    b = sample.write_sample(str(tmp_path / "b"), ads=60, seed=3)
    c = sample.write_sample(str(tmp_path / "c"), ads=60, seed=4)
    for name in ("train_csv", "test_csv", "test_truth"):
        assert open(a[name], "rb").read() == open(b[name], "rb").read()
        assert open(a[name], "rb").read() != open(c[name], "rb").read()
    for name in ("train_images", "test_images"):
        assert _digests(a[name]) == _digests(b[name]) != _digests(c[name])
    assert len(pd.read_csv(a["train_csv"])) == 48 and len(pd.read_csv(a["test_csv"])) == 12
    assert not list(tmp_path.glob("**/*.tmp"))
    with pytest.raises(ValueError, match="at least 20"):
        sample.write_sample(str(tmp_path / "d"), ads=19)


def test_target_shape(frames):
    train, _, truth = frames
    for y in (train.deal_probability, truth.deal_probability):
        assert y.between(0, 1).all()
        assert 0.45 < (y == 0).mean() < 0.75
        assert (y > 0.5).mean() > 0.1 and y[y > 0].nunique() > 0.9 * (y > 0).sum()
    assert 0.1 < train.deal_probability.mean() < 0.4


def _features(frame, folder):
    columns = {f"category={c}": (frame.category_name == c) for c in sample.CATEGORIES}
    columns.update({f"user_type={t}": (frame.user_type == t) for t in sample.USER_TYPES})
    columns["no_price"] = frame.price.isna()
    columns["log_price"] = np.log1p(frame.price.fillna(0))
    text = (frame.title.fillna("") + " " + frame.description.fillna("")).map(sample.find_words)
    columns.update({f"word={w}": text.map(lambda found, w=w: found[w]) for w in sample.WORD_PATTERNS})
    brightness, red, decoded = [], [], []
    for name in frame.image:
        pixels = None
        if isinstance(name, str):
            try:
                with Image.open(os.path.join(folder, name + ".jpg")) as image:
                    pixels = np.asarray(image.convert("RGB"), np.float32)
            except Exception:  # broken or missing: as if the ad had no picture
                pass
        decoded.append(pixels is not None)
        brightness.append(0.0 if pixels is None else pixels.mean() / 255)
        reddish = 0.0 if pixels is None else ((pixels[..., 0] > 140) & (pixels[..., 0] > pixels[..., 1] + 60)
                                              & (pixels[..., 0] > pixels[..., 2] + 80)).mean()
        red.append(reddish > 0.01)
    columns.update(picture=decoded, brightness=brightness, red_object=red)
    return pd.DataFrame(columns).astype(np.float32)


def _rmse(truth, prediction):
    return float(np.sqrt(np.mean((np.asarray(truth) - np.asarray(prediction)) ** 2)))


def test_deal_probability_is_learnable_from_category_price_words_and_picture(raw, frames):
    """Ridge on simple features beats the train mean clearly; the words and the picture each help."""
    train, test, truth = frames
    x_train, x_test = _features(train, raw["train_images"]), _features(test, raw["test_images"])
    y_train, y_test = train.deal_probability, truth.deal_probability
    baseline = _rmse(y_test, np.full(len(y_test), y_train.mean()))

    def fit(drop=()):
        columns = [c for c in x_train.columns if not c.startswith(tuple(drop))] if drop else list(x_train.columns)
        model = Ridge(alpha=1.0).fit(x_train[columns], y_train)
        return _rmse(y_test, model.predict(x_test[columns]))

    full = fit()
    without_picture = fit(("picture", "brightness", "red_object"))
    without_words = fit(("word=",))
    print(f"deal_probability RMSE: train mean {baseline:.4f}, ridge {full:.4f}, "
          f"without picture {without_picture:.4f}, without words {without_words:.4f}")
    assert full < 0.9 * baseline
    assert full < 0.95 * without_picture
    assert full < 0.98 * without_words
    # The red-orange object is in ~OBJECT of the decodable pictures, and the pictures vary in brightness.
    pictured = x_train[x_train.picture == 1]
    assert 0.3 < pictured.red_object.mean() < 0.6 and pictured.brightness.std() > 0.1


def test_centre_crop_can_lose_the_object(raw, frames):
    """In some elongated pictures the object lies outside the central square: crop and pad differ."""
    train, _, _ = frames
    lost = 0
    for name in train.image.dropna():
        path = os.path.join(raw["train_images"], name + ".jpg")
        if not os.path.exists(path) or _decodes(path) is None:
            continue
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), np.int32)
        height, width = pixels.shape[:2]
        red = (pixels[..., 0] > 140) & (pixels[..., 0] > pixels[..., 1] + 60) & (pixels[..., 0] > pixels[..., 2] + 80)
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        if red.mean() > 0.01 and red[top:top + side, left:left + side].sum() < 0.2 * red.sum():
            lost += 1
    assert lost >= 5


def test_signal_constants_describe_the_generator():
    assert set(sample.WORD_EFFECTS) == set(sample.WORD_PATTERNS) == {"срочно", "новый", "торг", "б/у"}
    assert sample.WORD_EFFECTS["б/у"] < 0 < min(sample.WORD_EFFECTS[w] for w in ("срочно", "новый", "торг"))
    assert sample.find_words("Куртка НОВАЯ, срочно!\nТорг.") == {"срочно": True, "новый": True, "торг": True,
                                                                 "б/у": False}
    assert not any(sample.find_words("Новосибирск, торговый центр, новостройка").values())
    assert {"category", "price", "words", "picture", "seller", "noise", "target"} <= set(sample.SIGNAL)
    assert len(sample.PARENTS) == 8 and len(sample.CATEGORIES) == 20
    low, high = zip(*sample.IMAGE_TOP_1.values())
    assert min(low) >= 0 and max(high) <= 3067
    assert datetime.date(2017, 3, 15) == sample.FIRST_DATE
