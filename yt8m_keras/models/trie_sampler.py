"""Decoding restricted to a finite set of token sequences: a trie and KerasHub samplers over it.

A seq2seq model asked for one of N known outputs (a taxonomy path, a label name) can emit
strings that are none of them. Here the set is a trie of token sequences, each ending with
the end token, and the samplers allow at each step only the tokens that continue some
sequence, so every output is one of the N by construction: decoding, not repair.

The trie is kept as flat edge arrays (`parent`, `token`, `child`) sorted by parent, so a
node's outgoing edges are one contiguous range: one step gathers, for each row, the scores
of its node's range only (O(batch x largest fan-out), not O(batch x edges): a real
taxonomy has ~10^5 edges), with `keras.ops` only: it runs inside `generate_step` under
TensorFlow (export), JAX (benchmarks) and eagerly.
"""

from typing import Dict, List, Sequence, Tuple

import keras
import numpy as np
from keras import ops

try:  # keras_hub is imported lazily elsewhere; the samplers need its base class
    from keras_hub.samplers import Sampler
except ImportError:  # pragma: no cover - keras_hub is a dependency
    Sampler = object

NEG = -1e9  # "not allowed": finite, so sums stay finite and comparable


class Trie:
    """The token sequences an output may be, as flat edge arrays.

    Args:
        sequences: token id sequences, each ending with `end_id` (no other `end_id` in it).
        end_id: the end token.

    Example:
        >>> trie = Trie([[5, 7, 1], [5, 8, 1]], end_id=1)
        >>> trie.allowed(trie.ROOT)
        [5]
        >>> trie.sequence_index((5, 8, 1))
        1
    """

    ROOT = 0

    def __init__(self, sequences: Sequence[Sequence[int]], end_id: int):
        self.end_id = end_id
        children: List[Dict[int, int]] = [{}]
        self.terminal: List[int] = [-1]  # node -> index of the sequence it ends, or -1
        self._index: Dict[Tuple[int, ...], int] = {}
        for i, sequence in enumerate(sequences):
            sequence = tuple(int(t) for t in sequence)
            if not sequence or sequence[-1] != end_id or end_id in sequence[:-1]:
                raise ValueError(f"sequence {i} must end with the end token {end_id} and hold it once: {sequence}")
            if sequence in self._index:
                raise ValueError(f"sequence {i} repeats sequence {self._index[sequence]}: {sequence}")
            self._index[sequence] = i
            node = self.ROOT
            for token in sequence:
                if token not in children[node]:
                    children[node][token] = len(children)
                    children.append({})
                    self.terminal.append(-1)
                node = children[node][token]
            self.terminal[node] = i
        edges = sorted((parent, token, child) for parent, kids in enumerate(children) for token, child in kids.items())
        self.parent, self.token, self.child = (np.array(column, np.int32) for column in zip(*edges))
        self.children = children
        self.max_length = max(len(s) for s in self._index)

    def allowed(self, node: int) -> List[int]:
        return sorted(self.children[node])

    def step(self, node: int, token: int) -> int:
        """The node after `token`, or -1 when no sequence continues that way."""
        return self.children[node].get(token, -1) if node >= 0 else -1

    def sequence_index(self, tokens: Sequence[int]) -> int:
        """Which sequence `tokens` (up to and with the first end token) is, or -1."""
        tokens = [int(t) for t in tokens]
        if self.end_id in tokens:
            tokens = tokens[:tokens.index(self.end_id) + 1]
        return self._index.get(tuple(tokens), -1)


