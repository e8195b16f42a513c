"""The trie and the constrained samplers: only valid continuations, checked exhaustively on small tries."""

import itertools

import numpy as np
import pytest
from keras import ops

from yt8m_keras.models.trie_sampler import Trie, TrieSampler

END, PAD, VOCAB = 1, 0, 9
SEQUENCES = [[3, 4, 1], [3, 5, 6, 1], [3, 5, 7, 1], [8, 1], [4, 4, 4, 4, 1]]


def test_trie_allows_exactly_the_continuations_of_some_sequence():
    trie = Trie(SEQUENCES, end_id=END)
    prefixes = {tuple(s[:i]) for s in SEQUENCES for i in range(len(s))}
    # Every token sequence up to the longest length: walk the trie, compare with the prefix set.
    for length in range(0, 5):
        for tokens in itertools.product(range(VOCAB), repeat=length):
            node = Trie.ROOT
            for token in tokens:
                node = trie.step(node, token)
            is_prefix = tuple(tokens) in prefixes
            assert (node >= 0 and trie.terminal[node] < 0) == is_prefix, tokens
            if is_prefix:
                expected = sorted({s[length] for s in SEQUENCES if tuple(s[:length]) == tuple(tokens)})
                assert trie.allowed(node) == expected
    assert [trie.sequence_index(s + [PAD, PAD]) for s in SEQUENCES] == list(range(len(SEQUENCES)))
    assert trie.sequence_index([3, 4, 4, 1]) == -1


def test_trie_rejects_bad_sequences():
    with pytest.raises(ValueError, match="end token"):
        Trie([[3, 4]], end_id=END)
    with pytest.raises(ValueError, match="repeats"):
        Trie([[3, 1], [3, 1]], end_id=END)


def fake_next(table):
    """A `next` whose logits depend on the position and the previous token (a tiny 'language model')."""
    table = ops.convert_to_tensor(table)

    def next(prompt, cache, index):
        previous = prompt[:, index - 1]
        logits = ops.take(ops.take(table, index, axis=0), previous, axis=0)  # (batch, vocab)
        return logits + cache, None, cache  # cache: a per-row bias, as a stand-in for real caches

    return next


def log_likelihood(table, bias, sequence):
    total, previous = 0.0, PAD
    for position, token in enumerate(sequence, start=1):
        logits = table[position, previous] + bias
        total += logits[token] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        previous = token
    return total


@pytest.mark.parametrize("beams", [1, 2, len(SEQUENCES)])
def test_samplers_emit_only_valid_sequences(beams):
    rng = np.random.default_rng(beams)
    length = 7
    trie = Trie(SEQUENCES, end_id=END)
    for trial in range(20):
        table = rng.normal(0, 3, (length, VOCAB, VOCAB)).astype("float32")
        bias = rng.normal(0, 3, (4, VOCAB)).astype("float32")
        prompt = np.zeros((4, length), "int32")
        out = np.asarray(TrieSampler(trie, num_beams=beams)(fake_next(table), ops.convert_to_tensor(prompt),
                                                            cache=ops.convert_to_tensor(bias), index=1))
        for row, b in zip(out, bias):
            index = trie.sequence_index(row[1:])
            assert index >= 0, row
            scores = [log_likelihood(table, b, s) for s in SEQUENCES]
            if beams == len(SEQUENCES):  # as many beams as sequences: exhaustive, so the best one
                assert index == int(np.argmax(scores)), (row, scores)
            # Padding after the end token.
            tail = row[1 + len(SEQUENCES[index]):]
            assert (tail == PAD).all()


def test_greedy_follows_the_model_where_it_is_valid():
    """With the model's argmax always valid, constrained greedy is unconstrained greedy."""
    length = 6
    table = np.full((length, VOCAB, VOCAB), -5.0, "float32")
    for position, (previous, token) in enumerate(zip([PAD, 3, 5], [3, 5, 7]), start=1):
        table[position, previous, token] = 5.0
    table[4, 7, END] = 5.0
    out = np.asarray(TrieSampler(Trie(SEQUENCES, end_id=END))(fake_next(table), ops.zeros((2, length), "int32"),
                                                              cache=ops.zeros((2, VOCAB)), index=1))
    np.testing.assert_array_equal(out[:, 1:], [[3, 5, 7, 1, 0]] * 2)
