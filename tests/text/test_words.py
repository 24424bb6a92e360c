"""Tokens, vocabulary, window co-occurrence counts and their PMI (pyro_flowkit.text)."""

import itertools
import math
from collections import Counter

import pytest
import torch

from pyro_flowkit.text.cooccurrence import cooccurrence, log_marginals, pmi, sparse_counts
from pyro_flowkit.text.words import Vocabulary, tokenize

# ---------------------------------------------------------------- tokenize, Vocabulary


def test_tokenize_keeps_words_numbers_and_inner_apostrophes():
    assert tokenize("It’s 3 o'clock: GloVe_vectors (2014)!") == [
        "it's", "3", "o'clock", "glove", "vectors", "2014",
    ]  # fmt: skip
    assert tokenize("Ünïcode Words", lower=False) == ["Ünïcode", "Words"]
    with pytest.raises(TypeError, match="text: expected a str"):
        tokenize(["a list"])


def test_vocabulary_orders_by_count_then_word_and_applies_min_count_and_max_size():
    docs = [["b", "a", "c", "a", "b", "d"], ["a", "c", "e"]]
    vocab = Vocabulary(min_count=2).fit(docs)
    assert vocab.words == ["a", "b", "c"]  # a: 3, b and c: 2 (alphabetical), d, e: 1
    assert vocab.counts.tolist() == [3, 2, 2]
    assert (vocab.num_tokens, vocab.num_types, len(vocab)) == (9, 5, 3)
    assert Vocabulary(min_count=1, max_size=2).fit(docs).words == ["a", "b"]
    assert "c" in vocab and "d" not in vocab and vocab["c"] == 2 and vocab.get("d") == -1
    with pytest.raises(KeyError, match="'d' is not in the vocabulary"):
        vocab["d"]


def test_vocabulary_streams_and_partial_fit_equals_fit():
    docs = [tokenize(t) for t in ["a rose is a rose", "is it a rose", "it is"]]
    whole = Vocabulary(min_count=1).fit(iter(docs))  # a generator, read once
    parts = Vocabulary(min_count=1).fit(docs[:1]).partial_fit(docs[1:])
    assert whole.words == parts.words and whole.counts.equal(parts.counts)
    rebuilt = Vocabulary.from_words(whole.words, whole.counts.tolist())
    assert rebuilt.words == whole.words and rebuilt["rose"] == whole["rose"]


def test_encode_drops_or_marks_unknown_words_and_decodes():
    vocab = Vocabulary(min_count=1).fit([["x", "y", "y"]])
    assert vocab.encode(["y", "z", "x"]).tolist() == [0, 1]
    marked = vocab.encode(["y", "z", "x"], unknown="mark")
    assert marked.tolist() == [0, -1, 1] and marked.dtype == torch.long
    assert vocab.decode(marked) == ["y", "<unk>", "x"]
    assert [t.tolist() for t in vocab.encode_documents([["x"], ["q"]])] == [[1], []]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Vocabulary(min_count=0), "min_count: expected a positive integer, got 0"),
        (lambda: Vocabulary(max_size=1.5), "max_size: expected a positive integer"),
        (lambda: Vocabulary().fit("not tokens"), "documents: expected an iterable"),
        (lambda: Vocabulary().fit(["abc"]), "documents: expected token sequences"),
        (lambda: Vocabulary().encode(["a"], unknown="skip"), "unknown: expected one of"),
    ],
)
def test_vocabulary_refuses_bad_arguments(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


# ---------------------------------------------------------------- cooccurrence


def brute_force(documents, window, harmonic=False):
    """Every pair of positions of a document at distance <= window, both orders."""
    counts = Counter()
    for doc in documents:
        for s, t in itertools.combinations(range(len(doc)), 2):
            d = t - s
            if d <= window and doc[s] >= 0 and doc[t] >= 0:
                w = 1.0 / d if harmonic else 1.0
                counts[doc[s], doc[t]] += w
                counts[doc[t], doc[s]] += w
    return counts


def as_dict(x):
    x = x.coalesce()
    return {(int(i), int(j)): float(v) for (i, j), v in zip(x.indices().T, x.values(), strict=True)}


@pytest.mark.parametrize("harmonic", [False, True])
@pytest.mark.parametrize("chunk_size", [3, 7, 1 << 20])
def test_cooccurrence_equals_brute_force_for_any_chunking(harmonic, chunk_size, device):
    gen = torch.Generator().manual_seed(1)
    documents = [torch.randint(-1, 6, (n,), generator=gen) for n in (0, 1, 17, 30, 4)]
    x = cooccurrence(
        documents, window=3, num_words=6, weighting="harmonic" if harmonic else "uniform",
        chunk_size=chunk_size, device=device,
    )  # fmt: skip
    assert x.shape == (6, 6) and x.is_coalesced() and x.device.type == device.type
    want = brute_force([d.tolist() for d in documents], 3, harmonic)
    got = as_dict(x.cpu())
    assert got.keys() == {k for k, v in want.items() if v > 0}
    assert all(math.isclose(got[k], want[k], rel_tol=1e-12) for k in got)
    assert torch.equal(x.to_dense(), x.to_dense().T)  # symmetric counts


def test_windows_never_span_documents_and_unknown_ids_hold_their_place():
    assert as_dict(cooccurrence([[0], [1]], window=5, num_words=2)) == {}
    marked = as_dict(cooccurrence([[0, -1, 1]], window=1, num_words=2))
    assert marked == {}  # 0 and 1 are 2 apart: the unknown word keeps its place
    dropped = as_dict(cooccurrence([[0, 1]], window=1))
    assert dropped == {(0, 1): 1.0, (1, 0): 1.0}


def test_cooccurrence_streams_a_generator_once():
    def stream():
        for k in range(50):
            yield torch.tensor([k % 3, (k + 1) % 3])

    x = cooccurrence(stream(), window=2, chunk_size=16)
    assert x.to_dense().sum() == 100  # 50 documents, one pair each, counted both ways


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"documents": [[0, 5]], "num_words": 3}, "expected word ids below 3"),
        ({"documents": [[0, -2]]}, "expected word ids >= -1"),
        ({"documents": [torch.tensor([0.0, 1.0])]}, "expected integer word ids"),
        ({"documents": [torch.zeros(2, 2, dtype=torch.long)]}, "expected 1-D tensors"),
        ({"documents": [[0, 1]], "window": 0}, "window: expected a positive integer"),
        ({"documents": [[0, 1]], "weighting": "distance"}, "weighting: expected one of"),
    ],
)
def test_cooccurrence_refuses_bad_input(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        cooccurrence(**kwargs)


# ---------------------------------------------------------------- PMI


def test_pmi_is_log_joint_over_product_of_marginals():
    x = torch.tensor([[0.0, 3.0, 1.0], [3.0, 2.0, 0.0], [1.0, 0.0, 5.0]], dtype=torch.float64)
    got = pmi(x)
    joint = x / x.sum()
    row = joint.sum(1)
    want = (joint / (row[:, None] * row[None, :])).log()
    assert torch.equal(got.indices(), sparse_counts(x).indices())  # the non-zero pattern
    assert torch.allclose(got.to_dense()[x > 0], want[x > 0], atol=1e-14)
    unigram = torch.tensor([2.0, 5.0, 3.0], dtype=torch.float64)
    p = unigram / unigram.sum()
    with_marginals = (joint / (p[:, None] * p[None, :])).log()
    assert torch.allclose(pmi(x, unigram).to_dense()[x > 0], with_marginals[x > 0], atol=1e-14)
    rows, cols, log_total = log_marginals(x)
    assert torch.allclose(rows.exp(), row) and torch.allclose(cols, rows)
    assert log_total.exp().item() == pytest.approx(15.0)


@pytest.mark.parametrize(
    ("counts", "marginals", "message"),
    [
        (torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), None, "expected non-negative counts"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), None, "1 NaN or infinite"),
        (torch.zeros(2, 2), None, "at least one positive count"),
        (torch.ones(2, 3), None, "square"),
        (torch.ones(2, 2), torch.tensor([1.0, 0.0]), "positive marginals wherever"),
        (torch.ones(2, 2), torch.ones(3), "marginals: expected shape"),
    ],
)
def test_pmi_refuses_what_would_be_nan_or_infinite(counts, marginals, message):
    with pytest.raises(ValueError, match=message):
        pmi(counts, marginals)


