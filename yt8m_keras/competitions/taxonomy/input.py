"""tf.data streams of `product_text` records as T5 token ids; the encoding serving shares.

Model inputs: `description | retailer | price` tokenized, truncated to leave room for the
end token and padded to `encoder_length`. Targets: `supergroup > group > module | brand`
plus the end token; the decoder reads them shifted right behind T5's start token (pad, 0).
"""

from typing import Dict, List, Tuple

import tensorflow as tf

from tfrecords import product_text as kind
from tfrecords.manifest import compression_type, read_manifest, shard_paths
from yt8m_keras.data.shards import AUTOTUNE, deterministic, records

PAD, END = 0, 1  # T5's special ids (the start token is the pad)


def token_ids(tokenizer, text: tf.Tensor, length: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """(ids, padding mask), both int32 [batch, length]: text tokens, truncated, then the end token."""
    tokens = tokenizer(text)
    if isinstance(tokens, list):  # KerasHub's eager output for ragged results
        tokens = tf.ragged.constant(tokens, dtype=tf.int32, ragged_rank=1) if tokens else \
            tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int32), tf.zeros([0], tf.int64))
    tokens = tf.cast(tokens[:, :length - 1], tf.int32)
    end = tf.fill([tokens.nrows(), 1], tf.constant(END, tf.int32))
    tokens = tf.concat([tokens, tf.RaggedTensor.from_tensor(end)], axis=1)
    ids = tokens.to_tensor(default_value=PAD, shape=[None, length])
    mask = tf.sequence_mask(tokens.row_lengths(), length, dtype=tf.int32)
    return ids, mask


def encoder_inputs(tokenizer, description, retailer, price, length: int) -> Dict[str, tf.Tensor]:
    ids, mask = token_ids(tokenizer, kind.input_text_tensor(description, retailer, price), length)
    return {"encoder_token_ids": ids, "encoder_padding_mask": mask}


def training_example(tokenizer, features: Dict[str, tf.Tensor], encoder_length: int, decoder_length: int):
    """(inputs, target ids, sample weights) of a batch of parsed records (teacher forcing)."""
    inputs = encoder_inputs(tokenizer, features[kind.DESCRIPTION], features[kind.RETAILER], features[kind.PRICE],
                            encoder_length)
    target = kind.target_text_tensor(*(features[k] for k in kind.LABELS))
    ids, mask = token_ids(tokenizer, target, decoder_length)
    start = tf.fill([tf.shape(ids)[0], 1], tf.constant(PAD, tf.int32))
    inputs["decoder_token_ids"] = tf.concat([start, ids[:, :-1]], axis=1)
    inputs["decoder_padding_mask"] = mask  # the start token and the target but its last token
    return inputs, ids, mask


def split_files(data_dir: str, split: str):
    """(shard paths, compression) of a split, from the manifest."""
    manifest = read_manifest(data_dir, kind=kind.KIND)
    return shard_paths(data_dir, manifest, split), compression_type(manifest)


def split_records(data_dir: str, split: str, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    return records(*split_files(data_dir, split), shuffle=shuffle, seed=seed)


def _examples(ds, tokenizer, batch_size, encoder_length, decoder_length, drop_remainder):
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda serialized: training_example(tokenizer, kind.parse(serialized), encoder_length,
                                                    decoder_length),
                num_parallel_calls=AUTOTUNE, deterministic=True)
    return deterministic(ds.prefetch(AUTOTUNE))


def train_dataset(data_dir: str, split: str, tokenizer, batch_size: int, encoder_length: int, decoder_length: int,
                  seed: int = 0, shuffle_buffer: int = 8192, skip_batches: int = 0) -> tf.data.Dataset:
    """Endless shuffled batches; deterministic for `seed`, `skip_batches` resumes without tokenizing."""
    ds = split_records(data_dir, split, shuffle=True, seed=seed)
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.skip(skip_batches * batch_size)
    return _examples(ds, tokenizer, batch_size, encoder_length, decoder_length, drop_remainder=True)


def eval_dataset(data_dir: str, split: str, tokenizer, batch_size: int, encoder_length: int,
                 decoder_length: int) -> tf.data.Dataset:
    """One pass over `split`, in shard order."""
    return _examples(split_records(data_dir, split), tokenizer, batch_size, encoder_length, decoder_length,
                     drop_remainder=False)


def read_split(data_dir: str, split: str) -> List[Dict]:
    """Every record of `split` as Python values (for evaluation and prediction)."""
    rows = []
    for batch in split_records(data_dir, split).batch(1024):
        rows.extend(parse_rows(batch))
    return rows


def parse_rows(serialized) -> List[Dict]:
    """A batch of serialized records -> one dict of Python values (str, int, float) per record."""
    columns = {k: v.numpy() for k, v in kind.parse(tf.constant(serialized, tf.string)).items()}
    return [{k: (v[i].decode("utf-8") if isinstance(v[i], bytes) else v[i].item()) for k, v in columns.items()}
            for i in range(len(columns[kind.ID]))]
