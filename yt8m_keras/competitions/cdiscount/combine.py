"""Combining a product's per-image class probabilities into one prediction per product.

A Cdiscount product has 1-4 images; the classifier scores each image, and a rule turns the
image rows of one product into a single row (the Cdiscount paper's Table I compares these
rules). Predictions are computed once, then every rule is applied to the same arrays, so
everything here is plain NumPy.

Every rule's output row is normalised to sum to 1, so rules that do not preserve the
simplex (product, rms, median, power, max) still give probabilities and can be compared
or ensembled with the others.
"""

import math

import numpy as np

RULES = ("first", "mean", "product", "rms", "median", "power", "max")

DEFAULT_POWER = 0.1
# Probabilities are floored before taking logs so a single 0 cannot veto a class (and
# log(0) = -inf never appears); 1e-12 is far below any probability a softmax over 5,270
# classes gives a plausible class, and representable in float32.
PROBABILITY_FLOOR = 1e-12

_PARAMETERISED_RULES = {"power": DEFAULT_POWER}


def parse_rule(rule):
    """Splits a rule string into its name and parameter.

    Args:
        rule: `"name"` or `"name:param"`, with a name from `RULES`. Only `"power"` takes a
            parameter, the exponent `a` of the power mean (a finite number > 0, default
            0.1).

    Returns:
        `(name, param)`: `param` is a float for `"power"` and `None` for the other rules.

    Raises:
        ValueError: for an unknown name, a parameter on a rule that takes none, or a
            parameter that is not a positive finite number.

    Example:

    ```python
    parse_rule("power:0.5")  # ("power", 0.5)
    parse_rule("power")      # ("power", 0.1)
    parse_rule("mean")       # ("mean", None)
    ```
    """
    if not isinstance(rule, str):
        raise ValueError(f"A combination rule must be a string, got {rule!r}.")
    name, separator, param_text = rule.strip().partition(":")
    name = name.strip()
    if name not in RULES:
        raise ValueError(
            f"Unknown combination rule {name!r} in {rule!r}; expected one of {RULES}, "
            "optionally 'power:A' with A > 0."
        )
    if name not in _PARAMETERISED_RULES:
        if separator:
            raise ValueError(
                f"Combination rule {name!r} takes no parameter, got {rule!r}."
            )
        return name, None
    if not separator:
        return name, _PARAMETERISED_RULES[name]
    try:
        param = float(param_text)
    except ValueError:
        raise ValueError(
            f"Bad parameter in combination rule {rule!r}: {param_text!r} is not a number."
        ) from None
    # a <= 0 is not a power mean of this form (a = 0 is the geometric-mean limit and
    # negative a needs p > 0 everywhere); 'product' covers the log-space case.
    if not math.isfinite(param) or param <= 0:
        raise ValueError(
            f"Bad parameter in combination rule {rule!r}: the exponent must be a finite "
            "number > 0."
        )
    return name, param


def average_tta(probs):
    """Averages class probabilities over test-time-augmentation copies.

    Args:
        probs: float array `[n_images, n_tta, num_classes]`.

    Returns:
        Float array `[n_images, num_classes]`, the mean over the TTA axis.

    Example:

    ```python
    probs = model.predict(tta_images).reshape(n_images, n_tta, num_classes)
    image_probs = average_tta(probs)
    ```
    """
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(
            f"Expected probabilities of shape [n_images, n_tta, num_classes], got shape "
            f"{probs.shape}."
        )
    return probs.mean(axis=1)


def combine(image_probs, product_index, rule):
    """Combines per-image class probabilities into per-product probabilities.

    Rules:
        - `first`: the product's first image (first in the input order).
        - `mean`: arithmetic mean.
        - `product`: product of probabilities, computed as a sum of logs (each
          probability floored at `PROBABILITY_FLOOR`) and normalised with a log-sum-exp,
          so it never underflows, even for 4 images x 5,270 classes.
        - `rms`: root mean square, `sqrt(mean(p^2))`.
        - `median`: element-wise median over the product's images.
        - `power` / `power:A`: power mean `(mean(p^A))^(1/A)`, default A = 0.1.
        - `max`: element-wise maximum.

    Args:
        image_probs: float array `[n_images, num_classes]`, one probability row per image.
        product_index: int array `[n_images]`, the product (0..P-1) of each image. A
            product's images keep their relative order; products may come in any order
            and interleaved, but every index in 0..P-1 must have at least one image.
        rule: a rule string, see `parse_rule`.

    Returns:
        Float array `[P, num_classes]`; row `p` is product `p`'s combined prediction,
        normalised to sum to 1. Float32 input stays float32, anything else is float64.

    Example:

    ```python
    image_probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.4, 0.6]])
    product_index = np.array([0, 1, 1])
    combine(image_probs, product_index, "mean")  # [[0.7, 0.3], [0.3, 0.7]]
    ```
    """
    name, param = parse_rule(rule)
    groups = _ProductGroups(image_probs, product_index)
    return _RULE_FUNCTIONS[name](groups, param)


