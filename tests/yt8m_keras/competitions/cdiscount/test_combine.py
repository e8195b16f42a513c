import math

import numpy as np
import pytest

from yt8m_keras.competitions.cdiscount.combine import (
    RULES,
    average_tta,
    combine,
    combine_all,
    parse_rule,
)

# Three products with 1, 2 and 3 images, three classes, given interleaved and out of
# product order: product 2's images are rows 0, 3, 5; product 0's is row 2; product 1's
# rows 1 and 4.
A = [0.5, 0.3, 0.2]
B1, B2 = [0.6, 0.2, 0.2], [0.2, 0.4, 0.4]
C1, C2, C3 = [0.1, 0.1, 0.8], [0.5, 0.25, 0.25], [0.4, 0.4, 0.2]
IMAGE_PROBS = np.array([C1, B1, A, C2, B2, C3])
PRODUCT_INDEX = np.array([2, 1, 0, 2, 1, 2])


def normalised(row):
    row = np.asarray(row, dtype=np.float64)
    return row / row.sum()


# Expected rows by hand, per product [A, B, C].
EXPECTED = {
    "first": [A, B1, C1],
    "mean": [A, [0.4, 0.3, 0.3], [1 / 3, 0.25, 5 / 12]],
    # B: [0.12, 0.08, 0.08] / 0.28; C: [0.02, 0.01, 0.04] / 0.07.
    "product": [A, [3 / 7, 2 / 7, 2 / 7], [2 / 7, 1 / 7, 4 / 7]],
    "rms": [
        A,
        normalised([math.sqrt(0.2), math.sqrt(0.1), math.sqrt(0.1)]),
        normalised([math.sqrt(0.42 / 3), math.sqrt(0.2325 / 3), math.sqrt(0.7425 / 3)]),
    ],
    # The median of two images is their mean; C: [0.4, 0.25, 0.25] / 0.9.
    "median": [A, [0.4, 0.3, 0.3], [4 / 9, 2.5 / 9, 2.5 / 9]],
    "power": [
        A,
        normalised(
            [
                ((0.6**0.1 + 0.2**0.1) / 2) ** 10,
                ((0.2**0.1 + 0.4**0.1) / 2) ** 10,
                ((0.2**0.1 + 0.4**0.1) / 2) ** 10,
            ]
        ),
        normalised(
            [
                ((0.1**0.1 + 0.5**0.1 + 0.4**0.1) / 3) ** 10,
                ((0.1**0.1 + 0.25**0.1 + 0.4**0.1) / 3) ** 10,
                ((0.8**0.1 + 0.25**0.1 + 0.2**0.1) / 3) ** 10,
            ]
        ),
    ],
    # B: [0.6, 0.4, 0.4] / 1.4; C: [0.5, 0.4, 0.8] / 1.7.
    "max": [A, [3 / 7, 2 / 7, 2 / 7], normalised([0.5, 0.4, 0.8])],
}


