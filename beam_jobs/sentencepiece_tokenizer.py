"""SentencePiece tokenizers for the conversion jobs: sampled in the pipeline, trained in the launcher.

A job that ships a tokenizer with its records does three things with this module:

1. In the pipeline, `SampleSentences` keeps a deterministic sample of the texts: the
   `limit` texts whose records have the smallest seeded hash (`seeded_rank`), the same
   sample whatever the workers, a record's texts together. The job writes them as a
   report (`common.WriteReport`).
2. After the pipeline, the launcher sorts the sample by its keys and `train_tokenizer`
   trains a unigram model on it: single-threaded, the texts in the order given, and no
   file path in the proto, so the same texts give the same bytes. The launcher trains,
   not a worker, so a vocabulary too small for the text is one `error:` line.
3. `write_bytes_atomic` writes it (`vocabulary.spm` by convention).

Every tokenizer here has T5's special ids (`SPECIAL_PIECES`: pad 0 "<pad>", eos 1 "</s>",
unk 2 "<unk>", no bos), which `keras_hub.models.T5Tokenizer` and
`keras_hub.tokenizers.SentencePieceTokenizer(proto=...)` take as they are; `identity`
normalization and no whitespace folding make detokenize(tokenize(text)) == text for text
made of the pieces' characters. `read_tokenizer` and `check_tokenizer` accept an existing
model (a file or a KerasHub preset) instead of training one.

Workers never import `sentencepiece`: only the launcher's functions do, lazily.
"""

import hashlib
import io
from typing import Sequence

import apache_beam as beam
import tensorflow as tf

from tfrecords import UserError
from tfrecords.manifest import join

PRESET_TOKENIZER = "assets/tokenizer/vocabulary.spm"  # where a KerasHub preset keeps it
DEFAULT_SENTENCES = 1_000_000
SPECIAL_PIECES = {0: "<pad>", 1: "</s>", 2: "<unk>"}  # T5's ids, which T5Tokenizer looks up by piece
# SentencePiece's own default: a longer sentence is skipped by the trainer.
DEFAULT_MAX_SENTENCE_LENGTH = 4192


def seeded_rank(seed: int, purpose: str, key) -> int:
    """A 64-bit hash of (purpose, seed, key), the same in every process.

    Python's hash() of a str is salted per process, so it cannot order or place records
    reproducibly across workers; this can. `key` is formatted with str().

    Example:

    >>> seeded_rank(0, "shard", 42) == seeded_rank(0, "shard", 42) != seeded_rank(1, "shard", 42)
    True
    """
    digest = hashlib.sha256(f"{purpose}:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _keyed_texts(element, seed: int):
    record, texts = element
    rank = seeded_rank(seed, "tokenizer", record)
    for i, text in enumerate(texts):
        yield (rank, record, i), text


class SampleSentences(beam.PTransform):
    """(record key, texts) -> the tokenizer's training texts: dicts {"key": [rank, record key, i], "text": str}.

    The `limit` texts with the smallest (seeded hash of the record key, record key, place
    among its texts) keys: the same sample whatever the workers, and a record's texts
    together. The launcher sorts them by "key" before training.

    Args:
        limit: how many texts at most.
        seed: of the hash.

    Input elements are (record key, a sequence of str): the key unique per record, of one
    sortable, JSON-able type (an int or a str), and formatted the same by str().

    Example:

    >>> sentences = (products | beam.Map(lambda p: (p.id, (p.title, p.description)))
    ...              | SampleSentences(limit=1_000_000, seed=0))
    """

    def __init__(self, limit: int = DEFAULT_SENTENCES, seed: int = 0):
        super().__init__()
        self._limit, self._seed = limit, seed

    def expand(self, records):
        return (records
                | "Texts" >> beam.FlatMap(_keyed_texts, self._seed)
                | "Smallest" >> beam.combiners.Top.Smallest(self._limit)
                | "Each" >> beam.FlatMap(lambda smallest: ({"key": list(key), "text": text} for key, text in smallest)))


def check_tokenizer(proto: bytes, where: str) -> int:
    """The number of pieces of a SentencePiece model; UserError unless it has T5's special pieces."""
    import sentencepiece  # the launcher's business: workers never load a tokenizer

    try:
        processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    except RuntimeError:
        raise UserError(f"{where} is not a SentencePiece model") from None
    size = processor.get_piece_size()
    pieces = {i: processor.id_to_piece(i) if i < size else None for i in SPECIAL_PIECES}
    if (processor.pad_id(), processor.eos_id()) != (0, 1) or pieces[0] != "<pad>" or pieces[1] != "</s>":
        raise UserError(f"{where}: the tokenizer must have pad id 0 \"<pad>\" and eos id 1 \"</s>\" (T5's), got "
                        f"pad id {processor.pad_id()}, eos id {processor.eos_id()}, pieces 0 and 1 "
                        f"{pieces[0]!r}, {pieces[1]!r}")
    return size


def read_tokenizer(path: str) -> bytes:
    """The proto of an existing tokenizer: a SentencePiece model file or a KerasHub preset directory."""
    if tf.io.gfile.isdir(path):
        path = join(path, PRESET_TOKENIZER)
        if not tf.io.gfile.exists(path):
            raise UserError(f"--tokenizer: no {PRESET_TOKENIZER} in the directory (a KerasHub preset has one)")
    elif not tf.io.gfile.exists(path):
        raise UserError(f"input not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
        proto = f.read()
    check_tokenizer(proto, path)
    return proto


def train_tokenizer(texts: Sequence[str], vocab_size: int, character_coverage: float = 1.0,
                    max_sentence_length: int = DEFAULT_MAX_SENTENCE_LENGTH, hint: str = "") -> bytes:
    """A unigram SentencePiece model of at most `vocab_size` pieces, with T5's special ids.

    Deterministic: one thread, the texts in the order given, and the proto never holds a
    file path (the trainer reads an iterator and writes to memory).

    Args:
        texts: the training texts, in a deterministic order.
        vocab_size: the most pieces (a soft limit: a small dataset gets the pieces it has).
        character_coverage: the share of characters that get their own piece (1.0: all;
            below, the rarest become "<unk>", so rare symbols cannot crowd out the pieces).
        max_sentence_length: bytes; the trainer skips longer texts.
        hint: appended to the error when there are no texts (what the user can do).

    Example:

    >>> proto = train_tokenizer(["indomie goreng | r1 | 3.50", "Food > Noodles > Instant | Indomie"], 64)
    """
    import sentencepiece

    if not texts:
        raise UserError("no texts to train the tokenizer on (see rejected.jsonl)" + (f"; {hint}" if hint else ""))
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type="unigram",
            # A soft limit: a small dataset gets the pieces it has rather than an error.
            hard_vocab_limit=False, character_coverage=character_coverage, split_digits=True,
            max_sentence_length=max_sentence_length,
            # identity + no whitespace folding: detokenize(tokenize(text)) == text.
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece=SPECIAL_PIECES[0], eos_piece=SPECIAL_PIECES[1],
            unk_piece=SPECIAL_PIECES[2], num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
            minloglevel=2)
    except RuntimeError as e:  # "... [condition] Vocabulary size is smaller than required_chars. ..."
        raise UserError(f"cannot train a tokenizer of --vocab-size {vocab_size} on {len(texts)} texts: "
                        f"{str(e).rsplit('] ', 1)[-1].strip()}") from None
    return model.getvalue()


def write_bytes_atomic(path: str, data: bytes) -> None:
    """`tfrecords.manifest.write_text_atomic` for bytes: `path.tmp`, then a rename."""
    with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
        f.write(data)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
