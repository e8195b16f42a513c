"""yt8m_keras.inference: fixed-shape model calls and the plain loop over a plan."""

import numpy as np

from yt8m_keras.inference import Submission, fixed_batches


def test_fixed_batches_calls_with_one_shape_and_returns_the_real_rows():
    shapes = []

    def model(rows):
        shapes.append(rows["x"].shape)
        return {"y": rows["x"].sum(axis=1) * rows["w"], "first": rows["x"][:, 0]}

    x = np.arange(23 * 3, dtype=np.float32).reshape(23, 3)
    w = np.arange(23, dtype=np.float32)
    out = fixed_batches(model, {"x": x, "w": w}, 8)
    assert shapes == [(8, 3)] * 3  # 23 rows: 8 + 8 + 7 padded to 8
    np.testing.assert_array_equal(out["y"], x.sum(axis=1) * w)
    np.testing.assert_array_equal(out["first"], x[:, 0])
    assert fixed_batches(lambda rows: rows * 2, np.array(["a", "b", "c"], dtype=object), 2).tolist() == \
        ["aa", "bb", "cc"]


def test_default_submission_collects_rows_across_merged_accumulators():
    class Ids(Submission):
        def write_rows(self, rows, path):
            return {"text": ",".join(sorted(rows))}

    submission = Ids()
    parts = [submission.add(submission.add(submission.create(), "b"), "a"), submission.add(submission.create(), "c")]
    assert submission.write(submission.merge(parts), "unused") == {"text": "a,b,c"}