@pytest.mark.parametrize("rule", RULES)
def test_rule_matches_hand_computed_values(rule):
    combined = combine(IMAGE_PROBS, PRODUCT_INDEX, rule)
    assert combined.shape == (3, 3)
    np.testing.assert_allclose(combined, EXPECTED[rule], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(combined.sum(axis=1), 1.0, rtol=1e-12)


def test_rules_lists_every_rule_in_fixed_order():
    assert RULES == ("first", "mean", "product", "rms", "median", "power", "max")
    assert set(EXPECTED) == set(RULES)


def test_power_exponent_is_configurable():
    # The power mean with exponent 1 is the mean and with exponent 2 the rms.
    np.testing.assert_allclose(
        combine(IMAGE_PROBS, PRODUCT_INDEX, "power:1"), EXPECTED["mean"], rtol=1e-12
    )
    np.testing.assert_allclose(
        combine(IMAGE_PROBS, PRODUCT_INDEX, "power:2"), EXPECTED["rms"], rtol=1e-12
    )
    b_half = normalised(
        [
            ((0.6**0.5 + 0.2**0.5) / 2) ** 2,
            ((0.2**0.5 + 0.4**0.5) / 2) ** 2,
            ((0.2**0.5 + 0.4**0.5) / 2) ** 2,
        ]
    )
    np.testing.assert_allclose(
        combine(IMAGE_PROBS, PRODUCT_INDEX, "power:0.5")[1], b_half, rtol=1e-12
    )


def test_power_mean_keeps_zero_probabilities_at_zero():
    probs = np.array([[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]])
    combined = combine(probs, np.array([0, 0]), "power:0.1")
    assert combined[0, 2] == 0.0
    expected = normalised(
        [((0.5**0.1 + 0.25**0.1) / 2) ** 10, ((0.5**0.1 + 0.75**0.1) / 2) ** 10, 0.0]
    )
    np.testing.assert_allclose(combined[0], expected, rtol=1e-12)


def test_product_floors_zero_probabilities_instead_of_vetoing_a_class():
    probs = np.array([[0.0, 0.5, 0.5], [0.9, 0.1, 0.0]])
    combined = combine(probs, np.array([0, 0]), "product")
    # Floor 1e-12: class 0 gets 1e-12 * 0.9, class 1 0.05, class 2 0.5 * 1e-12.
    np.testing.assert_allclose(
        combined[0], normalised([0.9e-12, 0.05, 0.5e-12]), rtol=1e-9
    )


def reference_combine(image_probs, product_index, rule, exponent=0.1):
    """An independent, one-product-at-a-time version of each rule."""
    products = []
    for product in range(product_index.max() + 1):
        rows = [
            image_probs[i]
            for i in range(len(product_index))
            if product_index[i] == product
        ]
        columns = list(zip(*rows))
        if rule == "first":
            values = list(rows[0])
        elif rule == "mean":
            values = [sum(c) / len(c) for c in columns]
        elif rule == "product":
            values = [math.prod(c) for c in columns]
        elif rule == "rms":
            values = [math.sqrt(sum(p * p for p in c) / len(c)) for c in columns]
        elif rule == "median":
            values = [float(np.median(c)) for c in columns]
        elif rule == "power":
            values = [
                (sum(p**exponent for p in c) / len(c)) ** (1 / exponent) for c in columns
            ]
        elif rule == "max":
            values = [max(c) for c in columns]
        total = sum(values)
        products.append([v / total for v in values])
    return np.array(products)


def test_every_rule_matches_a_straightforward_loop_on_shuffled_products():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 5, size=12)
    product_index = np.repeat(np.arange(12), counts)
    rng.shuffle(product_index)
    # Moderate probabilities so the loop's direct product cannot underflow.
    image_probs = rng.dirichlet(np.full(6, 2.0), size=len(product_index))
    results = combine_all(image_probs, product_index)
    assert list(results) == list(RULES)
    for rule in RULES:
        np.testing.assert_allclose(
            results[rule],
            reference_combine(image_probs, product_index, rule),
            rtol=1e-10,
            err_msg=rule,
        )


def test_product_order_does_not_change_a_products_result():
    # Relabel products (0 -> 2, 1 -> 0, 2 -> 1) and permute the images, keeping each
    # product's own images in their original relative order.
    relabel = np.array([2, 0, 1])
    permutation = np.array([2, 1, 0, 4, 3, 5])
    image_probs = IMAGE_PROBS[permutation]
    product_index = relabel[PRODUCT_INDEX[permutation]]
    for rule in RULES:
        original = combine(IMAGE_PROBS, PRODUCT_INDEX, rule)
        moved = combine(image_probs, product_index, rule)
        np.testing.assert_allclose(moved[relabel], original, rtol=1e-12, err_msg=rule)


