"""`yt8m-keras quickstart --recipe youtube8m`: frame records to a segment submission, on CPU in minutes.

sample (600 videos, official frame-level records) -> convert (keeping the segment
vocabulary) -> pretrain `yt8m_nextvlad:tiny` -> fine-tune `yt8m_segment_agnostic:tiny` ->
evaluate -> export both -> predict every test segment averaging both models -> MAP@100K
against the sample's hidden truth, with a random ranking's score beside it.
"""

import os
import shutil

VIDEOS = 600


def run(workdir: str) -> None:
    from yt8m_keras.competitions.youtube8m import predict as yt8m_predict
    from yt8m_keras.competitions.youtube8m.metrics import ranked_segment_map_at_k
    from yt8m_keras.competitions.youtube8m.sample import write_sample
    from yt8m_keras.competitions.youtube8m.topk import read_segment_submission
    from yt8m_keras.convert import convert, summary
    from yt8m_keras.export import export
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    raw, data, video_dir, segment_dir, exports = (
        os.path.join(workdir, d) for d in ("yt8m_raw", "yt8m_data", "yt8m_video", "yt8m_segment", "yt8m_export"))
    print(f"[1/7] sample YouTube-8M frame-level records -> {raw}")
    paths = write_sample(raw, videos=VIDEOS, seed=0)
    print(f"[2/7] convert with Beam, keeping the segment vocabulary -> {data}")
    manifest = convert("youtube8m", [
        "--input", paths["train"], "--input", paths["validate"], "--input", paths["test"],
        "--vocabulary", paths["segment_vocabulary"], "--classes", paths["vocabulary"],
        "--output", data, "--overwrite"])
    print(summary(manifest, data))
    for directory in (video_dir, segment_dir):
        if os.path.isdir(directory):
            shutil.rmtree(directory)  # a fresh run: the data were just rewritten
    print(f"[3/7] pretrain yt8m_nextvlad:tiny at video level -> {video_dir}")
    train(load_recipe("yt8m_nextvlad:tiny"), data, video_dir, verbose=2)
    print(f"[4/7] fine-tune yt8m_segment_agnostic:tiny on rated segments -> {segment_dir}")
    train(load_recipe("yt8m_segment_agnostic:tiny", [f"model.args.pretrained={video_dir}"]), data, segment_dir,
          verbose=2)
    print("[5/7] evaluate on held-out validate videos")
    print(yt8m_predict.evaluate(video_dir, data)["text"].replace("segment MAP", "pretrained: segment MAP"))
    print(yt8m_predict.evaluate(segment_dir, data)["text"].replace("segment MAP", "fine-tuned: segment MAP"))
    print(f"[6/7] export -> {exports}")
    video_model, segment_model = export(video_dir, exports, name="yt8m_video"), export(segment_dir, exports)
    submission = os.path.join(workdir, "yt8m_segments.csv")
    print(f"[7/7] predict every test segment, averaging both exported models -> {submission}")
    segments = yt8m_predict.predict_segments([segment_model, video_model], data, submission)
    truth = read_segment_submission(paths["test_segments_truth"])
    ranked = read_segment_submission(submission)
    score = ranked_segment_map_at_k(ranked, {label: set(keys) for label, keys in truth.items()})
    # A random ranking's expected AP is about the share of positives among the segments.
    chance = sum(len(keys) for keys in truth.values() if keys) / (segments * sum(1 for k in truth.values() if k))
    print(f"\nsubmission MAP@100,000 against the sample's hidden test truth: {score:.4f} "
          f"(a random ranking: about {chance:.4f})")
    print(f"exported models: {segment_model}, {video_model}\nsubmission: {submission}")
