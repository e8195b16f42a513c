"""SIIM-ISIC Melanoma Classification (Kaggle 2020): the 1st place's pipeline.

Files: `task.py` (trainer and exporter), `input.py` (tf.data over ours or Deotte's shards),
`features.py` (the metadata vector), `predict.py` (AUC, out-of-fold CSV, 8-orientation TTA,
rank average, submission), `sample.py` (Kaggle-layout sample data), `quickstart.py`.
`competition.py` is what the registry (`yt8m_keras.competitions`) loads.
"""