def test_product_does_not_underflow_for_four_images_of_5270_classes():
    num_classes = 5270
    rng = np.random.default_rng(2)
    # Each image is sure of a different class; every other class gets ~1e-11, so a
    # linear-space float32 product of the other classes (~1e-44) would be denormal or 0.
    probs = rng.uniform(1e-11, 3e-11, size=(4, num_classes))
    for image in range(4):
        probs[image, image] = 0.0
        probs[image, image] = 1.0 - probs[image].sum()
    probs32 = probs.astype(np.float32)
    combined = combine(probs32, np.zeros(4, dtype=np.int64), "product")
    assert combined.dtype == np.float32
    assert np.isfinite(combined).all()
    assert (combined > 0).all()
    # Reference: scaling every probability by 1e11 leaves the normalised product
    # unchanged and keeps float64 far from underflow.
    scaled = np.prod(probs32.astype(np.float64) * 1e11, axis=0)
    expected = scaled / scaled.sum()
    np.testing.assert_allclose(combined[0], expected, rtol=1e-4)
    np.testing.assert_allclose(combined.sum(), 1.0, rtol=1e-5)


def test_product_survives_a_product_with_many_images_in_float64():
    # 100 images at ~1/5270 per class: a direct float64 product (~1e-373) would be 0 / 0.
    num_images, num_classes = 100, 5270
    base = 1.0 / (num_classes + 0.5)
    probs = np.full((num_images, num_classes), base)
    probs[:, 0] = 2.0 * base
    probs[:, 1] = 0.5 * base
    combined = combine(probs, np.zeros(num_images, dtype=np.int64), "product")
    # Each class's product relative to an ordinary class's: 2^100, 0.5^100, then 1s.
    ratios = np.ones(num_classes)
    ratios[0] = 2.0**num_images
    ratios[1] = 0.5**num_images
    np.testing.assert_allclose(combined[0], ratios / ratios.sum(), rtol=1e-9)


def test_parse_rule():
    assert parse_rule("mean") == ("mean", None)
    assert parse_rule("power") == ("power", 0.1)
    assert parse_rule("power:0.25") == ("power", 0.25)
    assert parse_rule(" power : 2 ") == ("power", 2.0)


@pytest.mark.parametrize(
    "rule, message",
    [
        ("average", r"Unknown combination rule 'average'.*'first', 'mean'"),
        ("", "Unknown combination rule"),
        ("mean:2", "'mean' takes no parameter"),
        ("power:abc", "'abc' is not a number"),
        ("power:", "'' is not a number"),
        ("power:0", "finite number > 0"),
        ("power:-1", "finite number > 0"),
        ("power:nan", "finite number > 0"),
        ("power:inf", "finite number > 0"),
        (None, "must be a string"),
    ],
)
def test_parse_rule_rejects_bad_rules(rule, message):
    with pytest.raises(ValueError, match=message):
        parse_rule(rule)


def test_combine_all_checks_every_rule_before_combining():
    with pytest.raises(ValueError, match="Unknown combination rule 'bogus'"):
        combine_all(IMAGE_PROBS, PRODUCT_INDEX, rules=("mean", "bogus"))


def test_combine_all_keys_are_the_rule_strings_given():
    results = combine_all(IMAGE_PROBS, PRODUCT_INDEX, rules=("power:1", "first"))
    assert list(results) == ["power:1", "first"]
    np.testing.assert_allclose(results["power:1"], EXPECTED["mean"], rtol=1e-12)


@pytest.mark.parametrize(
    "image_probs, product_index, message",
    [
        (IMAGE_PROBS, np.array([0, 0, 2, 2, 0, 2]), r"product\(s\) \[1\] have no image"),
        (IMAGE_PROBS, PRODUCT_INDEX[:5], "one entry per image"),
        (IMAGE_PROBS, PRODUCT_INDEX - 1, "must be >= 0"),
        (IMAGE_PROBS, PRODUCT_INDEX.astype(float), "must be integers"),
        (IMAGE_PROBS[0], PRODUCT_INDEX[:1], r"\[n_images, num_classes\]"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), "zero images"),
    ],
)
def test_combine_rejects_bad_inputs(image_probs, product_index, message):
    with pytest.raises(ValueError, match=message):
        combine(image_probs, product_index, "mean")


def test_average_tta_means_over_copies():
    probs = np.array(
        [
            [[0.2, 0.8], [0.4, 0.6], [0.6, 0.4]],
            [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]],
        ]
    )
    np.testing.assert_allclose(average_tta(probs), [[0.4, 0.6], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"\[n_images, n_tta, num_classes\]"):
        average_tta(probs[0])
