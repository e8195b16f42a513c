"""Taxonomy: products/s of greedy generation, constrained to the taxonomy's paths against unconstrained.

    python benchmarks/taxonomy_generate.py [--configuration tiny] [--batches 1,8,64] [--lines 128]
        [--eager-lines 8] [--repeats 3] [--executions compiled,eager] [--untrained] [--extra-paths N]
        [--workdir DIR]
    KERAS_BACKEND=jax python benchmarks/taxonomy_generate.py --configuration small --workdir DIR   # on a GPU

Prepares, cached in --workdir: `yt8m-keras sample taxonomy` lines (--sample-lines) converted by
the Beam job (taxonomy.csv, a SentencePiece vocabulary of --vocab-size, val/test splits), and a
T5 of --configuration trained briefly (`taxonomy_t5:tiny` with the configuration and lengths
overridden, --epochs epochs of 50 steps). Trained, because an untrained T5 never emits the end
token: unconstrained greedy would then run all decoder_length - 1 steps while constrained
decoding stops at the end of a path, which flatters constrained decoding. With --untrained (for
the larger configurations, where training on a CPU takes long) the model is only built, and
--decoder-length defaults to the longest path + 1, the least the decoder accepts, so that
unconstrained decoding runs about as many steps as a path has tokens; the steps each mode ran
are printed either way, and rates compare only where they match.

Then, for each batch of --batches and each execution (compiled: the XLA-compiled
`tf.function` that `TaxonomyDecoder(compiled=True)` runs; eager: `compiled=False`), greedy unconstrained
(KerasHub's `GreedySampler`) and greedy constrained (`TrieSampler`) decoding each generate the
same lines (val and test lines, tokenized beforehand, in fixed batches): one warm-up batch
(tracing), then --lines lines (--eager-lines eagerly) per round, --repeats rounds with the two
modes alternating first, and the median round is kept. Printed: products/s of each mode, the
ratio constrained / unconstrained (goal >= 0.9: constrained costs at most 10 % more), the same
ratio by this process's CPU time (steadier where other processes share the CPU), the mean
number of tokens generated per product up to and with the end token, and the mean number of
decoding-loop steps per batch (the loop runs until the batch's last row has ended).

The sample's taxonomy is small (59 paths, ~400 trie edges, a 600-token vocabulary; the real one
has thousands of brands): --extra-paths N adds N invented brands under the sample's modules to
the paths the constrained decoder allows (the model still writes the paths it learned), to see
how constrained decoding's cost grows with the trie (each step gathers batch x the largest
fan-out of a node, not batch x edges).

Under KERAS_BACKEND=jax the tokenizer still runs on TensorFlow (on the host, GPUs hidden from
TensorFlow); generation is `generation_step` (our `generate_step` call with either sampler)
under `jax.jit` with the model's variables passed in as state, as KerasHub's
`CausalLM.make_generate_function` does for JAX ("compiled"), or called directly ("eager").
Run here on a CPU (jax 0.10.2, tiny); not yet on a GPU.

Timings on a shared CPU are noisy; only the ratios within one run mean anything.
"""

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfrecords.manifest import MANIFEST

RATIO_GOAL = 0.9
STEPS_PER_EPOCH = 50  # the tiny recipe's


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_data(workdir: str, lines: int, vocab_size: int) -> str:
    from yt8m_keras.competitions.taxonomy.sample import write_sample
    from yt8m_keras.convert import convert

    data = os.path.join(workdir, f"data_{lines}_{vocab_size}")
    if os.path.exists(os.path.join(data, MANIFEST)):
        return data
    log(f"sample {lines} lines and convert them -> {data}")
    paths = write_sample(os.path.join(workdir, f"raw_{lines}"), products=lines, seed=0)
    convert("taxonomy", ["--features", paths["train_features"], "--labels", paths["train_labels"],
                         "--features", paths["test_features"], "--output", data, "--val-fraction", "0.1",
                         "--vocab-size", str(vocab_size), "--overwrite"])
    return data


def prepare_model(workdir: str, data: str, args):
    """A trained T5 (cached in `workdir`), or with --untrained one just built."""
    from yt8m_keras.models.t5 import build_t5, read_vocabulary

    if args.untrained:
        return build_t5(read_vocabulary(os.path.join(data, "vocabulary.spm")), args.configuration, dropout=0.0,
                        encoder_length=args.encoder_length, decoder_length=args.decoder_length)
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import FINAL_WEIGHTS, load_trained, train

    model_dir = os.path.join(workdir, f"t5_{args.configuration}_{args.encoder_length}_{args.decoder_length}"
                                      f"_e{args.epochs}_{os.path.basename(data)}")
    if not os.path.exists(os.path.join(model_dir, FINAL_WEIGHTS)):
        log(f"train taxonomy_t5:tiny ({args.configuration}, {args.epochs} x {STEPS_PER_EPOCH} steps) -> {model_dir}")
        recipe = load_recipe("taxonomy_t5:tiny", [
            f"training.epochs={args.epochs}", f"training.steps_per_epoch={STEPS_PER_EPOCH}",
            f"model.args.configuration={args.configuration}", f"model.args.encoder_length={args.encoder_length}",
            f"model.args.decoder_length={args.decoder_length}"])
        train(recipe, data, model_dir, verbose=0)
    return load_trained(model_dir)[2]


