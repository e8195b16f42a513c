"""Snapping and the hierarchical hard vote, against hand-computed cases."""

import pytest

from tfrecords import UserError
from yt8m_keras.competitions.taxonomy.hierarchy import Taxonomy, read_taxonomy

PATHS = [("Food", "Dairy", "Yogurt", "Danone"), ("Food", "Dairy", "Yogurt", "Alpenhof"),
         ("Food", "Dairy", "Cheese", "Alpenhof"), ("Food", "Snacks", "Chips", "Crunchy"),
         ("Drinks", "Soft Drinks", "Cola", "Zestia"), ("Drinks", "Soft Drinks", "Energy", "Zestia")]
COUNTS = [10, 4, 6, 3, 8, 1]


@pytest.fixture
def taxonomy():
    return Taxonomy(PATHS, COUNTS)


def test_valid_paths_and_majority(taxonomy):
    assert taxonomy.is_valid(("Food", "Dairy", "Cheese", "Alpenhof"))
    assert not taxonomy.is_valid(("Food", "Dairy", "Cheese", "Danone"))  # a brand under the wrong module
    assert not taxonomy.is_valid(None)
    assert taxonomy.majority() == ("Food", "Dairy", "Yogurt", "Danone")
    assert dict(taxonomy.children(("Food",))) == {"Dairy": 20, "Snacks": 3}


def test_snap_field_by_field(taxonomy):
    # Misspelt fields go to the closest valid child of the fields already fixed.
    assert taxonomy.snap(("Fod", "Dairy", "Yoghurt", "Danon")) == ("Food", "Dairy", "Yogurt", "Danone")
    # A brand valid elsewhere but not under the module: the closest brand under it.
    assert taxonomy.snap(("Food", "Dairy", "Cheese", "Danone")) == ("Food", "Dairy", "Cheese", "Alpenhof")
    # A module outside the group: the group's closest module (Snacks has only Chips), then its brand.
    assert taxonomy.snap(("Food", "Snacks", "Cola", "Zestia")) == ("Food", "Snacks", "Chips", "Crunchy")
    # Nothing parseable: the most frequent child at every level (Food 23 > Drinks 9, ...).
    assert taxonomy.snap(None) == ("Food", "Dairy", "Yogurt", "Danone")
    # A valid path is left alone.
    assert taxonomy.snap(PATHS[5]) == PATHS[5]


def test_snap_ties_go_to_the_more_frequent_child():
    taxonomy = Taxonomy([("A", "B", "C", "xa"), ("A", "B", "C", "xb")], [1, 5])
    assert taxonomy.snap(("A", "B", "C", "x?")) == ("A", "B", "C", "xb")


def test_hierarchical_hard_vote(taxonomy):
    votes = [("Drinks", "Soft Drinks", "Cola", "Zestia"), ("Drinks", "Soft Drinks", "Energy", "Zestia"),
             ("Food", "Dairy", "Yogurt", "Danone")]
    # Drinks 2 : 1; then Soft Drinks; Cola 1 : Energy 1 is a tie, broken by the count (8 > 1).
    assert taxonomy.vote(votes) == ("Drinks", "Soft Drinks", "Cola", "Zestia")
    # Votes below a level count only if they agree with the levels chosen above.
    votes = [("Food", "Dairy", "Cheese", "Alpenhof"), ("Food", "Dairy", "Cheese", "Alpenhof"),
             ("Food", "Snacks", "Chips", "Crunchy"), ("Drinks", "Soft Drinks", "Cola", "Zestia")]
    assert taxonomy.vote(votes) == ("Food", "Dairy", "Cheese", "Alpenhof")
    # No valid vote at a level: the most frequent valid child.
    votes = [("Food", "Dairy", "Butter", "Danone"), None, ("Food", "Dairy", "Milk", "X")]
    assert taxonomy.vote(votes) == ("Food", "Dairy", "Yogurt", "Danone")
    # The result is always a valid path.
    assert taxonomy.is_valid(taxonomy.vote([None, None]))


def test_read_taxonomy_errors(tmp_path):
    with pytest.raises(UserError, match="no taxonomy.csv"):
        read_taxonomy(str(tmp_path / "taxonomy.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("supergroup,group\nA,B\n")
    with pytest.raises(UserError, match="not a taxonomy"):
        read_taxonomy(str(bad))
    with pytest.raises(UserError, match="no paths"):
        Taxonomy([], [])
