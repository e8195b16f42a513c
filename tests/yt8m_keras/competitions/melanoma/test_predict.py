"""Melanoma prediction pieces: exact TTA orientations, the rank average, the AUC metric."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tfrecords import melanoma_image as kind
from yt8m_keras.competitions.melanoma.predict import ORIENTATIONS, orient, rank_average
from yt8m_keras.competitions.melanoma.task import MelanomaAUC


def test_orientations_are_the_eight_symmetries_of_the_square():
    image = np.arange(4 * 4 * 3).reshape(1, 4, 4, 3)
    views = {o: orient(image, o) for o in ORIENTATIONS}
    assert len({v.tobytes() for v in views.values()}) == 8  # all distinct
    np.testing.assert_array_equal(views["identity"], image)
    np.testing.assert_array_equal(views["flip_left_right"][0], image[0, :, ::-1])
    np.testing.assert_array_equal(views["flip_up_down"][0], image[0, ::-1])
    np.testing.assert_array_equal(views["rotate_180"][0], np.rot90(image[0], 2))
    np.testing.assert_array_equal(views["transpose"][0], image[0].transpose(1, 0, 2))
    # The set is closed: each view's 8 orientations are the same 8 images (a group, not a sample).
    for view in views.values():
        assert {orient(view, o).tobytes() for o in ORIENTATIONS} == {v.tobytes() for v in views.values()}
    rotations = {np.rot90(image[0], k).tobytes() for k in range(4)}
    assert rotations <= {v[0].tobytes() for v in views.values()}


def test_rank_average_against_hand_computed_values():
    a = np.array([0.9, 0.1, 0.5, 0.3])  # ranks 4 1 3 2 -> /4
    b = np.array([10.0, 30.0, 20.0, 20.0])  # ranks 1 4 2.5 2.5 -> /4
    np.testing.assert_allclose(rank_average([a, b]), [(1.0 + 0.25) / 2, (0.25 + 1.0) / 2,
                                                      (0.75 + 0.625) / 2, (0.5 + 0.625) / 2])
    # A monotone transform of one input changes nothing: calibration does not matter.
    np.testing.assert_allclose(rank_average([a ** 3, b]), rank_average([a, b]))


def test_melanoma_auc_matches_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(kind.CLASSES), 200)
    probabilities = rng.dirichlet(np.ones(len(kind.CLASSES)), 200)
    probabilities[labels == kind.MELANOMA, kind.MELANOMA] += 0.3  # some signal
    metric = MelanomaAUC()
    metric.update_state(labels, probabilities)
    expected = roc_auc_score(labels == kind.MELANOMA, probabilities[:, kind.MELANOMA])
    assert float(metric.result()) == pytest.approx(expected, abs=2e-3)  # 1,000 thresholds
