"""Sample IndoML 2024 datathon data (NielsenIQ receipt lines) in the datathon's own format.

Used by `yt8m-keras sample taxonomy --output DIR [--products N] [--seed S]`, and by the
quickstart, through `write_sample`. The datathon shipped JSON lines, one product per line,
features and labels in separate files joined on `indoml_id`:

    train.features   {"indoml_id": 0, "description": "BRGBLT YOG STRAWB 4X125G", "retailer": "retailer_3", "price": 2.49}
    train.labels     {"indoml_id": 0, "supergroup": "Food", "group": "Dairy", "module": "Yogurt", "brand": "Bergblüte"}
    test.features    as train.features
    test.labels      NOT shipped by the datathon (see below)

The task: predict the four labels, a path down the hierarchy `HIERARCHY` (supergroup >
group > module) plus the brand, from a receipt line. What the lines look like, and why:

- a receipt line is a brand form (full, a fixed abbreviation, the first word, initials, or a
  typo: a dropped or swapped letter), usually a product-type word from the module's own
  synonyms and abbreviations ("YOG", "YOGHRT", "YGT"; this is the module's signal), flavour
  or variant words ("STRAWB", "LT", "CHOC"), a size ("4X125G", "1.5L") and sometimes noise
  (promo codes "PRM", "2FOR1", SKU-like digits);
- one line in ten has no product-type word, so only the brand, the variant and the size hint
  at the module (a brand is valid under 1-4 modules, so the brand alone does not settle it);
- brands are shared across modules (a dairy brand makes yogurt and cheese, a cola brand
  energy drinks) and modules across brands, so neither label determines the other;
- (module, brand) paths have a Zipf-like frequency (`PATH_WEIGHTS`): the majority path is a
  few percent of the lines, the rare paths a handful;
- eight retailers with their own habits (`RETAILERS`): one truncates to 20 characters, one
  lower-cases, one drops accents, one puts an SKU code first, ...;
- price: log-normal around the module's median, scaled by pack size and brand premium.

Deliberate differences from the real data: far fewer modules and brands (21 and 25, against
hundreds and thousands) so a tiny model trained for minutes on a few thousand lines learns
most of it; fictional brands (two with non-ASCII letters, as real labels have); and the
sample writes the hidden test labels to `test.labels` so a quickstart can score its
predictions (nothing in training reads that file).

Train and test split the products about 80/20; the first line of each path goes to train,
so test paths appear in train whenever the sample has room for them. Ids are unique across
both files. The same seed writes the same bytes.

Example:

>>> paths = write_sample("/tmp/taxonomy_raw", products=200)
>>> sorted(paths)
['test_features', 'test_labels', 'train_features', 'train_labels']
"""

import json
import math
import os
import unicodedata
from typing import Dict, List, Sequence, Tuple

import numpy as np

FEATURE_KEYS = ("indoml_id", "description", "retailer", "price")
LABEL_KEYS = ("indoml_id", "supergroup", "group", "module", "brand")
FILES = {"train_features": "train.features", "train_labels": "train.labels",
         "test_features": "test.features", "test_labels": "test.labels"}
TEST_SHARE = 0.2
MIN_PRODUCTS = 5

