"""`yt8m-keras quickstart --recipe cdiscount`: the whole pipeline on sample data, on CPU in minutes.

sample (1,000 products in real BSON with real JPEGs) -> convert (the Beam job) -> train
(`cdiscount_xception:tiny`) -> export (a SavedModel for TF Serving) -> evaluate (top-1 per
combination rule, with and without TTA) -> predict (a Kaggle submission from the SavedModel).
"""

import os
import shutil

RECIPE = "cdiscount_xception:tiny"
PRODUCTS = 1000
CLASSES = 8
TTA = 4


def run(workdir: str) -> None:
    from yt8m_keras.competitions.cdiscount.predict import evaluate, predict
    from yt8m_keras.competitions.cdiscount.sample import write_sample
    from yt8m_keras.convert import convert, summary
    from yt8m_keras.export import export
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    raw, data, model_dir, exports = (os.path.join(workdir, d) for d in ("raw", "data", "model", "export"))
    print(f"[1/6] sample Cdiscount BSON -> {raw}")
    paths = write_sample(raw, products=PRODUCTS, classes=CLASSES, seed=0)
    print(f"[2/6] convert with Beam -> {data}")
    manifest = convert("cdiscount", ["--input", paths["train"], "--input", paths["test"],
                                     "--categories", paths["categories"], "--output", data, "--overwrite"])
    print(summary(manifest, data))
    print(f"[3/6] train {RECIPE} -> {model_dir}")
    if os.path.isdir(model_dir):
        shutil.rmtree(model_dir)  # a fresh run: the data were just rewritten
    train(load_recipe(RECIPE), data, model_dir, verbose=2)
    print(f"[4/6] export -> {exports}")
    path = export(model_dir, exports)
    print(f"[5/6] evaluate on the val split (TTA x{TTA})")
    print(evaluate(model_dir, data, tta=TTA)["text"])
    submission = os.path.join(workdir, "submission.csv")
    print(f"[6/6] predict the test split with the SavedModel -> {submission}")
    products = predict(path, data, submission)
    print(f"\nexported model: {path}\nsubmission: {submission} ({products} products)")
