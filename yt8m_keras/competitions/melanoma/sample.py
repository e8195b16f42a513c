"""Sample SIIM-ISIC melanoma data in Kaggle's own layout: CSVs and JPEG folders.

Writes what the competition ships (2020) and what the winners added (ISIC 2019):

    train.csv  test.csv                      the 2020 columns, rows sorted by image_name
    jpeg/train/<image_name>.jpg  jpeg/test/<image_name>.jpg
    isic2019/ISIC_2019_Training_GroundTruth.csv   image, one-hot MEL NV BCC AK BKL DF VASC SCC UNK
    isic2019/ISIC_2019_Training_Metadata.csv      image, age_approx, anatom_site_general, lesion_id, sex
    isic2019/ISIC_2019_Training_Input/<image>.jpg
    planted_duplicates.csv                   NOT part of Kaggle's data (see below)

How the pictures carry the labels: each of the 9 classes (`melanoma_image.CLASSES`) has its
own lesion colour, border irregularity and pattern (melanoma dark and ragged with blue-grey
blotches, nevus round and brown, dermatofibroma a dark ring around a pale centre, ...) on a
skin-toned background with a dermoscope's dark vignette. Position, size, elongation, angle,
skin tone, lighting and noise vary per image, so a tiny CNN learns the classes but cannot
memorise pixels, and two different images never look alike to a perceptual hash.

Deliberate differences from the real data, so tests and quickstarts see every case:
- melanoma is ~20 % of the 2020 training images (1.8 % in the real data: a tiny model
  trained for a few steps on 300 images would learn nothing from 5 melanomas); patients
  have 1-10 images and melanoma clusters in some patients, as it does for real;
- images are small (160-400 px on a side, varied aspect ratios, some portrait);
- sex, age or site are missing here and there, in both years;
- planted near-duplicates: copies of some 2020 training images in the 2019 data and in
  the 2020 data (under another patient), and of some 2019 images in the 2019 data, each
  flipped or rotated (one of the 7 non-identity symmetries of the square), sometimes
  rescaled, always re-encoded, as the real data's copies are. `planted_duplicates.csv`
  lists them (`original, copy, transform, original_source, copy_source`) so tests can
  check that a conversion finds them all.

The same seed writes the same bytes.

Example:

>>> paths = write_sample("/tmp/melanoma_raw", images=120)
>>> paths["train_csv"], paths["isic2019"]
('/tmp/melanoma_raw/train.csv', '/tmp/melanoma_raw/isic2019')
"""

import io
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

from tfrecords import melanoma_image
from yt8m_keras.data.sample_files import write_csv, write_jpegs

TRAIN_COLUMNS = ("image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis",
                 "benign_malignant", "target")
