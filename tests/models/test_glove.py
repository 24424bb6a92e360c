"""SimplerGloVe: exact recovery of planted PMI, the rank-k PSD optimum, GloVe's loss, lookups,
saving, and errors."""

import pytest
import torch

from pyro_flowkit.models.glove import SimplerGloVe, context_metric
from pyro_flowkit.text.cooccurrence import cooccurrence, pmi
from pyro_flowkit.text.words import Vocabulary, tokenize

OFF = ~torch.eye(20, dtype=torch.bool)


def planted(num_words=20, dim=3, total=1e6, seed=0):
    """Counts whose PMI is exactly <v*_i, v*_j> off the diagonal: X_ij = N p_i p_j
    exp(<v*_i, v*_j>) for i != j, and the diagonal (never fitted) fills row i up to N p_i, so
    that the counts' row sums are N p and their total N."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.distributions.Dirichlet(torch.full((num_words,), 20.0)).sample().double()
    v = 0.3 * torch.randn(num_words, dim, generator=gen, dtype=torch.float64)
    v = v - (p[:, None] * v).sum(0)  # p-centred: the diagonal stays positive
    x = total * p[:, None] * p[None, :] * (v @ v.T).exp()
    x.fill_diagonal_(0)
    x += torch.diag(total * p - x.sum(1))
    assert (x.diagonal() > 0).all()
    return x, p, v @ v.T


def test_planted_counts_have_the_planted_pmi():
    x, p, inner = planted()
    assert torch.allclose(pmi(x).to_dense()[OFF], inner[OFF], atol=1e-12)
    assert torch.allclose(pmi(x, p).to_dense()[OFF], inner[OFF], atol=1e-12)


@pytest.mark.parametrize("weight", ["truncated", "none"])
@pytest.mark.parametrize("given_marginals", [False, True])
def test_fit_recovers_planted_inner_products(weight, given_marginals):
    """With dim = the planted dimension the minimum (zero) is reached: AdaGrad from the
    reference code's start recovers every off-diagonal <v*_i, v*_j> to 1e-6."""
    x, p, inner = planted()
    glove = SimplerGloVe(3, weight=weight).double()
    history = glove.fit(x, p if given_marginals else None, epochs=600, batch_size=400,
                        progress=False, seed=0)  # fmt: skip
    fitted = glove.vectors @ glove.vectors.T
    assert (fitted - inner)[OFF].abs().max() < 1e-6
    assert history[-1] < 1e-9 < history[0]
    assert glove.pmi(3, 7) == pytest.approx(inner[3, 7].item(), abs=1e-6)


def best_psd(target, k):
    """The best rank-k positive-semidefinite approximation in Frobenius norm: the top k
    eigenvalues clamped at 0 (torch.linalg.eigh)."""
    values, vectors = torch.linalg.eigh(target)
    return (vectors[:, -k:] * values[-k:].clamp(min=0)) @ vectors[:, -k:].T


