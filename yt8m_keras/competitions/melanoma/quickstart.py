"""`yt8m-keras quickstart --recipe melanoma`: JPEG + CSV to a rank-averaged submission, on CPU in minutes.

sample (Kaggle's 2020 layout plus ISIC 2019 external data, with planted near-duplicates)
-> convert (the Beam job: crop, resize, folds, duplicates) -> train two folds of two
configurations (tiny EfficientNet with and without the metadata branch) -> evaluate each
(out-of-fold AUC of P(melanoma), a random model beside it) -> export -> predict the test
images with 8-orientation TTA, the folds of a configuration averaged and the two
configurations rank-averaged -> submission.csv.
"""

import os
import shutil

IMAGES = 400
IMAGE_SIZE = 64
FOLDS = 2
CONFIGURATIONS = ("melanoma_effnet:tiny", "melanoma_effnet_image_only:tiny")


def run(workdir: str) -> None:
    from yt8m_keras.competitions.melanoma.predict import evaluate, predict
    from yt8m_keras.competitions.melanoma.sample import write_sample
    from yt8m_keras.convert import convert, summary
    from yt8m_keras.export import export
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    raw, data, exports = (os.path.join(workdir, d) for d in ("melanoma_raw", "melanoma_data", "melanoma_export"))
    print(f"[1/6] sample SIIM-ISIC 2020 + ISIC 2019 JPEGs and CSVs -> {raw}")
    paths = write_sample(raw, images=IMAGES, seed=0)
    print(f"[2/6] convert with Beam ({FOLDS} folds, {IMAGE_SIZE} px) -> {data}")
    manifest = convert("melanoma", [
        "--csv", paths["train_csv"], "--images", paths["train_images"],
        "--csv", paths["test_csv"], "--images", paths["test_images"], "--isic2019", paths["isic2019"],
        "--output", data, "--image-size", str(IMAGE_SIZE), "--folds", str(FOLDS), "--shards-per-fold", "2",
        "--overwrite"])
    print(summary(manifest, data))
    models = []
    for step, recipe_name in enumerate(CONFIGURATIONS):
        for fold in range(FOLDS):
            model_dir = os.path.join(workdir, f"melanoma_{recipe_name.split(':')[0]}_fold{fold}")
            if os.path.isdir(model_dir):
                shutil.rmtree(model_dir)  # a fresh run: the data were just rewritten
            print(f"[3/6] train {recipe_name} on fold {fold} -> {model_dir}")
            train(load_recipe(recipe_name, [f"data.fold={fold}", f"data.folds={FOLDS}"]), data, model_dir, verbose=2)
            print(f"[4/6] evaluate {recipe_name}, fold {fold}")
            print(evaluate(model_dir, data)["text"])
            print(f"[5/6] export -> {exports}")
            models.append(export(model_dir, exports, name=f"{recipe_name.split(':')[0]}_fold{fold}"))
    submission = os.path.join(workdir, "melanoma_submission.csv")
    print(f"[6/6] predict the test images (8-orientation TTA, folds averaged, rank average) -> {submission}")
    print(predict(models, data, submission)["text"])
    model_auc, random_auc = score(submission, paths["test_truth"])
    print(f"\nsubmission AUC against the sample's hidden test labels: {model_auc:.4f} "
          f"(a random ranking: {random_auc:.4f})")
    print(f"exported models: {', '.join(models)}\nsubmission: {submission}")


def score(submission: str, truth: str):
    """(AUC of the submission, AUC of a seeded random ranking) against `image_name,target` labels."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    joined = pd.read_csv(truth).merge(pd.read_csv(submission), on="image_name", suffixes=("", "_predicted"))
    random_scores = np.random.default_rng(0).random(len(joined))
    return (roc_auc_score(joined["target"], joined["target_predicted"]),
            roc_auc_score(joined["target"], random_scores))
