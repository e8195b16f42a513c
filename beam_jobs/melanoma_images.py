"""SIIM-ISIC melanoma inputs: CSVs, image conversion, near-duplicates and folds.

Plain functions, used by the Beam job (`beam_jobs.melanoma_to_tfrecords`) and usable
without Beam, so anything else that converts writes the same records.

CSVs (read by the launcher: 33k + 11k + 25k rows are small). A 2020 CSV with a `target`
column is training data and needs all of `TRAIN_COLUMNS`, one without it is test data
and needs `TEST_COLUMNS`; ISIC 2019 is its one-hot ground truth joined to its metadata by
`image` (a ground-truth row without metadata has missing metadata). Every 2019 row is
written in the 2020 columns (`values`), so one validation and one set of codes serve both:

    image_name, sex, age_approx   as they are (patient_id is empty: 2019 has no patients)
    anatom_site_general_challenge `anatom_site_general` as it is; its torso parts (anterior,
                                  posterior, lateral) get 2020's `torso` code
                                  (`melanoma_image.SITE_ALIASES`)
    diagnosis                     the ground-truth column's class name,
                                  `melanoma_image.DIAGNOSIS_2019` (MEL -> melanoma, NV -> nevus,
                                  BCC -> BCC, UNK -> unknown, ...), so melanoma, nevus and
                                  unknown share their codes with 2020's diagnosis strings
    benign_malignant, target      malignant and 1 for MEL only, as in 2020, where the two
                                  columns always agree (BCC and SCC are not the target)

Codes come from fixed vocabularies (`VOCABULARIES`: `melanoma_image.SEXES` and `SITES`, and
every 2020 diagnosis string and 2019 class name, sorted), so a code means the same in every
converted dataset; sex and site are matched in lower case, as the serving signature does.

A row is rejected (a dead letter, `reason`) when a value is invalid: an image_name that is
not a plain file name, an empty 2020 patient_id, a sex or site outside the vocabularies, an
age that is not a whole number of years in [0, 120], a target other than 0/1, an unknown
2020 diagnosis string, a diagnosis or benign_malignant that contradicts the target, a 2019
ground-truth row with no 1.0 or several, or a value other than 0.0/1.0. Then the first
valid row naming an image_name keeps it (command-line order, 2019 last); later ones are
rejected. Then a row whose `<image_name>.jpg` is not in its folder is rejected.

Images are decoded with PIL (a file that does not decode is a dead letter), centre-cropped
to a square of the short side, resized with Lanczos filtering and re-encoded as baseline
JPEG: the same input and settings give the same bytes. EXIF orientation is ignored, as
`tf.io.decode_jpeg` in training ignores it. Large JPEGs are decoded at a reduced DCT scale
(PIL's `draft`: 1/2, 1/4 or 1/8, never below the output size), which makes a 6000x4000
photograph several times cheaper to decode at the same output quality.

Near-duplicates: an image's signature (`signature`) is taken from a grey 64x64 thumbnail of
its centre square: the 256-bit perceptual hash (`imagehash.phash`, hash size 16) in each of
the 8 orientations (the symmetries of the square: identity, 3 rotations, 2 flips,
transpose, transverse), and the 16x16 DCT coefficients the hash is made of. Images A and B
match when A's identity hash is within `max_distance` bits of one of B's 8 hashes (or the
other way round) and their coefficients correlate at `min_correlation` or more in the best
of the 8 orientations, so a flipped, rotated, rescaled or re-encoded copy matches. The two
tests fail differently: a hash bit of a coefficient near the median is noise (copies of a
faint, low-contrast picture differ by many bits), while the correlation of two pictures
sharing the dermoscope's vignette and a central lesion is high; together they separate
copies from different pictures with a margin on both sides (see DEFAULT_MAX_DISTANCE).
Comparing every pair in 8 orientations is O(n^2) and too slow for 58,000 images (a quarter
of an hour), so a cheaper test picks the candidate pairs first: a spectrum that no symmetry
of the square changes (`symmetric_spectrum`), compared by cosine in one matrix product per
block; only pairs above CANDIDATE_SIMILARITY go on. (64-bit hashes were tried and rejected:
different sample pictures came within 2 of 64 bits of each other, closer than copies. A
single canonical hash, the minimum of the 8, was also tried: it is decided by the few
leading bits where the orientations differ, so noise there picks another orientation; on
the sample it moved copies further apart, never closer.) Matches are grouped transitively;
a group keeps one image (2020 before 2019, then the smallest image_name) and the others
become its duplicates. Only training images are compared: every test image is kept, and a
test image never makes a training image a duplicate.

Folds ("triple-stratified", as the winners' folds): training images go to F*S shards, shard
i in fold i // S. A group is a 2020 patient (all their images in one shard, so never in two
folds) or a single 2019 image. scikit-learn's StratifiedGroupKFold keeps groups whole while
balancing the classes of a per-image stratum across the parts; the stratum here is (source,
target, bucket of the group's image count), so each fold gets its share of melanomas, of
2019 images and of the patients with few, some and many images. StratifiedGroupKFold
balances the strata on average, which on a few hundred images still left a fold's melanoma
rate 4.6 points off; a deterministic local search (`balance_parts`) then moves groups and
swaps groups of equal size and source until each fold's image count and melanoma rate are
as close as they get (0.4 points and 2 % on the sample). It splits into F folds, then each
fold into its S shards the same way, so the folds themselves are balanced, not only shards.
"""

import csv
import io
import math
import os
import re
import warnings
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import imagehash
import numpy as np
import scipy.fft
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold

from tfrecords import UserError, melanoma_image
from tfrecords.manifest import join

TRAIN_COLUMNS = ("image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis",
                 "benign_malignant", "target")