def test_with_unit_weights_the_optimum_is_the_best_rank_k_psd_approximation():
    """f = 1 on a dense symmetric target, diagonal included: V V^T is the target's best
    rank-3 PSD approximation (top eigenvalues well separated here: 7.7, 6.9, 5.8, 3.7)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(15, 15, generator=gen, dtype=torch.float64)
    counts = (a + a.T + 3).exp()  # dense, positive, symmetric
    target = pmi(counts).to_dense()
    glove = SimplerGloVe(3, weight="none").double()
    glove.fit(counts, epochs=500, batch_size=225, diagonal=True, progress=False, seed=0)
    fitted = glove.vectors @ glove.vectors.T
    assert (fitted - best_psd(target, 3)).abs().max() < 1e-8


def test_the_optimum_is_psd_not_the_best_rank_k():
    """Two positive eigenvalues and dim 4: the extra directions go to 0 (PSD projection), where
    the unconstrained best rank-4 approximation would keep two negative eigenvalues."""
    gen = torch.Generator().manual_seed(0)
    b = torch.randn(12, 2, generator=gen, dtype=torch.float64)
    noise = 0.1 * torch.randn(12, 12, generator=gen, dtype=torch.float64)
    counts = (b @ b.T - torch.eye(12, dtype=torch.float64) + (noise + noise.T) / 2).exp()
    target = pmi(counts).to_dense()
    values, vectors = torch.linalg.eigh(target)
    assert (values > 0).sum() == 2
    glove = SimplerGloVe(4, weight="none").double()
    glove.fit(counts, epochs=2000, batch_size=144, diagonal=True, progress=False, seed=0)
    fitted = glove.vectors @ glove.vectors.T
    by_size = values.abs().argsort()[-4:]
    rank4 = (vectors[:, by_size] * values[by_size]) @ vectors[:, by_size].T
    assert (fitted - best_psd(target, 4)).abs().max() < 0.01
    assert (fitted - rank4).abs().max() > 0.1


def test_glove_loss_recovers_planted_log_counts_and_pmi():
    """The original loss fits <w_i, c_j> + b_i + b~_j to log X_ij; on the planted counts
    that is exactly representable, and pmi() turns it back into the planted PMI. (A total of
    N = 400 puts log X near 0: AdaGrad is slow to move biases far from their start.)"""
    x, _, inner = planted(total=400.0)
    glove = SimplerGloVe(3, variant=2, loss="glove", weight="none").double()
    glove.fit(x, epochs=800, batch_size=400, progress=False, seed=0, lr=0.1)
    i, j = OFF.nonzero().T
    assert (glove.score(i, j) - x[i, j].log()).abs().max() < 1e-6
    assert glove.pmi(2, 9) == pytest.approx(inner[2, 9].item(), abs=1e-6)


def test_a_seed_fixes_the_start_and_a_second_fit_goes_on():
    x, _, _ = planted()
    fits = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # the tables are drawn at construction (num_words given)
        glove = SimplerGloVe(3, num_words=20).double()
        glove.fit(x, epochs=2, batch_size=64, progress=False, seed=5)
        fits.append(glove.vectors.clone())
    assert torch.equal(fits[0], fits[1])
    glove.fit(x, epochs=1, batch_size=64, progress=False, seed=5)  # from the current vectors
    once_more = glove.vectors
    assert not torch.equal(once_more, fits[1])
    restarted = SimplerGloVe(3, num_words=20).double()
    restarted.fit(x, epochs=3, batch_size=64, progress=False, seed=5)
    assert not torch.equal(restarted.vectors, once_more)  # a new optimiser, not 3 epochs at once


def test_sparse_and_dense_gradients_give_the_same_fit():
    x, _, _ = planted()
    fits = []
    for sparse in (True, False):
        glove = SimplerGloVe(3, variant=1, sparse=sparse).double()
        glove.fit(x, epochs=5, batch_size=64, progress=False, seed=3)
        fits.append(glove.vectors)
    assert torch.allclose(fits[0], fits[1], atol=1e-12)


@pytest.mark.parametrize(("variant", "width"), [(0, 3), (1, 6), (2, 3)])
def test_variants_return_shared_concatenated_or_summed_vectors(variant, width):
    x, _, _ = planted()
    glove = SimplerGloVe(3, variant=variant).double()
    glove.fit(x, epochs=1, batch_size=100, progress=False, seed=0)
    assert glove.vectors.shape == (20, width)
    if variant == 1:
        assert torch.equal(glove.vectors[:, 3:], glove.context.weight.detach())
    if variant == 2:
        want = glove.word.weight.detach() + glove.context.weight.detach()
        assert torch.equal(glove.vectors, want)


def test_context_metric_is_the_reference_codes_cholesky_similarity():
    """The reference code maps rows by the Cholesky factor of the centred Gram; any factor
    gives the same cosines, and the metric's inner products are v_i^T G v_j."""
    v = torch.randn(40, 5, dtype=torch.float64)
    centred = v - v.mean(0)
    gram = centred.T @ centred
    cholesky = v @ torch.linalg.cholesky(gram)
    mapped = context_metric(v)
    assert torch.allclose(mapped @ mapped.T, cholesky @ cholesky.T, atol=1e-10)
    assert torch.allclose(mapped @ mapped.T, v @ gram @ v.T, atol=1e-10)
    top = context_metric(v, context_words=10)
    centred10 = v[:10] - v[:10].mean(0)
    assert torch.allclose(top @ top.T, v @ centred10.T @ centred10 @ v.T, atol=1e-10)


def small_model():
    words = ["king", "queen", "man", "woman", "apple"]
    glove = SimplerGloVe(3, vocabulary=words).double()
    with torch.no_grad():
        glove.word.weight.copy_(
            torch.tensor([[1.0, 0, 1], [0, 1, 1], [1, 0, 0], [0, 1, 0], [1, 1, -2]])
        )
    return glove


