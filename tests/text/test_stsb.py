"""STS-benchmark ships with the package: the splits, their sizes and the licence."""

from importlib import resources

import pytest
import torch

from pyro_flowkit.text.stsb import STS_SPLITS, load_sts_benchmark, sts_sentences

DATA = resources.files("pyro_flowkit.text") / "data" / "stsbenchmark"


@pytest.mark.parametrize(("split", "size"), [("train", 5749), ("dev", 1500), ("test", 1379)])
def test_splits_have_the_sizes_of_the_readme(split, size):
    pairs = load_sts_benchmark(split)
    assert len(pairs) == len(pairs.sentences_a) == len(pairs.sentences_b) == size
    assert pairs.scores.dtype == torch.float64
    assert pairs.scores.min() >= 0 and pairs.scores.max() <= 5
    assert all(s.strip() for s in pairs.sentences_a + pairs.sentences_b)
    assert {g.split("-")[0] for g in pairs.genres} == {"main"}


def test_lines_with_licence_fields_keep_their_sentences():
    """Line 626 of the test file has two licence fields after the sentences (9 columns)."""
    pairs = load_sts_benchmark("test")
    assert pairs.sources[625] == "answer-answer" and float(pairs.scores[625]) == 3.0
    assert pairs.sentences_b[625].startswith("I remained under the banyan tree")
    assert not any("StackExchange" in s for s in pairs.sentences_a + pairs.sentences_b)


def test_licence_and_readme_are_shipped():
    assert "Commons Attribution - Share Alike 4.0" in (DATA / "LICENSE.txt").read_text("utf-8")
    assert "STS Benchmark" in (DATA / "readme.txt").read_text("utf-8")


def test_target_corpus_is_every_sentence_of_every_split():
    sentences = sts_sentences()
    assert len(sentences) == 2 * (5749 + 1500 + 1379)
    test = load_sts_benchmark("test")
    assert sentences[-len(test) :] == test.sentences_b
    assert sts_sentences(("dev",))[:1500] == load_sts_benchmark("dev").sentences_a


def test_unknown_split_is_named():
    with pytest.raises(ValueError, match=r"split: expected one of \('train', 'dev', 'test'\)"):
        load_sts_benchmark("validation")
    assert STS_SPLITS == ("train", "dev", "test")