TEST_COLUMNS = TRAIN_COLUMNS[:5]
GROUND_TRUTH_2019 = "ISIC_2019_Training_GroundTruth.csv"
METADATA_2019 = "ISIC_2019_Training_Metadata.csv"
INPUT_2019 = "ISIC_2019_Training_Input"
GROUND_TRUTH_COLUMNS = ("image", *melanoma_image.DIAGNOSIS_2019)
METADATA_COLUMNS = ("image", "age_approx", "anatom_site_general", "sex")
# The categorical columns and their code -> value lists (written as `<column>.csv`). Fixed, as
# `melanoma_image` fixes sex and site for the model and its serving signature: a code means
# the same in every converted dataset, whatever values a dataset happens to lack.
DIAGNOSES = tuple(sorted(set(melanoma_image.DIAGNOSIS_2020) | set(melanoma_image.DIAGNOSIS_2019.values())))
VOCABULARIES = {"sex": melanoma_image.SEXES, "anatom_site_general_challenge": melanoma_image.SITES,
                "diagnosis": DIAGNOSES}
SOURCE_NAMES = {melanoma_image.SOURCE_2020: "2020", melanoma_image.SOURCE_2019: "2019"}
TRAIN, TEST, DUPLICATE = "train", "test", "duplicate"
IMAGE_SUFFIX = ".jpg"
MAX_AGE = 120
# A plain file name: no directories, nothing hidden.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

HASH_SIZE = 16  # imagehash.phash of 256 bits: the 16x16 lowest DCT frequencies of a 64x64 grey image
HASH_INPUT = HASH_SIZE * 4
HASH_WORDS = HASH_SIZE * HASH_SIZE // 64
# The 8 symmetries of the square (None: the identity).
ORIENTATIONS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
                Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSPOSE,
                Image.Transpose.TRANSVERSE)
# The hashes are taken from a decoding at least this large, whatever --image-size: a JPEG
# decoded at 1/4 or 1/8 scale loses the faint detail of a low-contrast picture, and its
# copy's hash then drifts (a faint transposed sample picture: 24 bits at full scale, 52 at 1/2).
# It also makes the duplicates found the same at every --image-size.
HASH_DECODE_SIZE = 256
# Bits (of 256) two hashes may differ in and still be one picture, and the correlation
# their DCT coefficients must reach: a match passes both tests. Over 6 sample seeds, copies
# (flipped or rotated, rescaled to 0.55-0.9x, re-encoded at quality 72-92) differ by at
# most 28 bits and correlate at 0.998 or more; different pictures differ by 36 bits or
# more and correlate at 0.981 or less (tests/beam_jobs/test_melanoma_images.py measures
# seed 0). The hash test alone has a thin margin (28 < 36); the correlation decides there.
DEFAULT_MAX_DISTANCE = 40
MIN_CORRELATION = 0.99
# DCT frequencies (per axis) kept for the correlation test (the hash's own 16x16).
COEFFICIENTS = HASH_SIZE
# DCT frequencies (per axis) of the orientation-free spectrum that picks candidate pairs.
SPECTRUM_FREQUENCIES = 12
# Candidate pairs: spectra at least this similar (cosine). Copies on the sample are above
# 0.90, different pictures mostly below 0.85 (0.25 % of pairs pass); the hashes and the
# coefficients then decide.
CANDIDATE_SIMILARITY = 0.75
# At most this many candidates per image (the most similar), so a pathological set of
# near-identical pictures (blank frames) cannot fill the memory.
MAX_CANDIDATES = 128
# Shards of the test and duplicate splits: about this many images each.
IMAGES_PER_SHARD = 2000
# Buckets of a patient's image count in the fold stratum (quantiles over the patients).
COUNT_BUCKETS = 3
# What `balance_parts` aims at, as shares of the mean part size: the image count within
# 10 %, the melanoma rate within 2 points of the overall rate.
BALANCE_TOLERANCE = (0.10, 0.02)
# Spectra compared at once in the candidate search: 512 x 60k similarities is 120 MB.
_COMPARE_ROWS = 512


class Row(NamedTuple):
    """One input record: a row of a 2020 CSV, or a 2019 ground-truth row with its metadata.

    `values` holds TRAIN_COLUMNS (test rows: TEST_COLUMNS) as text; `reason` is why the
    row is rejected (None: valid); `file` and `offset` (the line number) say where it is.
    """

    file: str
    offset: int
    image_name: str
    split: str
    source: int
    values: Dict[str, str]
    reason: Optional[str] = None
    image_path: Optional[str] = None
    ground_truth: Optional[str] = None


class Signature(NamedTuple):
    """What the near-duplicate search compares of a picture (`signature`); about 1.3 KB."""

    hashes: bytes
    spectrum: bytes
    coefficients: bytes


class ConvertedImage(NamedTuple):
    """The re-encoded square JPEG, the original's size, and the picture's `signature`."""

    jpeg: bytes
    width: int
    height: int
    signature: Signature


class Fingerprint(NamedTuple):
    """What planning needs of a converted image (no pixels): the near-duplicate search and the folds."""

    image_name: str
    split: str
    source: int
    patient_id: int
    target: int
    signature: Signature
    width: int = melanoma_image.MISSING
    height: int = melanoma_image.MISSING


class Assignment(NamedTuple):
    """Where a converted image goes: split, shard index, fold (-1: none), the image it copies."""

    split: str
    shard: int
    fold: int
    duplicate_of: str
    patient_images: int


class Plan(NamedTuple):
    """Every converted image's Assignment, and the shard count of each split."""

    assignments: Dict[str, Assignment]
    shards: Dict[str, int]

    @property
    def duplicates(self) -> int:
        return sum(1 for a in self.assignments.values() if a.split == DUPLICATE)


# ---------------------------------------------------------------------------------------- CSVs


def read_csv(path: str) -> Tuple[List[str], List[Tuple[int, Dict[str, Optional[str]]]]]:
    """A CSV's header and its (line number, row) pairs; a file that cannot be parsed is a UserError.

    The line number is the physical line where a row ends (right with quoted newlines too).
    A row with more fields than the header has them under the key None; one with fewer has None values.
    """
    try:
        with FileSystems.open(path) as f:
            reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8-sig", newline=""))
            rows = [(reader.line_num, row) for row in reader]
            return list(reader.fieldnames or []), rows
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e}") from None
    except csv.Error as e:
        raise UserError(f"{path} is not a valid CSV: {e}") from None
    except (OSError, BeamIOError) as e:
        raise UserError(f"cannot read {path}: {e}") from None