def test_lookups_by_word_most_similar_and_analogy():
    glove = small_model()
    nearest = glove.most_similar("king", topn=4, metric="cosine")
    assert [w for w, _ in nearest][0] == "man" and "king" not in [w for w, _ in nearest]
    assert [s for _, s in nearest] == sorted([s for _, s in nearest], reverse=True)
    assert glove.analogy("man", "king", "woman", topn=1)[0][0] == "queen"
    assert glove.pmi("king", "queen") == pytest.approx(1.0)
    for metric in ("context", "whitened"):
        assert len(glove.most_similar("apple", topn=10, metric=metric)) == 4
    with pytest.raises(KeyError, match="'pear' is not in the vocabulary"):
        glove.most_similar("pear")
    with pytest.raises(ValueError, match="metric: expected one of"):
        glove.most_similar("king", metric="euclid")


def test_sentence_vectors_average_known_words():
    glove = small_model()
    got = glove.sentence_vectors(["King and queen!", "nothing known", ["apple"]])
    want = (glove.vectors[0] + glove.vectors[1]) / 2
    assert torch.allclose(got[0], want) and torch.equal(got[1], torch.zeros(3, dtype=got.dtype))
    assert torch.equal(got[2], glove.vectors[4])


def test_save_and_load_round_trip(tmp_path):
    docs = [tokenize("the cat sat on the mat and the dog sat on the log")] * 10
    vocab = Vocabulary(min_count=1).fit(docs)
    counts = cooccurrence(vocab.encode_documents(docs), window=2)
    glove = SimplerGloVe(4, variant=2, loss="glove", vocabulary=vocab)
    glove.fit(counts, epochs=3, batch_size=16, progress=False, seed=0)
    glove.save(tmp_path / "glove.pt")
    loaded = SimplerGloVe.load(tmp_path / "glove.pt")
    assert torch.equal(loaded.vectors, glove.vectors) and loaded.words == glove.words
    assert loaded.vocabulary.counts.equal(vocab.counts)
    assert loaded.pmi("cat", "sat") == glove.pmi("cat", "sat")
    assert loaded.most_similar("cat", 3) == glove.most_similar("cat", 3)
    assert loaded.config() == glove.config()
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="expected a file written by SimplerGloVe.save"):
        SimplerGloVe.load(tmp_path / "other.pt")


def test_resuming_from_a_checkpoint_continues_exactly(tmp_path):
    x, _, _ = planted()
    whole = SimplerGloVe(3).double()
    whole.fit(x, epochs=4, batch_size=64, progress=False, seed=1)
    first = SimplerGloVe(3).double()
    first.fit(x, epochs=2, batch_size=64, progress=False, seed=1, checkpoint=tmp_path / "c.pt")
    resumed = SimplerGloVe(3).double()
    resumed.fit(x, epochs=4, batch_size=64, progress=False, seed=1, resume=tmp_path / "c.pt")
    assert torch.equal(resumed.vectors, whole.vectors)


def test_divergence_raises_and_device_and_dtype_follow_the_module(device):
    x, _, _ = planted()
    glove = SimplerGloVe(3).to(device)
    glove.fit(x, epochs=1, batch_size=50, progress=False, seed=0)
    assert glove.vectors.dtype == torch.float32 and glove.vectors.device.type == device.type
    with pytest.raises(FloatingPointError, match="the fit diverged; lower the learning rate"):
        SimplerGloVe(3).fit(x, epochs=2, batch_size=50, lr=1e30, progress=False)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: SimplerGloVe(0), ValueError, "dim: expected a positive integer, got 0"),
        (lambda: SimplerGloVe(3, variant=3), ValueError, "variant: expected one of"),
        (lambda: SimplerGloVe(3, loss="cbow"), ValueError, "loss: expected one of"),
        (lambda: SimplerGloVe(3, x_max=0), ValueError, "x_max: expected a positive"),
        (lambda: SimplerGloVe(3).vectors, RuntimeError, "not fitted yet"),
        (
            lambda: SimplerGloVe(3, num_words=4).fit(torch.ones(3, 3), progress=False),
            ValueError,
            r"counts: expected a \(4, 4\) matrix",
        ),
        (
            lambda: SimplerGloVe(3).fit(torch.eye(3), progress=False),
            ValueError,
            "a non-zero entry off the diagonal",
        ),
        (lambda: SimplerGloVe(3, num_words=3).most_similar("a"), ValueError, "no vocabulary"),
        (lambda: SimplerGloVe(3, num_words=3).most_similar(3), ValueError, "an id below 3"),
    ],
)
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()
