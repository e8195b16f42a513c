import pytest

from tfrecords import UserError
from yt8m_keras.recipes import load_recipe, parse_set


def test_packaged_recipe_and_its_tiny_variant():
    full = load_recipe("cdiscount_xception")
    tiny = load_recipe("cdiscount_xception:tiny")
    assert full.model.args["variant"] == "xception" and tiny.model.args["variant"] == "tiny"
    assert full.training.batch_size * full.training.accumulation_steps * 2 == 1536  # the seed, on 2 GPUs
    assert full.training.stages == {0: "top", 1: "blocks10+", 3: "full"}
    assert tiny.training.stages == {0: "full"}  # stages are replaced, not merged
    assert tiny.model.args["dropout"] == full.model.args["dropout"]  # other keys are merged
    assert tiny.name == "cdiscount_xception:tiny"


def test_set_overrides_with_yaml_values():
    recipe = load_recipe("cdiscount_xception:tiny", ["training.batch_size=4", "training.learning_rate=1e-4",
                                                     "training.lr_decay_epochs=[1, 2]", "model.args.hidden_units=16"])
    assert recipe.training.batch_size == 4 and recipe.training.learning_rate == 1e-4
    assert recipe.training.lr_decay_epochs == [1, 2] and recipe.model.args["hidden_units"] == 16
    assert parse_set(["a.b.c=x"]) == {"a": {"b": {"c": "x"}}}


@pytest.mark.parametrize("overrides, message", [
    (["training.batchsize=4"], "unknown recipe key training.batchsize"),
    (["training.batch_size=four"], "recipe key training.batch_size: expected int, got 'four'"),
    (["training.batch_size=true"], "recipe key training.batch_size: expected int, got True"),
    (["training.epochs=0"], "recipe key training.epochs: must be at least 1"),
    (["training.precision=fp8"], "recipe key training.precision"),
    (["training.stages={1: full}"], "recipe key training.stages: must say which stage epoch 0 trains"),
    (["data=3"], "recipe key data.: expected a mapping"),
    (["nonsense"], "--set expects key=value"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(UserError) as error:
        load_recipe("cdiscount_xception:tiny", overrides)
    assert message in str(error.value)


def test_unknown_recipe_variant_and_file(tmp_path):
    with pytest.raises(UserError, match="recipe not found: nope"):
        load_recipe("nope")
    with pytest.raises(UserError, match="no variant 'huge'"):
        load_recipe("cdiscount_xception:huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: cdiscount\nmodel: {name: xception}\ntraining: {batch_size: 2, colour: red}\n")
    with pytest.raises(UserError, match="unknown recipe key training.colour"):
        load_recipe(str(bad))