# module -> (supergroup, group, product-type words, variant words, (size, price factor) pairs,
# median price). The first product-type word is the full name, the rest are the synonyms and
# abbreviations receipts use; no word belongs to two modules (it is the module's signal).
MODULES = {
    "Yogurt": ("Food", "Dairy", ("YOGURT", "YOG", "YOGHURT", "YGT", "YOGHRT"),
               ("STRAWB", "STRAWBERRY", "VAN", "VANILLA", "GREEK", "NAT", "LT", "PEACH"),
               (("4X125G", 1.0), ("500G", 1.1), ("150G", 0.35), ("1KG", 2.0)), 2.2),
    "Cheese": ("Food", "Dairy", ("CHEESE", "CHS", "CHSE", "CHEEZ"),
               ("CHEDDAR", "CHED", "MOZZ", "GOUDA", "SLICES", "GRATED", "MATURE", "LT"),
               (("200G", 1.0), ("400G", 1.8), ("12SL", 1.1), ("1KG", 4.0)), 3.5),
    "Milk": ("Food", "Dairy", ("MILK", "MLK", "MIL"),
             ("WHOLE", "SEMI", "SKIMMED", "UHT", "FRESH", "LT", "LACT FREE"),
             (("1L", 1.0), ("2L", 1.8), ("500ML", 0.6), ("1.5L", 1.4)), 1.1),
    "Potato Chips": ("Food", "Snacks", ("POTATO CHIPS", "CHIPS", "CRISPS", "PTT CHPS", "CRSP"),
                     ("SALTED", "PAPRIKA", "SOUR CRM", "BBQ", "SALT VIN", "ONION"),
                     (("150G", 1.0), ("45G", 0.4), ("200G", 1.3), ("6X25G", 1.4)), 1.9),
    "Biscuits": ("Food", "Snacks", ("BISCUITS", "BISC", "BSCT", "COOKIES", "CKIES"),
                 ("CHOC", "CHOC CHIP", "OAT", "BUTTER", "DIGESTIVE", "CRM", "GINGER"),
                 (("200G", 1.0), ("300G", 1.4), ("150G", 0.8), ("3X200G", 2.6)), 1.6),
    "Chocolate": ("Food", "Snacks", ("CHOCOLATE", "CHOC BAR", "CHCLT", "CHOCO"),
                  ("MILK", "DARK", "HAZELNUT", "70%", "WHITE", "ALMOND", "CARAMEL"),
                  (("100G", 1.0), ("45G", 0.5), ("200G", 1.8), ("5X40G", 1.9)), 2.0),
    "Breakfast Cereal": ("Food", "Breakfast", ("CEREAL", "CRL", "FLAKES", "FLKS", "MUESLI", "GRANOLA"),
                         ("CORN", "HONEY", "CHOC", "OAT", "FRUIT", "NUT", "WHOLEGRAIN"),
                         (("375G", 1.0), ("500G", 1.3), ("750G", 1.9), ("1KG", 2.4)), 3.2),
    "Spreads": ("Food", "Breakfast", ("SPREAD", "SPRD", "JAM", "CONFITURE", "CONF"),
                ("HAZELNUT", "STRAWB", "APRICOT", "CHOC", "PEANUT", "ORANGE", "LT"),
                (("400G", 1.0), ("200G", 0.6), ("750G", 1.7), ("340G", 0.9)), 2.9),
    "Cola": ("Beverages", "Soft Drinks", ("COLA", "CLA", "COLA DRK"),
             ("ZERO", "DIET", "LT", "CHERRY", "VAN", "CLASSIC", "NO SUGAR"),
             (("330ML", 0.35), ("1.5L", 1.0), ("2L", 1.2), ("6X330ML", 1.9)), 1.8),
    "Lemonade": ("Beverages", "Soft Drinks", ("LEMONADE", "LMNADE", "LEMON SODA", "LMN SODA", "LEMONAD"),
                 ("CLOUDY", "ZERO", "LIME", "PINK", "SPARKLING", "LT"),
                 (("330ML", 0.35), ("1.5L", 1.0), ("2L", 1.2), ("6X330ML", 1.9)), 1.6),
    "Energy Drinks": ("Beverages", "Soft Drinks", ("ENERGY DRINK", "ENERGY", "ENRGY", "NRG DRK", "ENRG DRNK"),
                      ("SUGARFREE", "TROPICAL", "ORIGINAL", "ZERO", "BERRY", "MANGO"),
                      (("250ML", 1.0), ("500ML", 1.7), ("4X250ML", 3.4), ("355ML", 1.3)), 1.5),
    "Coffee": ("Beverages", "Hot Drinks", ("COFFEE", "COFF", "CFE", "ESPRESSO", "GRND COF"),
               ("ARABICA", "GROUND", "BEANS", "INSTANT", "DECAF", "DARK ROAST", "CREMA"),
               (("250G", 1.0), ("500G", 1.8), ("100G", 0.55), ("1KG", 3.2)), 4.8),
    "Tea": ("Beverages", "Hot Drinks", ("TEA", "TEABAGS", "T/BAGS", "TEA BG", "INFUSION"),
            ("BLACK", "GREEN", "EARL GREY", "CHAMOMILE", "MINT", "ENGLISH BRKFST", "LEMON"),
            (("40PK", 1.0), ("80PK", 1.8), ("20PK", 0.6), ("100G", 1.2)), 2.6),
    "Shampoo": ("Personal Care", "Hair Care", ("SHAMPOO", "SHMP", "SHAMP", "SHP"),
                ("ANTI DANDRUFF", "A/DANDRUFF", "VOLUME", "REPAIR", "2IN1", "COLOUR", "DRY HAIR"),
                (("400ML", 1.0), ("250ML", 0.7), ("750ML", 1.6), ("1L", 2.0)), 4.2),
    "Conditioner": ("Personal Care", "Hair Care", ("CONDITIONER", "COND", "CONDTNR", "CNDTNR", "CONDIT"),
                    ("REPAIR", "VOLUME", "SMOOTH", "COLOUR", "ARGAN", "LEAVE IN"),
                    (("400ML", 1.0), ("250ML", 0.7), ("200ML", 0.6), ("750ML", 1.6)), 4.0),
    "Toothpaste": ("Personal Care", "Oral Care", ("TOOTHPASTE", "TTHPST", "T/PASTE", "TPASTE", "TOOTHPST"),
                   ("WHITENING", "WHT", "FRESH MINT", "SENSITIVE", "SENS", "HERBAL", "CAVITY"),
                   (("75ML", 1.0), ("100ML", 1.3), ("2X75ML", 1.8), ("125ML", 1.5)), 2.4),
    "Toothbrush": ("Personal Care", "Oral Care", ("TOOTHBRUSH", "TTHBRSH", "T/BRUSH", "TBRUSH", "BRUSH"),
                   ("SOFT", "MEDIUM", "MED", "HARD", "KIDS", "DEEP CLEAN", "COMPACT"),
                   (("1PC", 1.0), ("2PK", 1.7), ("3PK", 2.3), ("4PK", 2.9)), 2.7),
    "Laundry Detergent": ("Household", "Laundry", ("DETERGENT", "DETERG", "DTRGNT", "LAUNDRY", "WASH PWDR"),
                          ("COLOUR", "BIO", "NON BIO", "LIQUID", "LIQ", "CAPS", "SENSITIVE"),
                          (("1.5L", 1.0), ("2.5KG", 1.6), ("30WL", 1.3), ("20 CAPS", 1.1)), 7.5),
    "Fabric Softener": ("Household", "Laundry", ("FABRIC SOFTENER", "SOFTENER", "SFTNR", "FAB CON", "FAB SOFT"),
                        ("SPRING", "LAVENDER", "COTTON", "SENSITIVE", "CONC", "FRESH"),
                        (("1L", 1.0), ("2L", 1.8), ("750ML", 0.8), ("40WL", 1.3)), 3.4),
    "Dishwashing Liquid": ("Household", "Cleaning", ("DISHWASH", "DISH LIQ", "W/UP LIQ", "WASHING UP", "DSHWSH"),
                           ("LEMON", "ORIGINAL", "LIME", "ANTIBAC", "ULTRA", "APPLE"),
                           (("500ML", 1.0), ("900ML", 1.6), ("1L", 1.8), ("383ML", 0.8)), 1.7),
    "Surface Cleaner": ("Household", "Cleaning", ("SURFACE CLEANER", "CLEANER", "CLNR", "MULTI SURF", "ALL PURP"),
                        ("ANTIBAC", "LEMON", "SPRAY", "KITCHEN", "BATHROOM", "BLEACH", "PINE"),
                        (("500ML", 1.0), ("750ML", 1.3), ("1L", 1.6), ("2X500ML", 1.8)), 2.8),
}

