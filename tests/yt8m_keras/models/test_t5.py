"""T5 building: configurations, the token-embedding re-initialisation, the tokenizer's contract."""

import io

import numpy as np
import pytest
import sentencepiece as spm

from tfrecords import UserError
from yt8m_keras.models.t5 import CONFIGURATIONS, build_t5, read_vocabulary

TEXTS = ["Food > Dairy > Yogurt | Danone", "Beverages > Soft Drinks > Cola | Zestia",
         "DANONE YOG STRAWB 4X125G | retailer_1 | 2.10", "zestia cola 1.5L | retailer_3 | 1.99"] * 10


def train_vocabulary(pad_id=0, eos_id=1, vocab_size=80, texts=TEXTS) -> bytes:
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type="unigram", bos_id=-1,
        pad_id=pad_id, eos_id=eos_id, unk_id=2, hard_vocab_limit=False, character_coverage=1.0,
        normalization_rule_name="identity", num_threads=1, minloglevel=2)
    return buf.getvalue()


@pytest.fixture(scope="module")
def vocabulary():
    return train_vocabulary()


def test_token_embedding_is_drawn_from_a_standard_normal(vocabulary):
    # KerasHub 0.32 draws it with mean 1.0, which stalls training from scratch.
    model = build_t5(vocabulary, "tiny", seed=0)
    embeddings = np.asarray(model.backbone.token_embedding.embeddings)
    assert abs(embeddings.mean()) < 0.05
    assert 0.9 < embeddings.std() < 1.1
    # Seeded: the same draw twice.
    again = np.asarray(build_t5(vocabulary, "tiny", seed=0).backbone.token_embedding.embeddings)
    np.testing.assert_array_equal(embeddings, again)


def test_model_carries_tokenizer_and_lengths(vocabulary):
    model = build_t5(vocabulary, "tiny", encoder_length=40, decoder_length=24)
    assert model.tokenizer.vocabulary_size() == model.backbone.vocabulary_size
    assert (model.encoder_length, model.decoder_length) == (40, 24)
    batch = {"encoder_token_ids": np.ones((2, 40), "int32"), "encoder_padding_mask": np.ones((2, 40), "int32"),
             "decoder_token_ids": np.zeros((2, 24), "int32"), "decoder_padding_mask": np.ones((2, 24), "int32")}
    assert model(batch).shape == (2, 24, model.backbone.vocabulary_size)


def test_configurations_have_flan_t5_dimensions():
    assert CONFIGURATIONS["small"]["hidden_dim"] == 512 and CONFIGURATIONS["small"]["num_layers"] == 8
    assert CONFIGURATIONS["base"]["hidden_dim"] == 768 and CONFIGURATIONS["base"]["num_layers"] == 12
    assert not CONFIGURATIONS["small"]["tie_embedding_weights"]


def test_tokenizer_without_t5_special_ids_is_a_user_error():
    with pytest.raises(UserError, match="<pad> id 0"):
        build_t5(train_vocabulary(pad_id=3, eos_id=1), "tiny")


def test_unknown_configuration_and_missing_tokenizer(vocabulary, tmp_path):
    with pytest.raises(UserError, match="unknown T5 configuration"):
        build_t5(vocabulary, "huge")
    with pytest.raises(UserError, match="tokenizer not found"):
        read_vocabulary(str(tmp_path / "none.spm"))


def test_preset_directory(vocabulary, tmp_path):
    """A KerasHub preset saved locally loads with its weights (no re-initialisation); another vocabulary is refused."""
    model = build_t5(vocabulary, "tiny", seed=3)
    preset = tmp_path / "preset"
    model.backbone.save_to_preset(str(preset))
    model.tokenizer.save_to_preset(str(preset))
    assert read_vocabulary(str(preset)) == vocabulary
    loaded = build_t5(vocabulary, "small", preset=str(preset))  # the preset's configuration wins
    np.testing.assert_array_equal(np.asarray(loaded.backbone.token_embedding.embeddings),
                                  np.asarray(model.backbone.token_embedding.embeddings))
    with pytest.raises(UserError, match="another vocabulary"):
        build_t5(train_vocabulary(texts=TEXTS[1:] * 2), "tiny", preset=str(preset))
