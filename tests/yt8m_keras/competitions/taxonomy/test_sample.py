import collections
import json
import re

import pytest

from yt8m_keras.competitions.taxonomy import sample


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return sample.write_sample(str(tmp_path_factory.mktemp("taxonomy_raw")), products=2000, seed=0)


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _split(raw, split):
    features, labels = _jsonl(raw[f"{split}_features"]), _jsonl(raw[f"{split}_labels"])
    assert [f["indoml_id"] for f in features] == [l["indoml_id"] for l in labels]
    return features, labels


def _tokens(description):
    return re.findall(r"[^\W_]+", description.lower())


def test_files_keys_and_types(raw):
    assert {k: v.rsplit("/", 1)[1] for k, v in raw.items()} == sample.FILES
    train, train_labels = _split(raw, "train")
    test, test_labels = _split(raw, "test")
    assert len(train) + len(test) == 2000 and len(test) == 400
    for f in train + test:
        assert tuple(f) == sample.FEATURE_KEYS
        assert type(f["indoml_id"]) is int and type(f["price"]) is float
        assert isinstance(f["description"], str) and f["description"]
        assert f["retailer"] in sample.RETAILERS
        assert f["price"] > 0 and round(f["price"], 2) == f["price"]
    for l in train_labels + test_labels:
        assert tuple(l) == sample.LABEL_KEYS
        assert (l["supergroup"], l["group"], l["module"], l["brand"]) in sample.HIERARCHY
    ids = [f["indoml_id"] for f in train + test]
    assert len(set(ids)) == len(ids)
    assert [f["indoml_id"] for f in train] == sorted(f["indoml_id"] for f in train)
    # Accents reach the labels and, from retailers that keep them, the descriptions.
    assert any(not l["brand"].isascii() for l in train_labels)
    assert any(not f["description"].isascii() for f in train)
    assert set(f["retailer"] for f in train) == set(sample.RETAILERS)


def test_same_seed_same_bytes(tmp_path):
    a = sample.write_sample(str(tmp_path / "a"), products=50, seed=3)
    b = sample.write_sample(str(tmp_path / "b"), products=50, seed=3)
    c = sample.write_sample(str(tmp_path / "c"), products=50, seed=4)
    for name in sample.FILES:
        assert open(a[name], "rb").read() == open(b[name], "rb").read()
    assert open(a["train_features"], "rb").read() != open(c["train_features"], "rb").read()
    assert len(_jsonl(a["test_features"])) == 10 and len(_jsonl(a["train_features"])) == 40
    assert not list(tmp_path.glob("*/*.tmp"))
    with pytest.raises(ValueError, match="at least 5"):
        sample.write_sample(str(tmp_path / "d"), products=4)


def test_hierarchy_is_strict_and_brands_are_shared(raw):
    labels = _split(raw, "train")[1] + _split(raw, "test")[1]
    parent = collections.defaultdict(set)
    for l in labels:
        parent[("group", l["group"])].add(l["supergroup"])
        parent[("module", l["module"])].add(l["group"])
    assert all(len(parents) == 1 for parents in parent.values())
    modules_of = collections.defaultdict(set)
    brands_of = collections.defaultdict(set)
    for l in labels:
        modules_of[l["brand"]].add(l["module"])
        brands_of[l["module"]].add(l["brand"])
    assert sum(len(m) >= 2 for m in modules_of.values()) >= 10
    assert sum(len(b) >= 2 for b in brands_of.values()) >= 10
    # Sizes the docstring promises, and every path of the hierarchy in a 2,000-line sample.
    assert (len(sample.SUPERGROUPS), len(sample.GROUPS), len(sample.MODULES), len(sample.BRANDS)) == (4, 9, 21, 25)
    assert {(l["module"], l["brand"]) for l in labels} == {(p[2], p[3]) for p in sample.HIERARCHY}


def test_test_paths_are_seen_in_train(tmp_path):
    for products in (50, 2000):
        paths = sample.write_sample(str(tmp_path / str(products)), products=products, seed=1)
        train = {(l["module"], l["brand"]) for l in _jsonl(paths["train_labels"])}
        test = [(l["module"], l["brand"]) for l in _jsonl(paths["test_labels"])]
        assert all(path in train for path in test)


def test_descriptions_are_abbreviated_and_noisy(raw):
    features, labels = _split(raw, "train")
    descriptions = [f["description"] for f in features]
    full_name = [l["module"].lower() in d.lower() for d, l in zip(descriptions, labels)]
    assert 0.2 < sum(full_name) / len(full_name) < 0.6
    assert any(d.isupper() for d in descriptions) and any(d.islower() for d in descriptions)
    noise = set(n.lower() for n in sample.NOISE)
    assert sum(any(n in d.lower().split() for n in noise) for d in descriptions) > 50
    by_retailer = collections.defaultdict(list)
    for f in features:
        by_retailer[f["retailer"]].append(f["description"])
    assert max(len(d) for d in by_retailer["retailer_2"]) <= 20
    assert all(d == d.lower() for d in by_retailer["retailer_3"])
    assert any(re.match(r"\d{4,6} ", d) for d in by_retailer["retailer_5"])


def test_module_is_learnable_and_paths_are_spread(raw):
    """A token-vote rule from train descriptions beats the majority module by far."""
    train, train_labels = _split(raw, "train")
    test, test_labels = _split(raw, "test")
    module_counts = collections.Counter(l["module"] for l in train_labels)
    majority = module_counts.most_common(1)[0][0]
    baseline = sum(l["module"] == majority for l in test_labels) / len(test_labels)

    # Each token votes with its module distribution in train; ties and unseen lines fall
    # back to the majority module.
    per_token = collections.defaultdict(collections.Counter)
    for f, l in zip(train, train_labels):
        for token in set(_tokens(f["description"])):
            per_token[token][l["module"]] += 1
    correct = 0
    for f, l in zip(test, test_labels):
        votes = collections.Counter()
        for token in set(_tokens(f["description"])):
            counts = per_token.get(token)
            if counts:
                total = sum(counts.values())
                for module, n in counts.items():
                    votes[module] += n / total
        predicted = max(sorted(votes), key=votes.get) if votes else majority
        correct += predicted == l["module"]
    accuracy = correct / len(test_labels)
    print(f"module accuracy: majority {baseline:.3f}, token vote {accuracy:.3f}")
    assert baseline < 0.15
    assert accuracy > 0.6 and accuracy > baseline + 0.45

    paths = collections.Counter((l["module"], l["brand"]) for l in train_labels + test_labels)
    assert paths.most_common(1)[0][1] / sum(paths.values()) < 0.15