TEST_COLUMNS = TRAIN_COLUMNS[:5]
GROUND_TRUTH_COLUMNS = ("image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
METADATA_COLUMNS = ("image", "age_approx", "anatom_site_general", "lesion_id", "sex")
PLANTED_COLUMNS = ("original", "copy", "transform", "original_source", "copy_source")

# Kaggle's names for the 2019 files and folder.
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
METADATA = "ISIC_2019_Training_Metadata.csv"
INPUT_2019 = "ISIC_2019_Training_Input"

MIN_SIDE, MAX_SIDE = 160, 400
MAX_PATIENT_IMAGES = 10
# 2020 diagnosis strings of the images that are not melanoma, with rough real shares.
OTHER_DIAGNOSES_2020 = (("unknown", 0.5), ("nevus", 0.36), ("seborrheic keratosis", 0.04),
                        ("lentigo NOS", 0.03), ("lichenoid keratosis", 0.02), ("solar lentigo", 0.02),
                        ("cafe-au-lait macule", 0.01), ("atypical melanocytic proliferation", 0.02))
# ISIC 2019's class shares (UNK is never set in its training ground truth).
CLASSES_2019 = (("NV", 0.50), ("MEL", 0.18), ("BCC", 0.13), ("BKL", 0.10), ("AK", 0.035), ("SCC", 0.025),
                ("DF", 0.015), ("VASC", 0.015))
SITES_2020 = (("torso", 0.5), ("lower extremity", 0.25), ("upper extremity", 0.15), ("head/neck", 0.06),
              ("palms/soles", 0.02), ("oral/genital", 0.02))
# 2019 splits the torso in three, the rest are 2020's names.
SITES_2019 = (("anterior torso", 0.2), ("posterior torso", 0.2), ("lateral torso", 0.05),
              ("lower extremity", 0.25), ("upper extremity", 0.15), ("head/neck", 0.1),
              ("palms/soles", 0.03), ("oral/genital", 0.02))
# Shares of the 2020 patients whose images are melanoma with MELANOMA_P each: ~20 % overall.
MELANOMA_PATIENTS, MELANOMA_P = 0.5, 0.4
MISSING_SEX, MISSING_AGE, MISSING_SITE = 0.04, 0.03, 0.06

# Per class: lesion colour, second colour, border irregularity, size factor, pattern.
STYLES = {
    "melanoma": ((62, 38, 32), (80, 90, 130), 0.22, 1.0, "blotches"),
    "nevus": ((140, 92, 62), (120, 78, 52), 0.03, 0.85, "plain"),
    "BKL": ((172, 132, 92), (205, 175, 130), 0.10, 1.0, "speckles"),
    "BCC": ((214, 122, 132), (240, 225, 225), 0.12, 0.8, "speckles"),
    "AK": ((198, 82, 72), (220, 150, 130), 0.16, 0.6, "plain"),
    "SCC": ((190, 104, 62), (228, 208, 92), 0.14, 0.8, "centre"),
    "DF": ((112, 72, 58), (226, 196, 180), 0.05, 0.7, "centre"),
    "VASC": ((148, 36, 82), (96, 20, 60), 0.08, 0.65, "blotches"),
    "unknown": ((164, 124, 98), (150, 112, 88), 0.06, 0.7, "plain"),
}
# The symmetries of the square other than the identity (PIL's names).
TRANSFORMS = ("flip_left_right", "flip_top_bottom", "rotate_90", "rotate_180", "rotate_270", "transpose",
              "transverse")


def _choice(rng: np.random.Generator, table) -> str:
    names, weights = zip(*table)
    weights = np.asarray(weights, dtype=np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def render_lesion(class_name: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """One dermoscopy-like picture of a class, HxWx3 uint8.

    Args:
        class_name: one of `melanoma_image.CLASSES`.
        width, height: in pixels.
        rng: draws the picture's variation (position, size, shape, colours, noise).

    Example:

    >>> render_lesion("melanoma", 300, 200, np.random.default_rng(0)).shape
    (200, 300, 3)
    """
    colour, second, irregularity, size, pattern = STYLES[class_name]
    side = min(width, height)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Skin with a lighting gradient in a random direction, and the dermoscope's dark rim.
    # float32 throughout: a float64 intermediate would double the sample's writing time.
    skin = (np.array([226, 184, 162]) * rng.uniform(0.8, 1.05) + rng.normal(0, 6, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - width / 2) * np.float32(np.cos(angle)) + (yy - height / 2) * np.float32(np.sin(angle))) / side
    shade = 1 + np.float32(rng.uniform(0.1, 0.35)) * ramp
    rim = np.hypot(xx - width / 2, yy - height / 2) / np.float32(np.hypot(width, height) / 2)
    shade *= 1 - np.float32(rng.uniform(0.3, 0.8)) * np.clip((rim - np.float32(rng.uniform(0.6, 0.8))) * 4, 0, 1)
    image = skin * shade[..., None]

    cx = width / 2 + rng.uniform(-0.18, 0.18) * side
    cy = height / 2 + rng.uniform(-0.18, 0.18) * side
    radius = rng.uniform(0.16, 0.34) * side * size
    elongation, turn = rng.uniform(1.0, 1.7), rng.uniform(0, np.pi)
    u, v = xx - np.float32(cx), yy - np.float32(cy)
    cos, sin = np.float32(np.cos(turn)), np.float32(np.sin(turn))
    along = (u * cos + v * sin) / np.float32(radius * elongation)
    across = (v * cos - u * sin) / np.float32(radius)
    rho, theta = np.hypot(along, across), np.arctan2(across, along)
    border = 1 + sum(np.float32(irregularity * rng.uniform(0.3, 1))
                     * np.cos(k * theta + np.float32(rng.uniform(0, 2 * np.pi))) for k in range(2, 7))
    inside = np.clip((border - rho) * 6, 0, 1)[..., None]
    lesion = np.broadcast_to((np.asarray(colour) + rng.normal(0, 10, 3)).astype(np.float32), image.shape).copy()
    second = np.asarray(second, np.float32)
    if pattern == "blotches":
        for _ in range(int(rng.integers(2, 5))):
            bx, by = cx + rng.normal(0, 0.4) * radius, cy + rng.normal(0, 0.4) * radius
            blob = np.clip(1 - np.hypot(xx - np.float32(bx), yy - np.float32(by))
                           / np.float32(radius * rng.uniform(0.2, 0.45)), 0, 1)[..., None]
            lesion = lesion * (1 - blob) + second * blob
    elif pattern == "speckles":
        dots = (rng.random((height, width)) < 0.05)[..., None]
        lesion = np.where(dots, second, lesion)
    elif pattern == "centre":
        core = np.clip((np.float32(0.45) - rho) * 5, 0, 1)[..., None]
        lesion = lesion * (1 - core) + second * core
    image = image * (1 - inside) + lesion * inside
    image += rng.standard_normal(image.shape, dtype=np.float32) * 5
    return np.clip(image, 0, 255).astype(np.uint8)


def _size(rng: np.random.Generator) -> Tuple[int, int]:
    """(width, height): mostly landscape like the real photographs, some square, some portrait."""
    long_side = int(rng.integers(MIN_SIDE + 60, MAX_SIDE + 1))
    short_side = int(rng.integers(MIN_SIDE, min(long_side, MAX_SIDE - 80) + 1))
    return (short_side, long_side) if rng.random() < 0.15 else (long_side, short_side)


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _names(rng: np.random.Generator, count: int, low: int, high: int) -> List[str]:
    numbers: List[int] = []
    seen = set()
    while len(numbers) < count:
        n = int(rng.integers(low, high))
        if n not in seen:
            seen.add(n)
            numbers.append(n)
    return ["ISIC_%07d" % n for n in numbers]


def _age(rng: np.random.Generator) -> int:
    return int(rng.integers(4, 18)) * 5


def _patients(rng: np.random.Generator, images: int, first_id: int) -> List[Dict]:
    """Patients with 1-10 images, `images` in all, each with sex, age and melanoma propensity."""
    patients, left = [], images
    ids = iter(_names(rng, images, first_id, first_id + 10 * images))
    while left > 0:
        count = min(left, int(rng.integers(1, MAX_PATIENT_IMAGES + 1)))
        left -= count
        patients.append({
            "patient_id": next(ids).replace("ISIC_", "IP_"), "images": count,
            "sex": "" if rng.random() < MISSING_SEX else ("male" if rng.random() < 0.52 else "female"),
            "age": None if rng.random() < MISSING_AGE else _age(rng),
            "melanoma_p": MELANOMA_P if rng.random() < MELANOMA_PATIENTS else 0.0,
        })
    return patients


def _age_text(age) -> str:
    return "" if age is None else f"{float(age):.1f}"


def _rows_2020(rng: np.random.Generator, patients: List[Dict], names: List[str], labelled: bool) -> List[Dict]:
    rows, names = [], iter(names)
    for patient in patients:
        for _ in range(patient["images"]):
            age = patient["age"]
            if age is not None and rng.random() < 0.2:  # photographed in another year
                age = max(0, age + int(rng.choice([-5, 5])))
            row = {"image_name": next(names), "patient_id": patient["patient_id"], "sex": patient["sex"],
                   "age_approx": _age_text(age),
                   "anatom_site_general_challenge": "" if rng.random() < MISSING_SITE else _choice(rng, SITES_2020)}
            diagnosis = "melanoma" if rng.random() < patient["melanoma_p"] else _choice(rng, OTHER_DIAGNOSES_2020)
            if labelled:
                melanoma = diagnosis == "melanoma"
                row.update(diagnosis=diagnosis, benign_malignant="malignant" if melanoma else "benign",
                           target=str(int(melanoma)))
            row["_class"] = melanoma_image.DIAGNOSIS_2020[diagnosis]
            rows.append(row)
    return rows


def _rows_2019(rng: np.random.Generator, names: List[str]) -> List[Dict]:
    rows = []
    # Every class twice first, so even the rare ones (DF, VASC) are there in a small sample.
    columns = [c for c, _ in CLASSES_2019 for _ in range(2)]
    for i, name in enumerate(names):
        column = columns[i] if i < len(columns) else _choice(rng, CLASSES_2019)
        lesion = "" if rng.random() < 0.4 else "%s_%07d" % (_choice(rng, (("HAM", 1), ("BCN", 1))),
                                                           int(rng.integers(0, 10 ** 6)))
        rows.append({"image": name, "_column": column, "_class": melanoma_image.DIAGNOSIS_2019[column],
                     "age_approx": "" if rng.random() < MISSING_AGE else _age_text(_age(rng)),
                     "anatom_site_general": "" if rng.random() < MISSING_SITE else _choice(rng, SITES_2019),
                     "lesion_id": lesion,
                     "sex": "" if rng.random() < MISSING_SEX else ("male" if rng.random() < 0.52 else "female")})
    return rows


def _transform(jpeg: bytes, transform: str, scale: float, quality: int) -> Tuple[bytes, str]:
    """A copy as the real data holds them: a symmetry of the square, maybe rescaled, re-encoded."""
    with Image.open(io.BytesIO(jpeg)) as original:
        image = original.convert("RGB").transpose(getattr(Image.Transpose, transform.upper()))
    description = transform
    if scale != 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
        description += f"+rescale {scale:.2f}"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue(), f"{description}+quality {quality}"


def _plant(rng: np.random.Generator, pairs: List[Tuple[str, str]], originals: Dict[str, bytes],
           copies: Dict[str, bytes], source: str, copy_source: str, planted: List[Dict]) -> None:
    """Writes a transformed copy of `originals[a]` as `copies[b]` for each (a, b) in `pairs`."""
    for original, copy in pairs:
        scale = float(np.round(rng.uniform(0.55, 0.9), 2)) if rng.random() < 0.6 else 1.0
        copies[copy], description = _transform(originals[original], TRANSFORMS[int(rng.integers(len(TRANSFORMS)))],
                                                scale, int(rng.integers(72, 93)))
        planted.append({"original": original, "copy": copy, "transform": description,
                        "original_source": source, "copy_source": copy_source})


def _render(rng: np.random.Generator, rows: List[Dict], name_key: str) -> Dict[str, bytes]:
    images = {}
    for row in rows:
        width, height = _size(rng)
        images[row[name_key]] = _jpeg(render_lesion(row["_class"], width, height, rng), int(rng.integers(88, 96)))
    return images


def write_sample(output_dir: str, images: int = 300, seed: int = 0, isic2019: bool = True) -> Dict[str, str]:
    """Writes the 2020 competition files and, with `isic2019`, the 2019 external data.

    Sizes: `images` 2020 training images (planted copies included), `images // 4` test
    images and `images // 2` ISIC 2019 images; about one image in 25 is a planted copy.

    Args:
        output_dir: created if missing.
        images: 2020 training images (at least 20).
        seed: the same seed writes the same bytes.
        isic2019: also write `isic2019/` (the winners' external data) and plant copies there.

    Returns:
        The paths written, by name: train_csv, test_csv, train_images, test_images,
        planted_duplicates, test_truth (the hidden test labels: image_name, target) and, with `isic2019`, isic2019 (the folder),
        isic2019_ground_truth, isic2019_metadata, isic2019_images.

    Example:

    >>> paths = write_sample("/tmp/melanoma_raw", images=120, isic2019=False)
    >>> sorted(paths)[:3]
    ['planted_duplicates', 'test_csv', 'test_images']
    """
    if images < 20:
        raise ValueError(f"images must be at least 20, got {images}")
    rng = np.random.default_rng(seed)
    os.makedirs(output_dir, exist_ok=True)
    paths = {"train_csv": os.path.join(output_dir, "train.csv"), "test_csv": os.path.join(output_dir, "test.csv"),
             "train_images": os.path.join(output_dir, "jpeg", "train"),
             "test_images": os.path.join(output_dir, "jpeg", "test"),
             "planted_duplicates": os.path.join(output_dir, "planted_duplicates.csv")}
    planted_count = max(3, images // 25)
    into_2019 = planted_count // 2 if isic2019 else 0
    within_2019 = planted_count // 6 if isic2019 else 0
    within_2020 = planted_count - into_2019 - within_2019
    n_2019 = images // 2 if isic2019 else 0
    # 2020 names above ISIC_0100000 and 2019 names below, like the real releases (disjoint).
    train_names = _names(rng, images + images // 4, 100_000, 10_000_000)
    names_2019 = _names(rng, n_2019, 0, 100_000)

    train_rows = _rows_2020(rng, _patients(rng, images - within_2020, 100_000), train_names[:images], True)
    test_rows = _rows_2020(rng, _patients(rng, images // 4, 5_000_000), train_names[images:], False)
    train_images = _render(rng, train_rows, "image_name")
    planted: List[Dict] = []
    # Copies into 2019 come from images of a class 2019 has (its ground truth never marks UNK).
    known = [i for i, r in enumerate(train_rows) if r["_class"] != "unknown"]
    into = [int(i) for i in rng.choice(known, into_2019, replace=False)]
    rest = [i for i in range(len(train_rows)) if i not in into]
    originals = [train_rows[i] for i in into + [int(i) for i in rng.choice(rest, within_2020, replace=False)]]
    # 2020 copies join another patient (the harmful case: the lesion would sit in two folds)
    # who has room for one more image.
    counts: Dict[str, int] = {}
    for row in train_rows:
        counts[row["patient_id"]] = counts.get(row["patient_id"], 0) + 1
    copies_2020 = []
    for original, name in zip(originals[into_2019:], train_names[images - within_2020:images]):
        hosts = [r for r in train_rows if r["patient_id"] != original["patient_id"]
                 and counts[r["patient_id"]] < MAX_PATIENT_IMAGES]
        host = hosts[int(rng.integers(len(hosts)))]
        counts[host["patient_id"]] += 1
        copies_2020.append({**original, "image_name": name, "patient_id": host["patient_id"],
                            "sex": host["sex"], "age_approx": host["age_approx"]})
    _plant(rng, [(o["image_name"], c["image_name"]) for o, c in zip(originals[into_2019:], copies_2020)],
           train_images, train_images, "2020", "2020", planted)
    train_rows += copies_2020

    if isic2019:
        rows_2019 = _rows_2019(rng, names_2019[:n_2019 - into_2019 - within_2019])
        images_2019 = _render(rng, rows_2019, "image")
        copied = names_2019[n_2019 - into_2019 - within_2019:]
        from_2020 = [{"image": name, "_column": _column_2019(original["_class"]), "_class": original["_class"],
                      "age_approx": original["age_approx"], "sex": original["sex"], "lesion_id": "",
                      "anatom_site_general": _site_2019(rng, original["anatom_site_general_challenge"])}
                     for original, name in zip(originals[:into_2019], copied)]
        _plant(rng, [(o["image_name"], c["image"]) for o, c in zip(originals[:into_2019], from_2020)],
               train_images, images_2019, "2020", "2019", planted)
        sources = [rows_2019[i] for i in rng.choice(len(rows_2019), within_2019, replace=False)]
        from_2019 = [{**original, "image": name} for original, name in zip(sources, copied[into_2019:])]
        _plant(rng, [(o["image"], c["image"]) for o, c in zip(sources, from_2019)],
               images_2019, images_2019, "2019", "2019", planted)
        rows_2019 = sorted(rows_2019 + from_2020 + from_2019, key=lambda r: r["image"])
        directory = os.path.join(output_dir, "isic2019")
        paths.update(isic2019=directory, isic2019_ground_truth=os.path.join(directory, GROUND_TRUTH),
                     isic2019_metadata=os.path.join(directory, METADATA),
                     isic2019_images=os.path.join(directory, INPUT_2019))
        write_jpegs(paths["isic2019_images"], images_2019)
        truth = [{"image": r["image"], **{c: "1.0" if c == r["_column"] else "0.0" for c in GROUND_TRUTH_COLUMNS[1:]}}
                 for r in rows_2019]
        write_csv(paths["isic2019_ground_truth"], GROUND_TRUTH_COLUMNS, truth)
        write_csv(paths["isic2019_metadata"], METADATA_COLUMNS, rows_2019)

    write_jpegs(paths["train_images"], train_images)
    write_jpegs(paths["test_images"], _render(rng, test_rows, "image_name"))
    write_csv(paths["train_csv"], TRAIN_COLUMNS, sorted(train_rows, key=lambda r: r["image_name"]))
    write_csv(paths["test_csv"], TEST_COLUMNS, sorted(test_rows, key=lambda r: r["image_name"]))
    # Kaggle keeps the test labels; the sample writes them aside so a quickstart can score
    # its submission (nothing in the pipeline reads this file).
    paths["test_truth"] = os.path.join(output_dir, "test_truth.csv")
    write_csv(paths["test_truth"], ["image_name", "target"],
               [{"image_name": r["image_name"], "target": str(int(r["_class"] == "melanoma"))}
                for r in sorted(test_rows, key=lambda r: r["image_name"])])
    write_csv(paths["planted_duplicates"], PLANTED_COLUMNS, planted)
    return paths


def _column_2019(class_name: str) -> str:
    return next(column for column, name in melanoma_image.DIAGNOSIS_2019.items() if name == class_name)


def _site_2019(rng: np.random.Generator, site: str) -> str:
    if site == "torso":
        return _choice(rng, SITES_2019[:3])
    return site
