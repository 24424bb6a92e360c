"""Word benchmarks and offline corpora (pyro_flowkit.text.wordsim, .corpora): our scores agree
with gensim's own evaluation, and sources that need gensim are skipped cleanly without it."""

import pytest
import torch

from pyro_flowkit.text import corpora, wordsim
from pyro_flowkit.text.corpora import Corpus, _docstrings, _paragraphs, load_corpus, sts_corpus
from pyro_flowkit.text.wordsim import (
    Analogies,
    WordPairs,
    analogy_accuracy,
    load_analogies,
    load_word_pairs,
    word_similarity,
)


def test_word_similarity_counts_coverage_and_ranks_cosines():
    vectors = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.1]])
    pairs = WordPairs(
        [("a", "b"), ("a", "c"), ("a", "d"), ("b", "zzz")], torch.tensor([3.0, 2.0, 1.0, 9.0])
    )
    got = word_similarity(vectors, ["a", "b", "c", "d"], pairs)
    assert got == {"spearman": 1.0, "covered": 3, "total": 4}
    reversed_scores = WordPairs(pairs.pairs, -pairs.scores)
    assert word_similarity(vectors, ["a", "b", "c", "d"], reversed_scores)["spearman"] == -1.0
    with pytest.raises(ValueError, match="expected 2 or more pairs in the vocabulary"):
        word_similarity(vectors, ["a", "x", "y", "z"], pairs)
    with pytest.raises(ValueError, match="one row per word"):
        word_similarity(vectors[:3], ["a", "b", "c", "d"], pairs)


def test_analogy_leaves_out_the_question_words_and_respects_restrict():
    words = ["a", "b", "c", "d", "e"]
    vectors = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [0, 0.5, 0.1]])
    q = Analogies([("a", "b", "c", "d"), ("a", "b", "e", "d")], ["family", "gram1-x"])
    full = analogy_accuracy(vectors, words, q)
    assert (full["covered"], full["correct"], full["semantic"]) == (2, 2, 1.0)
    restricted = analogy_accuracy(vectors, words, q, restrict=4)  # "e" is the 5th word
    assert restricted["covered"] == 1 and restricted["syntactic"] is None  # none covered


def test_missing_gensim_gives_a_clear_error_and_corpora_skip_its_sources(monkeypatch, tmp_path):
    monkeypatch.setattr(corpora, "gensim_data_dir", lambda: None)
    monkeypatch.setattr(wordsim, "gensim_data_dir", lambda: None)
    monkeypatch.setattr(wordsim, "PACKAGE_DATA", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"pip install 'pyro-flowkit\[bench\]'"):
        load_word_pairs("simlex999")
    corpus = load_corpus(("sts", "lee", "wikipedia"))
    assert isinstance(corpus, Corpus) and set(corpus.skipped) == {"lee", "wikipedia"}
    assert corpus.sizes == {"sts": len(sts_corpus())} and len(corpus.documents) > 10000
    with pytest.raises(FileNotFoundError, match="lee_background.cor"):
        load_corpus(("lee",), strict=True)
    with pytest.raises(ValueError, match="sources: expected one of"):
        load_corpus(("reddit",))


def test_docstrings_are_read_without_importing_and_doctest_lines_dropped(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        '"""Module text.\n\nSecond paragraph\ncontinues."""\nimport sys\nsys.exit(1)\n\n'
        'def f():\n    """Does f.\n\n    >>> f()\n    1\n    """\n'
    )
    assert _docstrings(source) == ["Module text.", "Second paragraph continues.", "Does f.", "1"]
    assert _paragraphs("a\n... b\n\nc") == ["a", "c"]


