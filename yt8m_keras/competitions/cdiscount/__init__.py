"""Cdiscount Image Classification (Kaggle 2017): BSON products, Xception, per-product combining.

Files: `task.py` (trainer and exporter), `input.py` (tf.data: parse and decode only),
`augment.py` (the seed's augmentation of one image, for test-time augmentation; training
runs it batched at the model's front, `models.augmentation.CdiscountAugmentation`),
`combine.py` (per-product rules), `predict.py` (evaluation, submission),
`sample.py` (sample BSON), `quickstart.py`.
`competition.py` is what the registry (`yt8m_keras.competitions`) loads.
"""
