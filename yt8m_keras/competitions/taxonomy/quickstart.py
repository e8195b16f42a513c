"""`yt8m-keras quickstart --recipe taxonomy`: receipt lines to a datathon submission, on CPU in minutes.

sample (the datathon's JSON-lines files, with a realistic hierarchy and noisy descriptions)
-> convert (the Beam job: join, stratified validation split, taxonomy.csv, a SentencePiece
tokenizer) -> train two tiny T5s (two seeds) -> evaluate the first on the validation split
(unconstrained, snapped and constrained decoding beside the majority path) -> export both
-> predict the test lines with each decoding and with the two models' hierarchical hard
vote -> score the submissions against the sample's hidden test labels.
"""

import os
import shutil

LINES = 2000
SEEDS = (0, 1)
VOCAB_SIZE = 600


def run(workdir: str) -> None:
    from yt8m_keras.competitions.taxonomy.hierarchy import TAXONOMY, read_taxonomy
    from yt8m_keras.competitions.taxonomy.predict import evaluate, predict, score_submission, table
    from yt8m_keras.competitions.taxonomy.sample import write_sample
    from yt8m_keras.convert import convert, summary
    from yt8m_keras.export import export
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    raw, data, exports = (os.path.join(workdir, d) for d in ("taxonomy_raw", "taxonomy_data", "taxonomy_export"))
    print(f"[1/6] sample the datathon's JSON-lines files ({LINES} lines) -> {raw}")
    paths = write_sample(raw, products=LINES, seed=0)
    print(f"[2/6] convert with Beam (stratified validation split, taxonomy, tokenizer) -> {data}")
    manifest = convert("taxonomy", [
        "--features", paths["train_features"], "--labels", paths["train_labels"],
        "--features", paths["test_features"], "--output", data, "--val-fraction", "0.1",
        "--vocab-size", str(VOCAB_SIZE), "--overwrite"])
    print(summary(manifest, data))
    models = []
    for seed in SEEDS:
        model_dir = os.path.join(workdir, f"taxonomy_t5_seed{seed}")
        if os.path.isdir(model_dir):
            shutil.rmtree(model_dir)  # a fresh run: the data were just rewritten
        print(f"[3/6] train taxonomy_t5:tiny (seed {seed}) -> {model_dir}")
        train(load_recipe("taxonomy_t5:tiny", [f"training.seed={seed}"]), data, model_dir, verbose=2)
        if seed == SEEDS[0]:
            print("[4/6] evaluate on the validation split: the three decodings")
            print(evaluate(model_dir, data, beams=4)["text"])
        print(f"[5/6] export -> {exports}")
        models.append(export(model_dir, exports, name=f"taxonomy_t5_seed{seed}"))
    print("[6/6] predict the test lines")
    taxonomy = read_taxonomy(os.path.join(data, TAXONOMY))
    results = {}
    for decoding in ("unconstrained", "snapped", "constrained"):
        submission = os.path.join(workdir, f"taxonomy_{decoding}.predict")
        predict(models[:1], data, submission, decoding=decoding)
        results[f"{decoding} (seed {SEEDS[0]})"] = score_submission(submission, paths["test_labels"], taxonomy)
    submission = os.path.join(workdir, "taxonomy_submission.predict")
    counts = predict(models, data, submission, decoding="constrained")
    results[f"constrained, vote of {len(models)}"] = score_submission(submission, paths["test_labels"], taxonomy)
    print(f"\ntest lines scored against the sample's hidden labels ({counts['lines']} lines):")
    print(table(results))
    print(f"\nexported models: {', '.join(models)}\nsubmission: {submission}")