def test_our_scores_agree_with_gensims_evaluation(tmp_path):
    """The same random KeyedVectors scored by gensim's evaluate_word_pairs /
    evaluate_word_analogies and by ours: the same Spearman, coverage and accuracy."""
    gensim = pytest.importorskip("gensim")
    from gensim.models import KeyedVectors
    from gensim.test.utils import datapath

    analogies = load_analogies()
    questions = analogies.questions[:400] + analogies.questions[-400:]
    sections = analogies.sections[:400] + analogies.sections[-400:]
    pairs = load_word_pairs("wordsim353")
    words = sorted({w for q in questions for w in q} | {w for p in pairs.pairs[:200] for w in p})
    words = words[: int(0.9 * len(words))]  # some questions and pairs not covered
    vectors = torch.randn(len(words), 30, generator=torch.Generator().manual_seed(0))
    kv = KeyedVectors(30)
    kv.add_vectors(words, vectors.numpy())
    ours = word_similarity(vectors, words, pairs)
    _, (rho, _), oov = kv.evaluate_word_pairs(datapath("wordsim353.tsv"))
    assert ours["spearman"] == pytest.approx(rho, abs=1e-12)
    assert ours["total"] - ours["covered"] == round(oov / 100 * ours["total"])
    lines = []
    for section in dict.fromkeys(sections):
        lines.append(f": {section}")
        lines += [" ".join(q) for q, s in zip(questions, sections, strict=True) if s == section]
    path = tmp_path / "questions.txt"
    path.write_text("\n".join(lines) + "\n")
    theirs, _ = kv.evaluate_word_analogies(str(path), restrict_vocab=len(words))
    mine = analogy_accuracy(vectors, words, load_analogies(path))
    assert mine["accuracy"] == pytest.approx(theirs, abs=1e-12) and mine["covered"] > 100
    assert gensim.__version__


def test_gensim_data_files_load():
    pytest.importorskip("gensim")
    assert len(load_word_pairs("wordsim353")) == 353 and len(load_word_pairs("simlex999")) == 999
    analogies = load_analogies()
    assert len(analogies) == 19544 and analogies.questions[0] == (
        "athens",
        "greece",
        "baghdad",
        "iraq",
    )
    assert sum(s.startswith("gram") for s in set(analogies.sections)) == 9
    assert len(corpora.lee_background()) == 300


def test_files_shipped_in_the_package_come_before_gensims(monkeypatch, tmp_path):
    monkeypatch.setattr(wordsim, "gensim_data_dir", lambda: None)
    monkeypatch.setattr(wordsim, "PACKAGE_DATA", tmp_path)
    (tmp_path / "simlex999.txt").write_text("# comment\nOld\tNew\t1.5\nsmart\tclever\t9\n")
    pairs = load_word_pairs("simlex999")
    assert pairs.pairs == [("old", "new"), ("smart", "clever")]
    assert pairs.scores.tolist() == [1.5, 9.0]
    assert wordsim.benchmark_folders() == [tmp_path]
    (tmp_path / "questions-words.txt").write_text(": family\nA B C D\n: gram1-x\na b e d\n")
    assert load_analogies().sections == ["family", "gram1-x"]
    with pytest.raises(FileNotFoundError, match="wordsim353.tsv is neither in"):
        load_word_pairs("wordsim353")


def test_python_docs_reads_the_standard_library_but_not_its_tests(monkeypatch, tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "b.py").write_text('"""Bee module."""')
    (tmp_path / "pkg" / "a.py").write_text('def f():\n    """Eff.\n\n    More."""')
    (tmp_path / "test" / "t.py").write_text('"""Test module."""')
    (tmp_path / "broken.py").write_text('"""unterminated')
    monkeypatch.setattr(corpora.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    paragraphs = corpora.python_docs()
    assert paragraphs[:3] == ["Bee module.", "Eff.", "More."]  # sorted by path
    assert "Test module." not in paragraphs
    from pydoc_data.topics import topics

    assert len(paragraphs) > 3 + len(topics)  # every topic has one paragraph or more


@pytest.mark.slow
def test_the_offline_sources_from_gensim_load():
    pytest.importorskip("gensim")
    corpus = load_corpus(("sts", "lee", "wikipedia"), strict=True)
    assert corpus.sizes["lee"] == 300 and corpus.sizes["wikipedia"] > 10000
    assert not any("[[" in d or "{{" in d for d in corpus.documents)  # wiki markup stripped
