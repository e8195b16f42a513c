"""YouTube-8M (the 2nd and 3rd challenges): frame records, NeXtVLAD / DBoF, segment classifiers, MAP@K.

Files: `video_task.py`, `segment_task.py` (trainer and exporter), `input.py` (tf.data),
`metrics.py` (GAP, mAP, MAP@K), `topk.py` (bounded segment top-K, submission files),
`predict.py` (evaluation, submissions), `sample.py` (official-format records), `quickstart.py`.
`competition.py` is what the registry (`yt8m_keras.competitions`) loads.
"""
