"""The Cdiscount task's model: the seed's augmentation at the front of the Xception, from the recipe."""

import pytest

from tfrecords import UserError
from yt8m_keras.competitions.cdiscount import task
from yt8m_keras.models.augmentation import CdiscountAugmentation
from yt8m_keras.recipes import load_recipe
from yt8m_keras.train import _seed_states

TINY = ["data.image_size=32"]


def test_build_model_puts_the_augmentation_at_the_front_when_the_recipe_augments():
    recipe = load_recipe("cdiscount_xception:tiny", TINY)
    assert recipe.data.augment
    model = task.build_model(recipe, num_classes=3)
    augmentation = model.get_layer("augmentation")
    assert isinstance(augmentation, CdiscountAugmentation)
    assert augmentation.seed == recipe.training.seed
    # Its output is what the rescaling (the model's first own step) reads.
    assert model.get_layer("rescaling").input is augmentation.output
    # Its seed state is among the variables the trainer's backups save and restore.
    assert any(v is augmentation.seed_generator.state for v in _seed_states(model))

    plain = task.build_model(load_recipe("cdiscount_xception:tiny", [*TINY, "data.augment=false"]), num_classes=3)
    assert not any(isinstance(layer, CdiscountAugmentation) for layer in plain.layers)


def test_augmentation_is_not_a_recipe_model_argument():
    recipe = load_recipe("cdiscount_xception:tiny", [*TINY, "model.args.augmentation=1"])
    with pytest.raises(UserError, match="model.args.augmentation"):
        task.build_model(recipe, num_classes=3)