def _require_columns(path: str, columns: Sequence[str], required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)} of {what} (it has: {', '.join(columns)})")


def _shape_problem(row: Dict, header: Sequence[str]) -> Optional[str]:
    if None in row:
        return f"the row has more fields than the header's {len(header)}"
    if any(value is None for value in row.values()):
        return f"the row has fewer fields than the header's {len(header)}"
    return None


def read_2020(path: str) -> Tuple[str, List[Row]]:
    """Reads a competition CSV (train.csv or test.csv): its split and its Rows, each valid or with its reason.

    A CSV with a `target` column is training data (all of TRAIN_COLUMNS required), one
    without is test data (TEST_COLUMNS); a missing column is a UserError.

    Example:

    >>> split, rows = read_2020("train.csv")
    >>> split, rows[0].values["diagnosis"], rows[0].reason
    ('train', 'nevus', None)
    """
    header, lines = read_csv(path)
    split = TRAIN if "target" in header else TEST
    columns = TRAIN_COLUMNS if split == TRAIN else TEST_COLUMNS
    _require_columns(path, header, columns, "SIIM-ISIC 2020 training data" if split == TRAIN else
                     "SIIM-ISIC 2020 test data")
    rows = []
    for line, row in lines:
        values = {c: (row.get(c) or "").strip() for c in columns}
        reason = _shape_problem(row, header) or check_values(values, split, melanoma_image.SOURCE_2020)
        rows.append(Row(path, line, values["image_name"], split, melanoma_image.SOURCE_2020, values, reason))
    return split, rows


def paths_2019(directory: str) -> Dict[str, str]:
    """The ISIC 2019 files inside `directory`, as Kaggle names them."""
    return {"ground_truth": join(directory, GROUND_TRUTH_2019), "metadata": join(directory, METADATA_2019),
            "images": join(directory, INPUT_2019)}


def read_2019(directory: str) -> List[Row]:
    """Reads ISIC 2019's ground truth joined to its metadata into Rows in the 2020 columns.

    A ground-truth row is the input record (`file` and `offset` point to it); when its
    metadata has an invalid value, the dead letter points to the metadata line instead.
    A metadata row repeated for one image: the first counts.

    Example:

    >>> rows = read_2019("isic2019")
    >>> rows[0].ground_truth, rows[0].values["diagnosis"], rows[0].values["target"]
    ('MEL', 'melanoma', '1')
    """
    paths = paths_2019(directory)
    truth_header, truth = read_csv(paths["ground_truth"])
    _require_columns(paths["ground_truth"], truth_header, GROUND_TRUTH_COLUMNS, "the ISIC 2019 ground truth")
    meta_header, meta = read_csv(paths["metadata"])
    _require_columns(paths["metadata"], meta_header, METADATA_COLUMNS, "the ISIC 2019 metadata")
    metadata: Dict[str, Tuple[int, Dict]] = {}
    for line, row in meta:
        metadata.setdefault((row.get("image") or "").strip(), (line, row))
    rows = []
    for line, row in truth:
        name = (row.get("image") or "").strip()
        column = None
        reason = _shape_problem(row, truth_header) or _name_problem(name)
        if reason is None:
            column, reason = ground_truth_column(row)
        meta_line, meta_row = metadata.get(name, (None, {}))
        diagnosis = melanoma_image.DIAGNOSIS_2019.get(column, "")
        site = (meta_row.get("anatom_site_general") or "").strip()
        values = {"image_name": name, "patient_id": "", "sex": (meta_row.get("sex") or "").strip(),
                  "age_approx": (meta_row.get("age_approx") or "").strip(),
                  "anatom_site_general_challenge": site, "diagnosis": diagnosis,
                  "benign_malignant": "malignant" if diagnosis == "melanoma" else "benign",
                  "target": "1" if diagnosis == "melanoma" else "0"}
        file, offset = paths["ground_truth"], line
        if reason is None:
            reason = _shape_problem(meta_row, meta_header) if meta_row else None
            reason = reason or _metadata_problem(values)
            if reason is not None:
                file, offset = paths["metadata"], meta_line
        rows.append(Row(file, offset, name, TRAIN, melanoma_image.SOURCE_2019, values, reason,
                        ground_truth=column))
    return rows


def ground_truth_column(row: Dict[str, str]) -> Tuple[Optional[str], Optional[str]]:
    """(the one column marked 1.0, None) of a 2019 ground-truth row, or (None, the reason it has none)."""
    marked = []
    for column in GROUND_TRUTH_COLUMNS[1:]:
        text = (row.get(column) or "").strip()
        try:
            value = float(text)
        except ValueError:
            value = None
        if value not in (0.0, 1.0):
            return None, f"ground truth {column} is {text!r}, expected 0.0 or 1.0"
        if value == 1.0:
            marked.append(column)
    if not marked:
        return None, "no ground-truth class is 1.0"
    if len(marked) > 1:
        return None, f"several ground-truth classes are 1.0 ({', '.join(marked)})"
    return marked[0], None


def _name_problem(name: str) -> Optional[str]:
    if not name:
        return "image_name is empty"
    if not _FILE_NAME.match(name):
        return f"image_name {name!r} is not a plain file name"
    return None


def _age_problem(text: str) -> Optional[str]:
    if not text:
        return None
    try:
        age = float(text)
    except ValueError:
        return f"age_approx {text!r} is not a number"
    if not (0 <= age <= MAX_AGE and age == int(age)):
        return f"age_approx {text!r} is not a whole number of years in [0, {MAX_AGE}]"
    return None


def site_value(text: str) -> str:
    """A site as `melanoma_image.SITES` spells it: lower case, 2019's torso parts merged ("" stays "")."""
    text = text.strip().lower()
    return melanoma_image.SITE_ALIASES.get(text, text)


