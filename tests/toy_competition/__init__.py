"""A toy competition defined outside the package, registered by a test (the competitions-wing claim).

Points in 4-D, 3 classes; raw data is a CSV; the record kind, the conversion, the task, the
model and the recipe all live here. Nothing in `yt8m_keras/` knows it exists.
"""