# brand -> (modules it sells under, price premium, fixed abbreviations its receipts use).
# Several brands span modules of other groups (a dairy brand's chocolate, a conglomerate's
# fabric softener), as the real taxonomy's brands do.
BRANDS = {
    "Bergblüte": (("Yogurt", "Cheese", "Milk"), 1.15, ("BERGBL", "BRGBLT")),
    "Dairyland": (("Yogurt", "Milk"), 0.95, ("DAIRYLD", "DLAND")),
    "Alpenhof": (("Cheese", "Milk", "Chocolate"), 1.2, ("ALPNHF", "ALPEN")),
    "Happy Cow": (("Cheese", "Yogurt"), 1.0, ("HPY COW", "HCOW")),
    "Crunchy Valley": (("Potato Chips", "Biscuits"), 1.0, ("CRNCHY VLY", "CRUNCHY V")),
    "Nordic Crisp": (("Potato Chips",), 1.1, ("NRDC CRSP", "NORDIC")),
    "Golden Harvest": (("Breakfast Cereal", "Biscuits", "Spreads"), 1.05, ("GLDN HRVST", "GOLDEN H")),
    "Cocoa Royale": (("Chocolate", "Spreads", "Biscuits"), 1.25, ("COCOA RYL", "C.ROYALE")),
    "Sunnyfield": (("Breakfast Cereal", "Milk"), 0.9, ("SUNNYFLD", "SNYFLD")),
    "Fizzco": (("Cola", "Lemonade", "Energy Drinks"), 1.0, ("FIZZ", "FZCO")),
    "Volt": (("Energy Drinks", "Cola"), 1.2, ("VLT",)),
    "Zestia": (("Lemonade", "Cola"), 0.95, ("ZEST", "ZSTIA")),
    "Café Niño": (("Coffee", "Chocolate"), 1.3, ("CAFE NINO", "CF NINO")),
    "Highland Leaf": (("Tea", "Coffee"), 1.1, ("HGHLND LF", "HIGHLAND")),
    "Morning Brew": (("Coffee", "Tea"), 0.9, ("MRNG BREW", "M.BREW")),
    "SilkWave": (("Shampoo", "Conditioner"), 1.1, ("SILKWV", "SLKWAVE")),
    "PureRoot": (("Shampoo", "Conditioner", "Toothpaste"), 1.25, ("PURERT", "PR ROOT")),
    "BrightSmile": (("Toothpaste", "Toothbrush"), 1.0, ("BRGHTSML", "B/SMILE")),
    "DentaPro": (("Toothpaste", "Toothbrush"), 1.15, ("DNTPRO", "DENTA")),
    "Mintaro": (("Toothpaste",), 0.9, ("MNTRO", "MINTAR")),
    "SparkleMax": (("Laundry Detergent", "Dishwashing Liquid", "Surface Cleaner"), 1.05, ("SPRKLMX", "SPARKLE")),
    "SoftTouch": (("Fabric Softener", "Laundry Detergent"), 1.0, ("SFTTCH", "S/TOUCH")),
    "CleanHome": (("Surface Cleaner", "Dishwashing Liquid", "Laundry Detergent"), 0.95, ("CLNHME", "CLN HOME")),
    "Lumière": (("Shampoo", "Conditioner", "Fabric Softener"), 1.2, ("LUMIERE", "LUMR")),
    "Value Choice": (("Milk", "Potato Chips", "Dishwashing Liquid", "Tea"), 0.7, ("VAL CHOICE", "VC")),
}