def markov_text(transition, num_docs, length, generator):
    """Documents sampled from a stationary Markov chain: (num_docs, length) states."""
    values, vectors = torch.linalg.eig(transition.T)
    stationary = vectors[:, values.real.argmax()].real
    stationary = stationary / stationary.sum()
    cdf = transition.cumsum(1)
    state = torch.multinomial(stationary, num_docs, replacement=True, generator=generator)
    states = [state]
    for _ in range(length - 1):
        u = torch.rand(num_docs, 1, dtype=transition.dtype, generator=generator)
        state = (u > cdf[state]).sum(1).clamp(max=len(transition) - 1)
        states.append(state)
    return torch.stack(states, 1), stationary


def window_pmi(transition, stationary, window, length, harmonic=False):
    """The chain's PMI under symmetric window counts, in closed form: a document of L
    stationary states holds L - d pairs at distance d, pair (a, b) with probability
    pi_a (P^d)_ab, counted in both orders."""
    expected = torch.zeros_like(transition)
    step = torch.eye(len(transition), dtype=transition.dtype)
    for d in range(1, window + 1):
        step = step @ transition
        flow = stationary[:, None] * step
        expected += (length - d) * (flow + flow.T) * (1.0 / d if harmonic else 1.0)
    joint = expected / expected.sum()
    marginal = joint.sum(1)
    return (joint / (marginal[:, None] * marginal[None, :])).log()


def test_markov_chain_window_pmi_matches_the_analytic_value():
    """Text from a known non-reversible chain: the estimated PMI (counts with +1 per pair at
    distance <= 3, both orders) converges to the chain's window PMI; GloVe's 1/d weighting
    has another limit, which this estimate does not match."""
    transition = torch.tensor(
        [[0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.2, 0.1, 0.1, 0.6], [0.6, 0.2, 0.1, 0.1]],
        dtype=torch.float64,
    )  # mostly 0 -> 1 -> 2 -> 3 -> 0: P^d depends strongly on d, and P != P^T
    gen = torch.Generator().manual_seed(0)
    docs, stationary = markov_text(transition, num_docs=40, length=5000, generator=gen)
    window = 3
    counts = cooccurrence(list(docs), window=window, num_words=4)
    estimated = pmi(counts).to_dense()
    analytic = window_pmi(transition, stationary, window, length=5000)
    assert (estimated - analytic).abs().max() < 0.02
    harmonic = window_pmi(transition, stationary, window, 5000, harmonic=True)
    assert (estimated - harmonic).abs().max() > 0.1  # the check can tell the weightings apart