def with_extra_paths(taxonomy, n: int, seed: int = 0):
    """`taxonomy` and `n` more paths: invented brands (4-7 letters) under its modules."""
    from yt8m_keras.competitions.taxonomy.hierarchy import Taxonomy

    rng = np.random.default_rng(seed)
    modules = sorted({path[:3] for path in taxonomy.paths})
    paths, counts, seen = list(taxonomy.paths), list(taxonomy.counts), set(taxonomy.paths)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    while len(paths) < len(taxonomy.paths) + n:
        path = (*modules[rng.integers(len(modules))], "".join(rng.choice(letters, rng.integers(4, 8))).capitalize())
        if path not in seen:
            seen.add(path)
            paths.append(path)
            counts.append(1)
    return Taxonomy(paths, counts)


def jax_generate_function(model, sampler, decoder_length: int, compiled: bool):
    """`generation_step` with `sampler` under JAX: jitted with the variables as state, or called as is."""
    from yt8m_keras.competitions.taxonomy.decoding import generation_step

    if not compiled:
        def generate(inputs):
            model.sampler = sampler
            return generation_step(model, inputs, decoder_length)
        return generate
    import jax

    @jax.jit
    def stateless(inputs, state):
        trainable, non_trainable = state
        mapping = itertools.chain(zip(model.trainable_variables, trainable),
                                  zip(model.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping):
            model.sampler = sampler  # read while tracing
            return generation_step(model, inputs, decoder_length)

    def generate(inputs):
        state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
        return stateless(inputs, state)
    return generate


def generated_lengths(ids: np.ndarray, end: int) -> np.ndarray:
    """Tokens per row up to and with the first end token (all of them where there is none)."""
    has_end = (ids == end).any(axis=1)
    return np.where(has_end, np.argmax(ids == end, axis=1) + 1, ids.shape[1])


def measure(generate, batches, end: int):
    """(wall seconds, process CPU seconds, tokens generated per row, loop steps per batch) over `batches`."""
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = [np.asarray(generate(batch)) for batch in batches]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    lengths = [generated_lengths(ids, end) for ids in outputs]
    return wall, cpu, np.concatenate(lengths), np.array([length.max() for length in lengths])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configuration", default="tiny", choices=("tiny", "small", "base"))
    parser.add_argument("--encoder-length", type=int, default=48)
    parser.add_argument("--decoder-length", type=int, default=None,
                        help="default 32; with --untrained the longest path + 1")
    parser.add_argument("--untrained", action="store_true", help="time an untrained model (see the docstring)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of 50 steps of 32 lines")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--executions", default="compiled,eager")
    parser.add_argument("--lines", type=int, default=128, help="lines per timed round, compiled")
    parser.add_argument("--eager-lines", type=int, default=8,
                        help="lines per timed round, eager (rounded up to a batch; eager is ~30x slower)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--extra-paths", type=int, default=0, help="invented paths added to the trie")
    parser.add_argument("--sample-lines", type=int, default=2000)
    parser.add_argument("--vocab-size", type=int, default=600)
    parser.add_argument("--workdir", default=None, help="cache of data and model (default: a temporary directory)")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batches.split(",")]
    executions = args.executions.split(",")
    if min(batch_sizes) < 1 or min(args.lines, args.eager_lines, args.repeats, args.epochs) < 1:
        parser.error("--batches, --lines, --eager-lines, --repeats and --epochs must be at least 1")
    if set(executions) - {"compiled", "eager"}:
        parser.error("--executions: compiled and/or eager")
    backend = keras.config.backend()
    if backend != "tensorflow":
        tf.config.set_visible_devices([], "GPU")  # TensorFlow only tokenizes; the GPUs are the backend's

    from tfrecords import product_text as kind
    from yt8m_keras.competitions.taxonomy.decoding import TaxonomyDecoder, make_sampler
    from yt8m_keras.competitions.taxonomy.hierarchy import TAXONOMY, read_taxonomy
    from yt8m_keras.competitions.taxonomy.input import END, read_split

    workdir = args.workdir or tempfile.mkdtemp(prefix="taxonomy_generate_")
    os.makedirs(workdir, exist_ok=True)
    data = prepare_data(workdir, args.sample_lines, args.vocab_size)
    taxonomy = read_taxonomy(os.path.join(data, TAXONOMY))
    if args.extra_paths:
        taxonomy = with_extra_paths(taxonomy, args.extra_paths)
    if args.decoder_length is None:
        args.decoder_length = 32
        if args.untrained:
            import keras_hub

            from yt8m_keras.competitions.taxonomy.decoding import path_token_ids
            from yt8m_keras.models.t5 import read_vocabulary

            tokenizer = keras_hub.models.T5Tokenizer(proto=read_vocabulary(os.path.join(data, "vocabulary.spm")))
            args.decoder_length = max(len(p) for p in path_token_ids(tokenizer, taxonomy)) + 1
    model = prepare_model(workdir, data, args)
    rows = [r for split in ("val", "test") for r in read_split(data, split) if r[kind.DESCRIPTION]]
    log(f"{len(rows)} val/test lines, {len(taxonomy.paths)} paths, T5 {args.configuration} "
        f"({'untrained' if args.untrained else f'trained {args.epochs} x {STEPS_PER_EPOCH} steps'}), "
        f"lengths {args.encoder_length}/{args.decoder_length}, backend {backend}")

    results = {}  # (batch, execution) -> {mode: (products/s, products per CPU second, mean tokens, mean steps)}
    for batch_size, execution in itertools.product(batch_sizes, executions):
        compiled = execution == "compiled"
        decoder = TaxonomyDecoder(model, taxonomy, args.encoder_length, args.decoder_length, batch_size, compiled)
        edges = len(decoder.trie.token)
        lines = -(-(args.lines if compiled else args.eager_lines) // batch_size) * batch_size
        chosen = [rows[i % len(rows)] for i in range(lines + batch_size)]  # + the warm-up batch
        encoded = {k: v.numpy() for k, v in decoder.encode(chosen).items()}
        batches = [{k: v[i:i + batch_size] for k, v in encoded.items()} for i in range(0, len(chosen), batch_size)]
        if backend == "tensorflow":
            batches = [{k: tf.constant(v) for k, v in b.items()} for b in batches]
            functions = {mode: decoder._generate_function(mode == "constrained", 1)
                         for mode in ("unconstrained", "constrained")}
        else:
            batches = [{k: keras.ops.convert_to_tensor(v) for k, v in b.items()} for b in batches]
            functions = {mode: jax_generate_function(model, make_sampler(mode == "constrained", 1, decoder.trie),
                                                     args.decoder_length, compiled)
                         for mode in ("unconstrained", "constrained")}
        for generate in functions.values():
            measure(generate, batches[:1], END)  # trace / first allocations
        rounds = {mode: [] for mode in functions}
        for repeat in range(args.repeats):
            order = ("unconstrained", "constrained") if repeat % 2 == 0 else ("constrained", "unconstrained")
            for mode in order:
                wall, cpu, tokens, steps = measure(functions[mode], batches[1:], END)
                rounds[mode].append((lines / wall, lines / cpu, tokens.mean(), steps.mean()))
        results[batch_size, execution] = {
            mode: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[0][2],
                   runs[0][3]) for mode, runs in rounds.items()}
        u, c = results[batch_size, execution]["unconstrained"], results[batch_size, execution]["constrained"]
        log(f"batch {batch_size:>3} {execution:<8} unconstrained {u[0]:8.1f}/s  constrained {c[0]:8.1f}/s  "
            f"ratio {c[0] / u[0]:.2f}")

    print(f"greedy generation, T5 {args.configuration} "
          f"({'untrained' if args.untrained else f'trained {args.epochs} x {STEPS_PER_EPOCH} steps'}), "
          f"lengths {args.encoder_length}/{args.decoder_length}, backend {backend}; {len(taxonomy.paths)} paths, "
          f"{edges} trie edges, vocabulary {model.tokenizer.vocabulary_size()}; median of {args.repeats} "
          f"alternating rounds of {args.lines} lines ({args.eager_lines} eager; at least one batch)")
    print("products/s (wall clock); ratio: constrained/unconstrained products/s, by wall clock and by process "
          "CPU time; tokens: mean generated per product, end token included; steps: mean loop steps per batch")
    print(f"{'batch':>5} {'execution':<9} {'unconstrained/s':>15} {'constrained/s':>13} {'ratio':>6} {'cpu':>5}  "
          f"{'tokens u/c':>11} {'steps u/c':>11}")
    for (batch_size, execution), r in results.items():
        u, c = r["unconstrained"], r["constrained"]
        print(f"{batch_size:>5} {execution:<9} {u[0]:>15.1f} {c[0]:>13.1f} {c[0] / u[0]:>6.2f} {c[1] / u[1]:>5.2f}  "
              f"{u[2]:>5.1f}/{c[2]:<5.1f} {u[3]:>5.1f}/{c[3]:<5.1f}")
    worst = min(r["constrained"][0] / r["unconstrained"][0] for r in results.values())
    print(f"lowest ratio constrained/unconstrained: {worst:.2f} (goal >= {RATIO_GOAL})")


if __name__ == "__main__":
    main()