SUPERGROUPS = tuple(dict.fromkeys(m[0] for m in MODULES.values()))
GROUPS = tuple(dict.fromkeys((m[0], m[1]) for m in MODULES.values()))
# Every (supergroup, group, module, brand) a label can be, in a fixed order.
HIERARCHY: Tuple[Tuple[str, str, str, str], ...] = tuple(
    (MODULES[module][0], MODULES[module][1], module, brand)
    for module in MODULES for brand in BRANDS if module in BRANDS[brand][0])


def _path_weights() -> Tuple[float, ...]:
    """Zipf-like: the path of rank r weighs 1 / (r + 5), ranks in a fixed shuffled order.

    The offset keeps the majority path to a few percent (a plain 1/r would give it ~20 %);
    the order is fixed (not drawn from the sample's seed) so every sample has the same
    frequent and rare paths.
    """
    ranks = np.random.default_rng(2024).permutation(len(HIERARCHY))
    weights = 1.0 / (ranks + 5.0)
    return tuple(float(w) for w in weights / weights.sum())


PATH_WEIGHTS = _path_weights()

# Promotions and codes that receipts print inside the description.
NOISE = ("PRM", "2FOR1", "PROMO", "NEW", "SALE", "BOGO", "-20%", "X2", "MULTIBUY", "CLUBCARD")
# retailer -> (share of lines, habits). Habits: case ("upper", "lower", "title", "keep"),
# max_chars (truncation, 0 = none), fold (drop accents), order ("brand", "type" or "size"
# first), sku (a numeric code first), noise (chance of a promo token), short (chance of
# preferring abbreviations over full words).
RETAILERS = {
    "retailer_1": (0.22, dict(case="upper", max_chars=0, fold=False, order="brand", sku=False, noise=0.15, short=0.4)),
    "retailer_2": (0.18, dict(case="upper", max_chars=20, fold=True, order="brand", sku=False, noise=0.05, short=0.8)),
    "retailer_3": (0.14, dict(case="lower", max_chars=0, fold=False, order="brand", sku=False, noise=0.1, short=0.5)),
    "retailer_4": (0.12, dict(case="title", max_chars=0, fold=False, order="brand", sku=False, noise=0.05, short=0.1)),
    "retailer_5": (0.11, dict(case="upper", max_chars=0, fold=True, order="type", sku=True, noise=0.2, short=0.7)),
    "retailer_6": (0.09, dict(case="upper", max_chars=30, fold=True, order="brand", sku=False, noise=0.45, short=0.6)),
    "retailer_7": (0.08, dict(case="keep", max_chars=0, fold=False, order="size", sku=False, noise=0.1, short=0.3)),
    "retailer_8": (0.06, dict(case="upper", max_chars=24, fold=False, order="type", sku=True, noise=0.25, short=0.9)),
}
NO_TYPE_WORD = 0.1  # share of lines without a product-type word
TYPO = 0.12  # share of lines whose brand has a dropped or swapped letter
PRICE_SIGMA = 0.25  # log-normal spread of a price around its median


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _typo(rng: np.random.Generator, word: str) -> str:
    """A dropped letter or two swapped neighbours, as till operators type them."""
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    if len(letters) < 4:
        return word
    i = letters[int(rng.integers(1, len(letters) - 1))]  # keep the first letter: it is what people read
    if rng.random() < 0.5 or i + 1 >= len(word) or not word[i + 1].isalpha():
        return word[:i] + word[i + 1:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _brand_form(rng: np.random.Generator, brand: str, short: float) -> str:
    full = brand.upper()
    words = full.split()
    r = rng.random()
    if r < short * 0.6:
        form = _pick(rng, BRANDS[brand][2])
    elif r < short * 0.8 and len(words) > 1:
        form = _pick(rng, (words[0], "".join(w[0] for w in words)))
    elif r < short:
        form = full.replace(" ", "")[:int(rng.integers(4, 8))]  # truncated
    else:
        form = full
    return _typo(rng, form) if rng.random() < TYPO else form


def _type_word(rng: np.random.Generator, words: Sequence[str], short: float) -> str:
    # The full name is the first word; abbreviating retailers pick among the others.
    if rng.random() >= short:
        return words[0]
    return _pick(rng, words[1:])


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _describe(rng: np.random.Generator, module: str, brand: str, size: str, habits: Dict) -> str:
    _, _, type_words, variants, _, _ = MODULES[module]
    brand_part = _brand_form(rng, brand, habits["short"])
    type_part = "" if rng.random() < NO_TYPE_WORD else _type_word(rng, type_words, habits["short"])
    count = int(rng.choice(3, p=(0.2, 0.6, 0.2)))
    variant_part = " ".join(variants[int(i)] for i in rng.choice(len(variants), size=count, replace=False))
    order = {"brand": (brand_part, type_part, variant_part, size),
             "type": (type_part, brand_part, variant_part, size),
             "size": (size, brand_part, variant_part, type_part)}[habits["order"]]
    tokens = [t for t in order if t]
    if rng.random() < habits["noise"]:
        tokens.insert(int(rng.integers(1, len(tokens) + 1)), _pick(rng, NOISE))
    if habits["sku"]:
        tokens.insert(0, "%0*d" % (int(rng.integers(4, 7)), int(rng.integers(0, 10 ** 6))))
    elif rng.random() < 0.05:
        tokens.append("#%d" % int(rng.integers(100, 100000)))
    text = " ".join(tokens)
    if habits["fold"]:
        text = _fold(text)
    case = habits["case"]
    if case == "upper":
        text = text.upper()
    elif case == "lower":
        text = text.lower()
    elif case == "title":
        text = text.title()
    elif rng.random() < 0.5:  # "keep": a till that mixes cases, as some do
        text = " ".join(w.capitalize() if i % 2 else w for i, w in enumerate(text.split(" ")))
    if habits["max_chars"]:
        text = text[:habits["max_chars"]].rstrip()
    return text


def _price(rng: np.random.Generator, module: str, brand: str, factor: float) -> float:
    median = MODULES[module][5] * factor * BRANDS[brand][1]
    return round(float(median * math.exp(rng.normal(0.0, PRICE_SIGMA))), 2) or 0.01


def _lines(rng: np.random.Generator, products: int) -> List[Tuple[Dict, Dict]]:
    retailers = list(RETAILERS)
    shares = np.array([RETAILERS[r][0] for r in retailers])
    paths = rng.choice(len(HIERARCHY), size=products, p=np.array(PATH_WEIGHTS))
    lines = []
    for index in paths:
        supergroup, group, module, brand = HIERARCHY[int(index)]
        retailer = retailers[int(rng.choice(len(retailers), p=shares / shares.sum()))]
        size, factor = _pick(rng, MODULES[module][4])
        features = {"description": _describe(rng, module, brand, size, RETAILERS[retailer][1]),
                    "retailer": retailer, "price": _price(rng, module, brand, factor)}
        labels = {"supergroup": supergroup, "group": group, "module": module, "brand": brand}
        lines.append((features, labels))
    return lines


def _split(rng: np.random.Generator, lines: List[Tuple[Dict, Dict]]) -> np.ndarray:
    """A boolean test mask: ~20 % of lines, never the first line of a path (it trains)."""
    first, seen = [], set()
    for i, (_, labels) in enumerate(lines):
        path = (labels["module"], labels["brand"])
        if path not in seen:
            seen.add(path)
            first.append(i)
    candidates = np.setdiff1d(np.arange(len(lines)), first)
    n_test = max(1, round(len(lines) * TEST_SHARE))
    if len(candidates) < n_test:  # too small a sample for every path: let some test paths go unseen
        candidates = np.arange(1, len(lines))
    mask = np.zeros(len(lines), dtype=bool)
    mask[rng.choice(candidates, size=min(n_test, len(candidates)), replace=False)] = True
    return mask


def _write_jsonl(path: str, rows: List[Dict], keys: Sequence[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps({k: row[k] for k in keys}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_sample(output: str, products: int = 2000, seed: int = 0) -> Dict[str, str]:
    """Writes train/test features and labels as the datathon shipped them, plus test labels.

    Args:
        output: directory, created if missing.
        products: receipt lines in train and test together (at least 5); ~20 % go to test.
        seed: the same seed writes the same bytes.

    Returns:
        The paths written, by name: train_features, train_labels, test_features and
        test_labels (the hidden truth, for scoring; the datathon did not ship it).

    Example:

    >>> paths = write_sample("/tmp/taxonomy_raw", products=50, seed=1)
    >>> os.path.basename(paths["train_features"])
    'train.features'
    """
    if products < MIN_PRODUCTS:
        raise ValueError(f"products must be at least {MIN_PRODUCTS}, got {products}")
    rng = np.random.default_rng(seed)
    lines = _lines(rng, products)
    test = _split(rng, lines)
    # Ids 0..N-1 in a random order, so an id says nothing about the split or the label;
    # each file lists its lines by id, as the datathon's files do.
    ids = rng.permutation(products)
    rows = {"train": [], "test": []}
    for i, (features, labels) in enumerate(lines):
        rows["test" if test[i] else "train"].append((int(ids[i]), features, labels))
    os.makedirs(output, exist_ok=True)
    paths = {name: os.path.join(output, filename) for name, filename in FILES.items()}
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda row: row[0])
        _write_jsonl(paths[f"{split}_features"], [{"indoml_id": i, **f} for i, f, _ in split_rows], FEATURE_KEYS)
        _write_jsonl(paths[f"{split}_labels"], [{"indoml_id": i, **l} for i, _, l in split_rows], LABEL_KEYS)
    return paths