class TrieSampler(Sampler):
    """A KerasHub sampler emitting only sequences of a `Trie`: greedy (`num_beams=1`) or beam search.

    Pass it as `model.compile(sampler=...)` or set `model.sampler`, then call the model's
    `generate_step` on a decoder prompt of one start token. Each step scores the trie's
    edges leaving each row's node with the model's log-probabilities; greedy takes the
    best, beam search keeps the `num_beams` best partial sequences by summed
    log-probability (finished sequences keep their score). Rows end on the end token
    and are padded with `pad_id`.

    Args:
        trie: the allowed sequences.
        num_beams: 1 for greedy decoding.
        pad_id: written after a sequence's end.

    Example:
        >>> lm.sampler = TrieSampler(Trie(paths, end_id=1), num_beams=4)
        >>> lm.generate_step(inputs, stop_token_ids=(1,))["decoder_token_ids"]
    """

    def __init__(self, trie: Trie, num_beams: int = 1, pad_id: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.trie, self.num_beams, self.pad_id = trie, int(num_beams), pad_id
        self.edge_token = ops.convert_to_tensor(trie.token)
        self.edge_child = ops.convert_to_tensor(trie.child)
        self.node_done = ops.convert_to_tensor(np.array(trie.terminal) >= 0)
        # A node's edges are edge_start[node] .. edge_start[node] + edge_count[node] - 1.
        nodes = len(trie.terminal)
        count = np.bincount(trie.parent, minlength=nodes).astype(np.int32)
        self.max_fanout = max(int(count.max()), 1)
        self.edge_start = ops.convert_to_tensor(np.searchsorted(trie.parent, np.arange(nodes)).astype(np.int32))
        self.edge_count = ops.convert_to_tensor(count)

    def _edge_scores(self, logits, nodes, normalize: bool = True):
        """(scores, edges), both [rows, max_fanout]: each row's outgoing edges, NEG past its fan-out.

        Greedy takes an argmax, which needs no normalisation; beam search sums log-probabilities.
        """
        slots = ops.arange(self.max_fanout, dtype="int32")[None, :]
        valid = slots < ops.take(self.edge_count, nodes)[:, None]
        edges = ops.where(valid, ops.take(self.edge_start, nodes)[:, None] + slots, 0)
        logits = ops.cast(logits, "float32")
        scores = ops.take_along_axis(logits, ops.take(self.edge_token, edges), axis=1)
        if normalize:
            scores = scores - ops.logsumexp(logits, axis=-1, keepdims=True)
        return ops.where(valid, scores, NEG), edges

    def __call__(self, next, prompt, cache=None, index=0, mask=None, stop_token_ids=None, hidden_states=None,
                 model=None, **kwargs):
        # Our prompts are one start token: `index` is where generation begins, and
        # `mask` (user-given prompt tokens) has nothing past it.
        index = ops.cast(index, "int32")
        max_length = ops.shape(prompt)[-1]
        cache = () if cache is None else cache
        if self.num_beams == 1:
            return self._greedy(next, prompt, cache, index, max_length, model)
        return self._beam(next, prompt, cache, index, max_length, model)

    def _greedy(self, next, prompt, cache, index, max_length, model):
        nodes = ops.zeros((ops.shape(prompt)[0],), "int32")

        def cond(prompt, cache, index, nodes):
            return ops.logical_not(ops.all(ops.take(self.node_done, nodes)))

        def body(prompt, cache, index, nodes):
            logits, _, cache = next(prompt, cache, index)
            scores, edges = self._edge_scores(logits, nodes, normalize=False)
            best = ops.take_along_axis(edges, ops.argmax(scores, axis=-1)[:, None], axis=1)[:, 0]
            done = ops.take(self.node_done, nodes)
            token = ops.where(done, self.pad_id, ops.take(self.edge_token, best))
            nodes = ops.where(done, nodes, ops.take(self.edge_child, best))
            prompt = ops.slice_update(prompt, [0, index], ops.cast(token, prompt.dtype)[:, None])
            return prompt, cache, index + 1, nodes

        prompt, _, _, _ = self.run_loop(cond, body, loop_vars=(prompt, cache, index, nodes),
                                        maximum_iterations=max_length - index, model=model)
        return prompt

    def _beam(self, next, prompt, cache, index, max_length, model):
        beams = self.num_beams
        batch = ops.shape(prompt)[0]
        fanout = self.max_fanout

        def expand(x):  # (batch, ...) -> (batch * beams, ...), each row repeated
            return ops.repeat(x, beams, axis=0)

        prompt = expand(prompt)
        cache = keras.tree.map_structure(expand, cache)
        nodes = ops.zeros((batch * beams,), "int32")
        # Only the first beam of a row is live at the start, so the beams diverge.
        scores = ops.reshape(ops.tile(ops.convert_to_tensor([0.0] + [NEG] * (beams - 1)), [batch]), (-1,))

        def cond(prompt, cache, index, nodes, scores):
            return ops.logical_not(ops.all(ops.take(self.node_done, nodes)))

        def body(prompt, cache, index, nodes, scores):
            logits, _, cache = next(prompt, cache, index)
            done = ops.take(self.node_done, nodes)
            edge_scores, edges = self._edge_scores(logits, nodes)
            edge_scores = ops.where(done[:, None], NEG, edge_scores)
            # One more candidate per beam: staying finished, at no cost.
            stay = ops.where(done, 0.0, NEG)[:, None]
            candidates = ops.concatenate([edge_scores, stay], axis=1) + scores[:, None]
            candidates = ops.reshape(candidates, (batch, beams * (fanout + 1)))
            top_scores, top = ops.top_k(candidates, k=beams)
            source = ops.reshape(top // (fanout + 1) + ops.arange(batch)[:, None] * beams, (-1,))
            choice = ops.reshape(top % (fanout + 1), (-1,))
            stays = ops.equal(choice, fanout)
            edge = ops.take_along_axis(ops.take(edges, source, axis=0), ops.minimum(choice, fanout - 1)[:, None],
                                       axis=1)[:, 0]
            prompt = ops.take(prompt, source, axis=0)
            cache = keras.tree.map_structure(lambda x: ops.take(x, source, axis=0), cache)
            nodes = ops.where(stays, ops.take(nodes, source), ops.take(self.edge_child, edge))
            token = ops.where(stays, self.pad_id, ops.take(self.edge_token, edge))
            prompt = ops.slice_update(prompt, [0, index], ops.cast(token, prompt.dtype)[:, None])
            return prompt, cache, index + 1, nodes, ops.reshape(top_scores, (-1,))

        prompt, _, _, _, scores = self.run_loop(cond, body, loop_vars=(prompt, cache, index, nodes, scores),
                                                maximum_iterations=max_length - index, model=model)
        # top_k sorts: each row's first beam is its best.
        return ops.reshape(prompt, (batch, beams, -1))[:, 0]

    def get_config(self):
        config = super().get_config()
        config.update({"num_beams": self.num_beams, "pad_id": self.pad_id})
        return config