def _metadata_problem(values: Dict[str, str]) -> Optional[str]:
    sex, site = values["sex"].lower(), site_value(values["anatom_site_general_challenge"])
    if sex and sex not in melanoma_image.SEXES:
        return f"unknown sex {values['sex']!r} (known: {', '.join(melanoma_image.SEXES)})"
    if site and site not in melanoma_image.SITES:
        return (f"unknown anatom_site_general_challenge {values['anatom_site_general_challenge']!r} "
                f"(known: {', '.join(melanoma_image.SITES)}, and {', '.join(melanoma_image.SITE_ALIASES)})")
    return _age_problem(values["age_approx"])


def check_values(values: Dict[str, str], split: str, source: int) -> Optional[str]:
    """Why a row's values are invalid (see the module doc), or None."""
    problem = _name_problem(values["image_name"]) or _metadata_problem(values)
    if problem:
        return problem
    if source == melanoma_image.SOURCE_2020 and not values["patient_id"]:
        return "patient_id is empty"
    if split != TRAIN:
        return None
    target, diagnosis, benign_malignant = values["target"], values["diagnosis"], values["benign_malignant"]
    if target not in ("0", "1"):
        return f"target {target!r} is not 0 or 1"
    if source == melanoma_image.SOURCE_2020 and diagnosis not in melanoma_image.DIAGNOSIS_2020:
        return f"unknown diagnosis {diagnosis!r} (known: {', '.join(sorted(melanoma_image.DIAGNOSIS_2020))})"
    if (diagnosis == "melanoma") != (target == "1"):
        return f"diagnosis {diagnosis!r} contradicts target {target}"
    if benign_malignant not in ("benign", "malignant"):
        return f"benign_malignant {benign_malignant!r} is not benign or malignant"
    if (benign_malignant == "malignant") != (target == "1"):
        return f"benign_malignant {benign_malignant!r} contradicts target {target}"
    return None


def reject_repeated_names(rows: Sequence[Row]) -> List[Row]:
    """The first valid row of each image_name keeps it; later valid ones get a reason.

    Example:

    >>> [r.reason for r in reject_repeated_names(rows_2020 + rows_2019)][-1]
    'image_name ISIC_0000002 repeats train.csv:4'
    """
    first: Dict[str, Row] = {}
    result = []
    for row in rows:
        if row.reason is None:
            if row.image_name in first:
                kept = first[row.image_name]
                row = row._replace(reason=f"image_name {row.image_name} repeats {kept.file}:{kept.offset}")
            else:
                first[row.image_name] = row
        result.append(row)
    return result


def list_images(directory: str, what: str = "--images") -> Dict[str, str]:
    """image_name -> path of every `*.jpg` directly in `directory`; not a directory is a UserError.

    `what` names the folder in that error (the flag that gave it).
    """
    if "://" not in directory:
        if not os.path.isdir(directory):
            raise UserError(f"{what} {directory} is not a directory")
        with os.scandir(directory) as entries:
            names = [e.name for e in entries if e.is_file()]
    else:
        try:
            matched = FileSystems.match([join(directory.rstrip("/"), "*" + IMAGE_SUFFIX)])[0].metadata_list
        except (BeamIOError, ValueError) as e:
            raise UserError(f"cannot list {directory}: {e}") from None
        names = [m.path.rsplit("/", 1)[-1] for m in matched]
    return {n[:-len(IMAGE_SUFFIX)]: join(directory, n) for n in names if n.endswith(IMAGE_SUFFIX)}


def attach_images(rows: Sequence[Row], directory: str, what: str = "--images") -> Tuple[List[Row], int]:
    """Gives each row its image path (a valid row without a file is rejected); also the unlisted count.

    Unlisted: images in `directory` that no row names (valid or not); they are counted, not converted.

    Example:

    >>> rows, unlisted = attach_images(rows, "jpeg/train")
    >>> rows[0].image_path, unlisted
    ('jpeg/train/ISIC_2637011.jpg', 0)
    """
    images = list_images(directory, what)
    named = {row.image_name for row in rows}
    attached = []
    for row in rows:
        path = images.get(row.image_name, join(directory, row.image_name + IMAGE_SUFFIX))
        if row.reason is None and row.image_name not in images:
            row = row._replace(reason=f"image file not found: {path}")
        attached.append(row._replace(image_path=path))
    return attached, sum(1 for name in images if name not in named)


def patient_codes(rows: Iterable[Row]) -> Dict[str, int]:
    """patient_id -> its place among the sorted patient ids of the valid rows."""
    return {p: i for i, p in enumerate(sorted({r.values["patient_id"] for r in rows
                                               if r.reason is None and r.values.get("patient_id")}))}


def row_element(row: Row, patients: Dict[str, int]) -> Dict:
    """A Row as the pipeline's JSON element: where it is, its image, and its values as record codes."""
    element = {"file": row.file, "offset": row.offset, "image_name": row.image_name, "image_path": row.image_path,
               "split": row.split, "source": row.source, "reason": row.reason}
    if row.reason is not None:
        return element
    values, missing = row.values, melanoma_image.MISSING

    def code(column, value):
        return VOCABULARIES[column].index(value) if value else missing

    element.update(patient_id=patients.get(values["patient_id"], missing), sex=code("sex", values["sex"].lower()),
                   age_approx=int(float(values["age_approx"])) if values["age_approx"] else missing,
                   site=code("anatom_site_general_challenge", site_value(values["anatom_site_general_challenge"])),
                   diagnosis=missing, target=missing, class_index=missing)
    if row.split == TRAIN:
        label = row.ground_truth if row.source == melanoma_image.SOURCE_2019 else values["diagnosis"]
        element.update(diagnosis=code("diagnosis", values["diagnosis"]), target=int(values["target"]),
                       class_index=melanoma_image.class_of(label, row.source))
    return element


# -------------------------------------------------------------------------------------- images