def combine_all(image_probs, product_index, rules=RULES):
    """Applies several combination rules to the same predictions.

    Args:
        image_probs: float array `[n_images, num_classes]`.
        product_index: int array `[n_images]`, see `combine`.
        rules: iterable of rule strings; defaults to every rule in `RULES` (power with
            its default exponent).

    Returns:
        Dict from each rule string (as given) to its `[P, num_classes]` array.

    Example:

    ```python
    results = combine_all(image_probs, product_index, rules=("mean", "power:0.5"))
    accuracy = {
        rule: (probs.argmax(axis=1) == product_labels).mean()
        for rule, probs in results.items()
    }
    ```
    """
    rules = list(rules)
    for rule in rules:
        parse_rule(rule)  # Fail on a bad rule before any work is done.
    groups = _ProductGroups(image_probs, product_index)
    results = {}
    for rule in rules:
        name, param = parse_rule(rule)
        results[rule] = _RULE_FUNCTIONS[name](groups, param)
    return results


class _ProductGroups:
    """Images sorted by product (stably, so each product keeps its image order), with
    the offsets `np.*.reduceat` needs to reduce each product's rows at once."""

    def __init__(self, image_probs, product_index):
        probs = np.asarray(image_probs)
        index = np.asarray(product_index)
        if probs.ndim != 2:
            raise ValueError(
                f"Expected image_probs of shape [n_images, num_classes], got shape "
                f"{probs.shape}."
            )
        if index.shape != (probs.shape[0],):
            raise ValueError(
                f"product_index must have shape [{probs.shape[0]}] (one entry per image), "
                f"got shape {index.shape}."
            )
        if probs.shape[0] == 0:
            raise ValueError("Cannot combine predictions of zero images.")
        if not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"product_index must be integers, got dtype {index.dtype}.")
        if index.min() < 0:
            raise ValueError(f"product_index must be >= 0, got {index.min()}.")
        counts = np.bincount(index)
        if not counts.all():
            missing = np.flatnonzero(counts == 0)
            raise ValueError(
                f"Products must be numbered 0..P-1 with at least one image each; "
                f"product(s) {missing[:10].tolist()} have no image."
            )
        dtype = np.float32 if probs.dtype == np.float32 else np.float64
        order = np.argsort(index, kind="stable")
        self.probs = probs[order].astype(dtype, copy=False)
        self.counts = counts
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def mean(self, values):
        return np.add.reduceat(values, self.starts, axis=0) / self.counts[:, None].astype(
            values.dtype
        )


def _normalise(rows):
    return rows / rows.sum(axis=1, keepdims=True)


def _normalise_logs(log_rows):
    """Turns unnormalised log-probabilities into probabilities (a row-wise softmax)."""
    shifted = log_rows - log_rows.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


def _first(groups, _):
    return _normalise(groups.probs[groups.starts])


def _mean(groups, _):
    return _normalise(groups.mean(groups.probs))


def _product(groups, _):
    logs = np.log(np.maximum(groups.probs, PROBABILITY_FLOOR))
    return _normalise_logs(np.add.reduceat(logs, groups.starts, axis=0))


def _power_mean(groups, exponent):
    # In log space, (1/a) * log(mean(p^a)), so a small a (p^a near 1, then raised to a
    # large 1/a) cannot underflow to an all-zero row before normalisation. No floor: with
    # a > 0 a zero probability contributes exactly 0, as the formula says; log(0) = -inf
    # becomes 0 again in the softmax (a row always has a positive class).
    with np.errstate(divide="ignore"):
        log_means = np.log(groups.mean(groups.probs**exponent))
    return _normalise_logs(log_means / exponent)


def _rms(groups, _):
    return _normalise(np.sqrt(groups.mean(groups.probs**2)))


def _median(groups, _):
    combined = np.empty((len(groups.counts), groups.probs.shape[1]), groups.probs.dtype)
    # Products have few images (1-4 on Cdiscount): take the median of all products with
    # the same image count at once, as a [products, images, classes] block.
    for count in np.unique(groups.counts):
        products = np.flatnonzero(groups.counts == count)
        rows = groups.starts[products, None] + np.arange(count)
        combined[products] = np.median(groups.probs[rows], axis=1)
    return _normalise(combined)


def _max(groups, _):
    return _normalise(np.maximum.reduceat(groups.probs, groups.starts, axis=0))


_RULE_FUNCTIONS = {
    "first": _first,
    "mean": _mean,
    "product": _product,
    "rms": _rms,
    "median": _median,
    "power": _power_mean,
    "max": _max,
}
