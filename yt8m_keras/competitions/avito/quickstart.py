"""`yt8m-keras quickstart --recipe avito`: ads CSV + JPEGs to a stacked submission, on CPU in minutes.

sample (Kaggle's layout: CSVs with quoted newlines and Cyrillic text, picture folders with a
few broken and missing pictures) -> convert (the Beam job: vocabularies, statistics, folds
grouped by seller, a subword tokenizer) -> stage 1: the LSTM language model (tiny) ->
stage 2: CNN features of every picture, center crop and pad-to-square (a Beam job, float16
memmaps) -> stage 3: the network on 2 folds, with each picture preprocessing -> stage 4:
LightGBM on tabular features and on tabular + network features, then the LightGBM stacker
over the four first-level models -> the RMSE table and submission.csv.
"""

import os
import shutil

ADS = 2000
FOLDS = 2
NETWORKS = (("nn_center", "avito_nn:tiny"), ("nn_pad", "avito_nn_pad:tiny"))


def _fresh(path: str) -> str:
    if os.path.isdir(path):
        shutil.rmtree(path)  # a fresh run: the data were just rewritten
    return path


def run(workdir: str) -> None:
    from yt8m_keras.competitions.avito.competition import _evaluate_language_model, run_features
    from yt8m_keras.competitions.avito.predict import evaluate, rmse
    from yt8m_keras.competitions.avito.sample import write_sample
    from yt8m_keras.competitions.avito.stacking import lgbm_first_level, read_submission, stack
    from yt8m_keras.convert import convert, summary
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    raw, data = os.path.join(workdir, "avito_raw"), os.path.join(workdir, "avito_data")
    print(f"[1/7] sample Kaggle's CSVs and pictures ({ADS} ads) -> {raw}")
    paths = write_sample(raw, ads=ADS, seed=0)
    print(f"[2/7] convert with Beam ({FOLDS} folds grouped by seller, vocabularies, tokenizer) -> {data}")
    manifest = convert("avito", ["--csv", paths["train_csv"], "--images", paths["train_images"],
                                 "--csv", paths["test_csv"], "--images", paths["test_images"], "--output", data,
                                 "--folds", str(FOLDS), "--vocab-size", "2000", "--overwrite"])
    print(summary(manifest, data))
    lm = _fresh(os.path.join(workdir, "avito_lm"))
    print(f"[3/7] stage 1: the language model on title + description -> {lm}")
    train(load_recipe("avito_lm:tiny"), data, lm, verbose=2)
    print(_evaluate_language_model(lm, data))
    print("[4/7] stage 2: CNN features of every picture (center crop, pad-to-square)")
    # ResNet50 with random weights (nothing is downloaded): its features keep a useful scale in
    # float16, where MobileNetV3's random features underflow to zero.
    run_features(data, backbone="resnet50", image_size=64, batch_size=64, overwrite=True)
    runs = {}
    for name, recipe_name in NETWORKS:
        runs[name] = []
        for fold in range(FOLDS):
            run_dir = _fresh(os.path.join(workdir, f"avito_{name}_fold{fold}"))
            print(f"[5/7] stage 3: {recipe_name}, fold {fold} held out -> {run_dir}")
            train(load_recipe(recipe_name, [f"data.fold={fold}", f"data.folds={FOLDS}",
                                            f"model.args.language_model={lm}"]), data, run_dir, verbose=2)
            print(evaluate(run_dir, data)["text"])
            runs[name].append(run_dir)
    print("[6/7] stage 4a: LightGBM on tabular features, and with the center network's features")
    tabular, with_network = os.path.join(workdir, "avito_lgbm_tabular"), os.path.join(workdir, "avito_lgbm_nn")
    lgbm_first_level(data, _fresh(tabular), rounds=200)
    lgbm_first_level(data, _fresh(with_network), network_runs=runs["nn_center"], rounds=200)
    submission = os.path.join(workdir, "avito_submission.csv")
    print(f"[7/7] stage 4b: the LightGBM stacker -> {submission}")
    result = stack([*(os.path.join(workdir, f"avito_{name}_fold*") for name, _ in NETWORKS), tabular, with_network],
                   data, submission)
    print(result["text"])
    import pandas as pd

    truth = pd.read_csv(paths["test_truth"], dtype={"item_id": str})
    joined = truth.merge(read_submission(submission), on="item_id", suffixes=("", "_predicted"))
    print(f"\nsubmission RMSE against the sample's hidden test targets: "
          f"{rmse(joined['deal_probability'], joined['deal_probability_predicted']):.4f} "
          f"(the training mean: {rmse(joined['deal_probability'], [result['train_mean']] * len(joined)):.4f})")
    print(f"submission: {submission} ({result['test_ads']} test ads)")