def center_square(image: Image.Image) -> Image.Image:
    """The largest centred square (the short side); an odd margin leaves the extra pixel right or below."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def convert_image(data: bytes, image_size: int, quality: int) -> Union[ConvertedImage, str]:
    """Decodes, centre-crops, resizes to `image_size` and re-encodes one image; or why it cannot.

    Args:
        data: the original file's bytes (any format PIL reads; ISIC's are JPEG).
        image_size: the side of the square output.
        quality: JPEG quality of the output (1-100).

    Returns:
        A ConvertedImage (same input, same bytes), or the reason as a string.

    Example:

    >>> converted = convert_image(open("ISIC_0015719.jpg", "rb").read(), 512, 95)
    >>> converted.width, converted.height, len(converted.jpeg) > 0
    (6000, 4000, True)
    """
    try:
        with Image.open(io.BytesIO(data)) as original:
            width, height = original.size
            # Decodes at 1/2, 1/4 or 1/8 scale where the result stays at least image_size (and
            # HASH_DECODE_SIZE) on its short side (JPEG only; other formats ignore it).
            decode_size = max(image_size, HASH_DECODE_SIZE)
            original.draft("RGB", (decode_size, decode_size))
            image = original.convert("RGB")  # decodes: a truncated or corrupt file raises here
    except Exception as e:  # PIL raises many types for bad data (OSError, SyntaxError, ValueError, ...)
        return f"image does not decode: {type(e).__name__}: {e}"
    square = center_square(image)
    buffer = io.BytesIO()
    square.resize((image_size, image_size), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=quality)
    return ConvertedImage(buffer.getvalue(), width, height, signature(square))


def signature(square: Image.Image) -> Signature:
    """The near-duplicate signature of a square picture, from its grey 64x64 thumbnail.

    hashes: the 256-bit perceptual hash (`imagehash.phash`, HASH_SIZE 16) of each of the
    8 ORIENTATIONS, identity first, 32 bytes each. The thumbnail is made once and turned
    8 ways, so a flipped or rotated copy has the same 8 hashes in another order, up to
    resampling and re-encoding noise.

    coefficients: the 16x16 lowest DCT coefficients of the thumbnail (the ones phash
    thresholds at their median), without the mean brightness, scaled to length 1, float16.
    phash's bits for coefficients near the median are noise; their correlation weighs each
    coefficient by its strength instead.

    spectrum: float32 values that no symmetry of the square changes (`symmetric_spectrum`).

    Example:

    >>> a, b = signature(square), signature(square.transpose(Image.Transpose.ROTATE_90))
    >>> hash_distance(a, b) <= DEFAULT_MAX_DISTANCE and correlation(a, b) >= MIN_CORRELATION
    True
    """
    grey = square.convert("L").resize((HASH_INPUT, HASH_INPUT), Image.Resampling.LANCZOS)
    hashes = b"".join(np.packbits(imagehash.phash(grey if o is None else grey.transpose(o), HASH_SIZE).hash)
                      .tobytes() for o in ORIENTATIONS)
    pixels = np.asarray(grey, dtype=np.float64)
    coefficients = scipy.fft.dctn(pixels, type=2, norm="ortho")[:COEFFICIENTS, :COEFFICIENTS]
    coefficients[0, 0] = 0.0  # the mean brightness: re-encoding and rescaling shift it
    norm = np.linalg.norm(coefficients)
    coefficients = coefficients / norm if norm > 0 else coefficients
    return Signature(hashes, symmetric_spectrum(pixels).astype(np.float32).tobytes(),
                     coefficients.astype(np.float16).tobytes())


def symmetric_spectrum(pixels: np.ndarray, frequencies: int = SPECTRUM_FREQUENCIES) -> np.ndarray:
    """A unit vector describing a square grey image, the same for all 8 of its orientations.

    A flip negates the DCT coefficients of odd frequency along its axis and a transpose
    swaps the axes, so the magnitudes |c(u, u)|, |c(u, v)| + |c(v, u)| and
    ||c(u, v)| - |c(v, u)|| (u < v) do not change under any symmetry of the square.
    Their logarithms, centred and scaled to length 1, compare by a dot product (cosine).
    """
    coefficients = scipy.fft.dctn(pixels, type=2, norm="ortho")[:frequencies, :frequencies]
    magnitude = np.abs(coefficients)
    upper = np.triu_indices(frequencies, 1)
    values = np.log1p(np.concatenate([np.diag(magnitude)[1:], (magnitude + magnitude.T)[upper],
                                      np.abs(magnitude - magnitude.T)[upper]]))
    values -= values.mean()
    norm = np.linalg.norm(values)
    return values / norm if norm > 0 else values


# ------------------------------------------------------------------------------ near-duplicates


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # NumPy >= 2
        return np.bitwise_count(values)
    return np.unpackbits(values.view(np.uint8).reshape(*values.shape, 8), axis=-1).sum(axis=-1)


class _Signatures(NamedTuple):
    """Many signatures unpacked into arrays: hashes (n, 8, words), spectra (n, d), coefficients (n, k, k)."""

    hashes: np.ndarray
    spectra: np.ndarray
    coefficients: np.ndarray

    @classmethod
    def of(cls, signatures: Sequence[Signature]) -> "_Signatures":
        n = len(signatures)
        hashes = np.frombuffer(b"".join(s.hashes for s in signatures), dtype=">u8").astype(np.uint64)
        spectra = np.frombuffer(b"".join(s.spectrum for s in signatures), dtype=np.float32)
        coefficients = np.frombuffer(b"".join(s.coefficients for s in signatures), dtype=np.float16)
        return cls(hashes.reshape(n, len(ORIENTATIONS), HASH_WORDS), spectra.reshape(n, -1),
                   coefficients.astype(np.float32).reshape(n, COEFFICIENTS, COEFFICIENTS))


def hash_distance(a: Signature, b: Signature) -> int:
    """Bits in which one picture's hash differs from the other's in the best-matching orientation.

    The smaller of (a's identity hash against b's 8) and (b's identity hash against a's 8).

    Example:

    >>> hash_distance(picture.signature, flipped_copy.signature) <= DEFAULT_MAX_DISTANCE
    True
    """
    return int(_pair_distances(_Signatures.of([a, b]).hashes, np.array([0]), np.array([1]))[0])


def correlation(a: Signature, b: Signature) -> float:
    """The correlation of two pictures' DCT coefficients in the best-matching orientation (1: identical).

    Example:

    >>> correlation(picture.signature, flipped_copy.signature) >= MIN_CORRELATION
    True
    """
    return float(_pair_correlations(_Signatures.of([a, b]).coefficients, np.array([0]), np.array([1]))[0])


def _blocks(first: np.ndarray, second: np.ndarray, block: int = 65536):
    for k in range(0, len(first), block):
        yield first[k:k + block], second[k:k + block]


def _pair_distances(hashes: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`hash_distance` of each pair (first[k], second[k]), in blocks of pairs (64k pairs: 128 MB)."""
    def one_way(query, other):
        return _popcount(hashes[query, 0][:, None, :] ^ hashes[other]).sum(axis=2, dtype=np.int64).min(axis=1)

    distances = [np.minimum(one_way(i, j), one_way(j, i)) for i, j in _blocks(first, second)]
    return np.concatenate(distances) if distances else np.zeros(0, np.int64)


def _pair_correlations(coefficients: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`correlation` of each pair (first[k], second[k]).

    The 8 symmetries act on DCT coefficients exactly: a flip negates the odd frequencies
    along its axis (rows, columns or both), a transpose swaps the axes.
    """
    odd = np.array([-1.0 if k % 2 else 1.0 for k in range(coefficients.shape[1])], dtype=np.float32)
    signs = [np.outer(rows, columns) for rows in (np.ones_like(odd), odd) for columns in (np.ones_like(odd), odd)]
    result = []
    for i, j in _blocks(first, second):
        a, b = coefficients[i], coefficients[j]
        best = np.full(len(i), -np.inf, dtype=np.float32)
        for turned in (b, b.transpose(0, 2, 1)):
            for sign in signs:
                best = np.maximum(best, (a * turned * sign).sum(axis=(1, 2)))
        result.append(best)
    return np.concatenate(result) if result else np.zeros(0, np.float32)


def candidate_pairs(spectra: np.ndarray, min_similarity: float = CANDIDATE_SIMILARITY,
                    max_candidates: int = MAX_CANDIDATES) -> Tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) whose symmetric spectra have cosine >= min_similarity: the pairs worth comparing.

    One matrix product per block of rows: about 10 s for 60,000 images on one core, where
    comparing all pairs' hashes in their 8 orientations takes a quarter of an hour.

    Args:
        spectra: (n, d) float32 unit vectors (`symmetric_spectrum`).
        min_similarity: the cosine a pair needs.
        max_candidates: per image, the most similar this many at most.

    Example:

    >>> first, second = candidate_pairs(np.eye(3, dtype=np.float32)[[0, 1, 0]])
    >>> first.tolist(), second.tolist()
    ([0], [2])
    """
    spectra = np.asarray(spectra, dtype=np.float32)
    first, second = [], []
    for start in range(0, len(spectra), _COMPARE_ROWS):
        # Against this block and every later image only: the pairs before were seen already.
        similarity = spectra[start:start + _COMPARE_ROWS] @ spectra[start:].T
        rows, columns = np.nonzero(similarity >= min_similarity)
        later = columns > rows
        rows, columns = rows[later], columns[later]
        if len(rows) and np.bincount(rows).max() > max_candidates:
            # The most similar of each row, ties by index: the same pairs on every run.
            order = np.lexsort((columns, -similarity[rows, columns], rows))
            rows, columns = rows[order], columns[order]
            rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
            rows, columns = rows[rank < max_candidates], columns[rank < max_candidates]
        first.append(rows + start)
        second.append(columns + start)
    if not first:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(first).astype(np.int64), np.concatenate(second).astype(np.int64)


def duplicate_groups(signatures: Sequence[Signature], max_distance: int = DEFAULT_MAX_DISTANCE,
                     min_correlation: float = MIN_CORRELATION) -> List[List[int]]:
    """Groups of indexes (2 or more, each sorted, sorted by first) of mutually near-duplicate images.

    Args:
        signatures: each image's `signature`.
        max_distance: bits two pictures' hashes may differ in (`hash_distance`) and still match.
        min_correlation: the `correlation` two matching pictures' coefficients reach at least.

    Groups are the connected components of the matches (a chain of copies is one group).

    Example:

    >>> duplicate_groups([a.signature, b.signature, flipped_a.signature])
    [[0, 2]]
    """
    n = len(signatures)
    if n < 2:
        return []
    unpacked = _Signatures.of(signatures)
    first, second = candidate_pairs(unpacked.spectra)
    near = _pair_distances(unpacked.hashes, first, second) <= max_distance
    first, second = first[near], second[near]
    near = _pair_correlations(unpacked.coefficients, first, second) >= min_correlation
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(first[near].tolist(), second[near].tolist()):
        i, j = root(i), root(j)
        if i != j:
            parent[max(i, j)] = min(i, j)
    members: Dict[int, List[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


def find_duplicates(fingerprints: Sequence[Fingerprint], max_distance: int = DEFAULT_MAX_DISTANCE,
                    min_correlation: float = MIN_CORRELATION) -> Dict[str, str]:
    """image_name -> the image_name it duplicates, for the training images that are flagged.

    Each group keeps its 2020 image with the smallest name (or, without one, its smallest
    name); test images are not compared (see the module doc).

    Example:

    >>> find_duplicates([Fingerprint("ISIC_2", "train", 0, 4, 0, a.signature),
    ...                  Fingerprint("ISIC_1", "train", 1, -1, 0, flipped_a.signature)])
    {'ISIC_1': 'ISIC_2'}
    """
    train = sorted((f for f in fingerprints if f.split == TRAIN), key=lambda f: (f.source, f.image_name))
    duplicates = {}
    for group in duplicate_groups([f.signature for f in train], max_distance, min_correlation):
        kept = train[group[0]].image_name  # sorted by (source, name): 2020 first, then the name
        for i in group[1:]:
            duplicates[train[i].image_name] = kept
    return duplicates


# ---------------------------------------------------------------------------------------- folds


def _group_key(f: Fingerprint) -> str:
    # A 2019 image has no patient: it is a group of its own.
    return f"patient {f.patient_id}" if f.patient_id != melanoma_image.MISSING else f"image {f.image_name}"


def fold_strata(items: Sequence[Fingerprint], groups: Sequence[str]) -> np.ndarray:
    """Each image's stratum: (source, target, bucket of its group's image count) as one integer.

    The buckets are quantiles of the 2020 patients' image counts (COUNT_BUCKETS of them), so
    patients with few, some and many images each spread evenly over the folds.
    """
    names, sizes = np.unique(np.asarray(groups), return_counts=True)
    size_of = dict(zip(names.tolist(), sizes.tolist()))
    patient_sizes = [size_of[g] for g, f in zip(groups, items) if f.patient_id != melanoma_image.MISSING]
    edges = (np.unique(np.quantile(patient_sizes, np.linspace(0, 1, COUNT_BUCKETS + 1)[1:-1]))
             if patient_sizes else np.array([]))
    buckets = np.searchsorted(edges, [size_of[g] for g in groups], side="left")
    sources = np.array([f.source for f in items])
    targets = np.array([max(f.target, 0) for f in items])
    return (sources * 2 + targets) * COUNT_BUCKETS + buckets


def split_groups(strata: np.ndarray, groups: Sequence[str], parts: int, seed: int) -> np.ndarray:
    """Each item's part in [0, parts): groups kept whole, strata balanced (StratifiedGroupKFold).

    With fewer groups than parts, each group gets a part of its own, largest first, and
    the rest stay empty. Deterministic for the items' order and `seed`.
    """
    groups = np.asarray(groups)
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if parts == 1 or len(unique) == 0:
        return np.zeros(len(groups), dtype=np.int64)
    if len(unique) < parts:
        order = sorted(range(len(unique)), key=lambda g: (-counts[g], unique[g]))
        rank = np.empty(len(unique), dtype=np.int64)
        rank[order] = np.arange(len(unique))
        return rank[inverse]
    part = np.zeros(len(groups), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=parts, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class in y has only N members": expected for rare strata.
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(groups)), strata, groups)):
            part[held_out] = k
    return part


def balance_parts(part: np.ndarray, sizes: np.ndarray, positives: np.ndarray, kinds: np.ndarray, parts: int,
                  tolerance: Tuple[float, float] = BALANCE_TOLERANCE, max_steps: int = 100_000) -> np.ndarray:
    """Refines a group -> part assignment: moves and swaps groups while the imbalance drops.

    The imbalance of a part is its image count's deviation from the mean and its positives'
    deviation from the overall rate, each in units of `tolerance` (a share of the mean part
    size: 10 % for images, 2 points of rate for positives; at least one image), squared and
    summed over parts.
    Moves take a group to another part; swaps exchange two groups of the same kind and size
    with different positives, which changes nothing but the melanoma counts (a 2019 image
    for another, a patient for a patient of as many images). Each step takes the best
    improvement, ties broken by part and group index, so the result is deterministic.

    Args:
        part: the part of each group (StratifiedGroupKFold's, for example).
        sizes, positives: images and melanomas of each group.
        kinds: what must match for a swap (the source).
        parts: the number of parts.

    Returns:
        The refined part of each group.

    Example:

    >>> balance_parts(np.array([0, 0, 1, 1]), np.ones(4, int), np.array([1, 1, 0, 0]), np.zeros(4, int), 2)
    array([1, 0, 0, 1])
    """
    part = np.array(part, dtype=np.int64)
    if parts < 2 or len(part) < 2 or sizes.sum() == 0:
        return part
    # Never under one image: a tolerance a single image exceeds would favour an empty part
    # (whose rate cannot be off) over a fair share of a tiny dataset.
    size_tolerance = max(tolerance[0] * sizes.sum() / parts, 1.0)
    rate_tolerance = max(tolerance[1] * sizes.sum() / parts, 1.0)
    mean, rate = sizes.sum() / parts, positives.sum() / sizes.sum()
    count = np.bincount(part, weights=sizes, minlength=parts)
    positive = np.bincount(part, weights=positives, minlength=parts)

    def cost(n, m):
        return ((n - mean) / size_tolerance) ** 2 + ((m - rate * n) / rate_tolerance) ** 2

    # (part, kind, size, positives) -> its groups, lowest index first; (kind, size) -> positives seen.
    members: Dict[Tuple[int, int, int, int], List[int]] = {}
    swappable: Dict[Tuple[int, int], set] = {}
    for g in range(len(part)):
        members.setdefault((int(part[g]), int(kinds[g]), int(sizes[g]), int(positives[g])), []).append(g)
        swappable.setdefault((int(kinds[g]), int(sizes[g])), set()).add(int(positives[g]))
    for _ in range(max_steps):
        best = (-1e-9, None)
        for (a, kind, size, pos), groups in sorted(members.items()):
            if not groups:
                continue
            here = cost(count[a], positive[a])
            for b in range(parts):
                if b == a:
                    continue
                there = cost(count[b], positive[b])
                gain = (cost(count[a] - size, positive[a] - pos) + cost(count[b] + size, positive[b] + pos)
                        - here - there)
                if gain < best[0]:
                    best = (gain, ("move", a, b, (a, kind, size, pos), None))
                for other in sorted(swappable[(kind, size)]):
                    if other == pos or not members.get((b, kind, size, other)):
                        continue
                    shift = pos - other
                    gain = (cost(count[a], positive[a] - shift) + cost(count[b], positive[b] + shift) - here - there)
                    if gain < best[0]:
                        best = (gain, ("swap", a, b, (a, kind, size, pos), (b, kind, size, other)))
        if best[1] is None:
            break
        action, a, b, key, other_key = best[1]
        group = members[key].pop(0)
        part[group] = b
        _insert(members, (b, *key[1:]), group)
        count[a] -= key[2]
        count[b] += key[2]
        positive[a] -= key[3]
        positive[b] += key[3]
        if action == "swap":
            partner = members[other_key].pop(0)
            part[partner] = a
            _insert(members, (a, *other_key[1:]), partner)
            count[b] -= other_key[2]
            count[a] += other_key[2]
            positive[b] -= other_key[3]
            positive[a] += other_key[3]
    return part


def _insert(members: Dict, key, group: int) -> None:
    groups = members.setdefault(key, [])
    groups.insert(int(np.searchsorted(groups, group)), group)


def _sub_seed(seed: int, *path: int) -> int:
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def _split_and_balance(strata: np.ndarray, groups: np.ndarray, sizes: np.ndarray, positives: np.ndarray,
                       kinds: np.ndarray, inverse: np.ndarray, parts: int, seed: int) -> np.ndarray:
    """The part of each group: StratifiedGroupKFold over the images, then `balance_parts`."""
    item_part = split_groups(strata, groups, parts, seed)
    group_part = np.zeros(len(sizes), dtype=np.int64)
    group_part[inverse] = item_part
    return balance_parts(group_part, sizes, positives, kinds, parts)


def assign_shards(items: Sequence[Fingerprint], folds: int, shards_per_fold: int, seed: int) -> Dict[str, int]:
    """image_name -> shard in [0, folds * shards_per_fold) of each training image; fold = shard // S.

    Splits into folds first, then each fold into its shards, both with StratifiedGroupKFold
    (`split_groups` over `fold_strata`) refined by `balance_parts`; a patient's images
    share one shard.

    Example:

    >>> shards = assign_shards(fingerprints, folds=5, shards_per_fold=3, seed=0)
    >>> sorted(set(shards.values()))[:4]
    [0, 1, 2, 3]
    """
    # Sorted, so the order Beam delivers the images in changes nothing.
    items = sorted(items, key=lambda f: (_group_key(f), f.image_name))
    if not items:
        return {}
    groups = np.array([_group_key(f) for f in items])
    strata = fold_strata(items, groups)
    keys, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse).astype(np.int64)
    positives = np.bincount(inverse, weights=[max(f.target, 0) for f in items]).astype(np.int64)
    kinds = np.zeros(len(keys), dtype=np.int64)
    kinds[inverse] = [f.source for f in items]
    fold = _split_and_balance(strata, groups, sizes, positives, kinds, inverse, folds, _sub_seed(seed, 0))
    shard = np.zeros(len(keys), dtype=np.int64)
    for k in range(folds):
        mine = np.nonzero(fold == k)[0]  # groups of fold k
        if not len(mine):
            continue
        local = np.full(len(keys), -1)
        local[mine] = np.arange(len(mine))
        images = np.nonzero(fold[inverse] == k)[0]
        within = _split_and_balance(strata[images], groups[images], sizes[mine], positives[mine], kinds[mine],
                                    local[inverse[images]], shards_per_fold, _sub_seed(seed, 1, k))
        shard[mine] = k * shards_per_fold + within
    return {f.image_name: int(s) for f, s in zip(items, shard[inverse])}


def even_shards(names: Iterable[str], shards: int) -> Dict[str, int]:
    """name -> shard: the sorted names cut into `shards` contiguous runs of (nearly) equal length.

    Example:

    >>> even_shards(["c", "a", "b"], 2)
    {'a': 0, 'b': 0, 'c': 1}
    """
    names = sorted(names)
    return {name: i * shards // len(names) for i, name in enumerate(names)}


def shard_count(images: int, per_shard: int = IMAGES_PER_SHARD) -> int:
    """Shards for `images` images at about `per_shard` each (none for no images)."""
    return max(1, math.ceil(images / per_shard)) if images else 0


def plan_dataset(fingerprints: Sequence[Fingerprint], folds: int, shards_per_fold: int, seed: int,
                 test_shards: Optional[int] = None, max_distance: int = DEFAULT_MAX_DISTANCE,
                 min_correlation: float = MIN_CORRELATION) -> Plan:
    """Decides every converted image's split, shard and fold, and which are duplicates.

    Args:
        fingerprints: one per converted image (train and test).
        folds, shards_per_fold: the training split has folds * shards_per_fold shards.
        seed: of the fold assignment.
        test_shards: shards of the test split (default: one per IMAGES_PER_SHARD images).
        max_distance, min_correlation: of the near-duplicate search (`duplicate_groups`).

    Returns:
        A Plan. Training splits into `train` (in folds) and `duplicate` (fold -1);
        patient_images counts a patient's converted images, duplicates included
        (1 for 2019 images).

    Example:

    >>> plan = plan_dataset(fingerprints, folds=5, shards_per_fold=3, seed=0)
    >>> plan.assignments["ISIC_0015719"]
    Assignment(split='train', shard=4, fold=1, duplicate_of='', patient_images=3)
    """
    duplicates = find_duplicates(fingerprints, max_distance, min_correlation)
    train = [f for f in fingerprints if f.split == TRAIN and f.image_name not in duplicates]
    test = [f.image_name for f in fingerprints if f.split == TEST]
    copies = sorted(duplicates)
    per_patient: Dict[int, int] = {}
    for f in fingerprints:
        per_patient[f.patient_id] = per_patient.get(f.patient_id, 0) + 1
    shards = {}
    if train or copies:
        shards[TRAIN] = folds * shards_per_fold
    if test:
        shards[TEST] = min(len(test), test_shards or shard_count(len(test)))
    if copies:
        shards[DUPLICATE] = shard_count(len(copies))

    def patient_images(f: Fingerprint) -> int:
        return 1 if f.patient_id == melanoma_image.MISSING else per_patient[f.patient_id]

    by_name = {f.image_name: f for f in fingerprints}
    assignments = {}
    for name, shard in assign_shards(train, folds, shards_per_fold, seed).items():
        assignments[name] = Assignment(TRAIN, shard, shard // shards_per_fold, "", patient_images(by_name[name]))
    for split, names in ((TEST, test), (DUPLICATE, copies)):
        for name, shard in even_shards(names, shards.get(split, 1)).items():
            assignments[name] = Assignment(split, shard, melanoma_image.MISSING, duplicates.get(name, ""),
                                           patient_images(by_name[name]))
    return Plan(assignments, shards)
