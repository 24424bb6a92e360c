r"""Su's simpler GloVe: word vectors whose inner products fit the pointwise mutual information of
window co-occurrences; the original GloVe loss as an option, on the same counts.

The simpler GloVe drops GloVe's biases and fits :math:`\langle v_i, v_j \rangle` to
:math:`\operatorname{PMI}_{ij}` by weighted least squares over the non-zero, off-diagonal
entries of the co-occurrence matrix :math:`X`,

.. math::

    L(V) = \sum_{i \ne j,\; X_{ij} > 0} \tfrac12 f(X_{ij})
        \left(\langle v_i, \tilde v_j \rangle - \operatorname{PMI}_{ij}\right)^2,
    \qquad f(x) = \min\!\left(1, (x / x_{\max})^\alpha\right),

(GloVe's weight; :math:`(x / x_{\max})^\alpha` untruncated, or :math:`f = 1`, as options) with
AdaGrad (:math:`\eta = 0.1`, accumulators starting at 1). Variant 0 shares one table,
:math:`\tilde v = v`; variants 1 and 2 learn a context table :math:`\tilde v` too and return
:math:`[v, \tilde v]` or :math:`v + \tilde v`. The original GloVe (``loss="glove"``) fits
:math:`\langle v_i, \tilde v_j \rangle + b_i + \tilde b_j` to :math:`\log X_{ij}`.

References:
    | Su Jianlin, a simpler GloVe, parts 1-6 (2017) https://kexue.fm/archives/4667 (to 4681),
    | and the reference code https://github.com/bojone/simpler_glove
    | GloVe: Global Vectors for Word Representation (Pennington, Socher & Manning, 2014)
    | https://nlp.stanford.edu/pubs/glove.pdf
    | Neural Word Embedding as Implicit Matrix Factorization (Levy & Goldberg, 2014)
    | https://papers.nips.cc/paper/5477-neural-word-embedding-as-implicit-matrix-factorization
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from pyro_flowkit.inference.training import History, StepInfo, train
from pyro_flowkit.text.cooccurrence import log_marginals, pmi, sparse_counts
from pyro_flowkit.text.words import Vocabulary, tokenize
from pyro_flowkit.transforms.whitening import Whitening
from pyro_flowkit.validation import (
    check_choice,
    check_count,
    check_finite_tensor,
    check_positive,
)

__all__ = ["METRICS", "SimplerGloVe", "context_metric"]

METRICS = ("context", "whitened", "cosine")
_FORMAT = "pyro_flowkit.models.SimplerGloVe/1"


def context_metric(vectors: Tensor, context_words: int | None = None) -> Tensor:
    r"""The vectors mapped so that their cosine is the reference code's similarity:
    :math:`x \mapsto x\, G^{1/2}` with :math:`G = \sum_{k \le K} (v_k - \bar v)(v_k - \bar v)^\top`
    the centred Gram matrix of the first ``context_words`` vectors :math:`K` (all by default).

    If :math:`\langle v_i, v_k \rangle \approx \operatorname{PMI}_{ik}`, the inner product of
    two mapped vectors is :math:`v_i^\top G\, v_j \approx \sum_k \operatorname{PMI}_{ik}
    \operatorname{PMI}_{jk}` (centred): words are similar when their PMI with every context
    word agrees. The reference code takes the Cholesky factor :math:`G = L L^\top` and
    :math:`x L`; any factor gives the same inner products, and the symmetric square root (by
    ``torch.linalg.eigh``) also exists when :math:`G` is singular.

    References:
        | Su Jianlin, a simpler GloVe, part 5 (2017) https://kexue.fm/archives/4677;
        | ``most_similar`` in https://github.com/bojone/simpler_glove/blob/master/simpler_glove.py

    Example:
        >>> v = torch.randn(50, 4, dtype=torch.float64)
        >>> centred = v - v.mean(0)
        >>> cholesky = v @ torch.linalg.cholesky(centred.T @ centred)
        >>> mapped = context_metric(v)
        >>> torch.allclose(mapped @ mapped.T, cholesky @ cholesky.T)
        True
    """
    check_finite_tensor("vectors", vectors)
    top = (
        vectors if context_words is None else vectors[: check_count("context_words", context_words)]
    )
    centred = top - top.mean(0)
    values, axes = torch.linalg.eigh(centred.T @ centred)
    return vectors @ (axes * values.clamp(min=0).sqrt()) @ axes.T


class SimplerGloVe(nn.Module):
    r"""Word vectors fitted to PMI (Su's simpler GloVe) or, with ``loss="glove"``, to
    :math:`\log X` with biases (GloVe), by weighted least squares over the non-zero entries of
    a co-occurrence matrix:

    .. math::

        L = \sum_{i \ne j,\; X_{ij} > 0} \tfrac12 f(X_{ij}) \left(\langle v_i, \tilde v_j \rangle
            - \operatorname{PMI}_{ij}\right)^2
        \quad\text{or}\quad
        \sum_{i \ne j,\; X_{ij} > 0} \tfrac12 f(X_{ij}) \left(\langle v_i, \tilde v_j \rangle
            + b_i + \tilde b_j - \log X_{ij}\right)^2,

    :math:`f(x) = \min(1, (x/x_{\max})^\alpha)` (``weight="truncated"``),
    :math:`(x/x_{\max})^\alpha` (``"power"``) or :math:`1` (``"none"``).

    :meth:`fit` runs :func:`~pyro_flowkit.inference.train` (the library's loop: minibatches of
    the entries, reshuffled each epoch, a progress bar, checkpoints) with AdaGrad
    (:math:`\eta = 0.1`, GloVe's 0.05 for ``loss="glove"``, accumulators starting at 1) on
    sparse gradients. The raw inner product :math:`\langle v_a, \tilde v_b \rangle` estimates
    :math:`\operatorname{PMI}_{ab}` (:meth:`pmi`); similarity (:meth:`most_similar`) is the
    cosine after :func:`context_metric` (the reference code's), after whitening, or raw.

    Arguments:
        dim: the vectors' size.
        variant: 0 one shared table; 1 word and context tables, vectors concatenated
            :math:`[v, \tilde v]`; 2 the two tables, vectors summed :math:`v + \tilde v`
            (GloVe's output).
        x_max, alpha: the weight's scale and power.
        weight: ``"truncated"``, ``"power"`` or ``"none"``.
        loss: ``"pmi"`` (the simpler GloVe) or ``"glove"`` (the original, with biases).
        vocabulary: a :class:`~pyro_flowkit.text.words.Vocabulary` or the words in id order,
            to look words up by name.
        num_words: the number of words (default: the vocabulary's, else the counts' size at
            :meth:`fit`).
        sparse: sparse gradients (AdaGrad then updates only the rows of the batch).

    References:
        | Su Jianlin, a simpler GloVe (2017) https://kexue.fm/archives/4667 and
        | https://github.com/bojone/simpler_glove
        | GloVe: Global Vectors for Word Representation (Pennington et al., 2014)
        | https://nlp.stanford.edu/pubs/glove.pdf
        | Neural Word Embedding as Implicit Matrix Factorization (Levy & Goldberg, 2014)
        | https://papers.nips.cc/paper/5477-neural-word-embedding-as-implicit-matrix-factorization

    Example:
        >>> from pyro_flowkit.text.cooccurrence import cooccurrence
        >>> from pyro_flowkit.text.words import Vocabulary, tokenize
        >>> docs = [tokenize(t) for t in ["the cat sat on the mat", "the dog sat on the log"]] * 20
        >>> vocab = Vocabulary(min_count=1).fit(docs)
        >>> counts = cooccurrence(vocab.encode_documents(docs), window=2)
        >>> glove = SimplerGloVe(4, vocabulary=vocab)
        >>> history = glove.fit(counts, epochs=50, batch_size=16, progress=False)
        >>> glove.vectors.shape, len(glove.most_similar("cat", topn=3))
        (torch.Size([7, 4]), 3)
    """

    def __init__(
        self,
        dim: int = 100,
        variant: int = 0,
        x_max: float = 100.0,
        alpha: float = 0.75,
        *,
        weight: str = "truncated",
        loss: str = "pmi",
        vocabulary: Vocabulary | Sequence[str] | None = None,
        num_words: int | None = None,
        sparse: bool = True,
    ) -> None:
        super().__init__()
        self.dim = check_count("dim", dim)
        self.variant = check_choice("variant", variant, (0, 1, 2))
        self.x_max = check_positive("x_max", x_max)
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        self.weight = check_choice("weight", weight, ("truncated", "power", "none"))
        self.loss = check_choice("loss", loss, ("pmi", "glove"))
        self.sparse = bool(sparse)
        self.vocabulary = _as_vocabulary(vocabulary)
        if num_words is None and self.vocabulary is not None:
            num_words = len(self.vocabulary)
        self.num_words: int | None = None
        self._fitted = False  # a first fit(seed=...) re-draws the initial vectors
        self.register_buffer("_anchor", torch.empty(0), persistent=False)  # device and dtype
        if num_words is not None:
            self._build(check_count("num_words", num_words))

    # ---------------------------------------------------------------- parameters
    def _build(self, num_words: int) -> None:
        """Create the tables (uniform in :math:`\\pm 0.5 / d`, as the reference code) and the
        buffers of the fitted marginals."""
        like = {"device": self._anchor.device, "dtype": self._anchor.dtype}
        self.num_words = num_words

        def table(width: int) -> nn.Embedding:
            return nn.Embedding(num_words, width, sparse=self.sparse, **like)

        self.word = table(self.dim)
        self.context = table(self.dim) if self.variant else None
        self.word_bias = table(1) if self.loss == "glove" else None
        self.context_bias = table(1) if self.loss == "glove" and self.variant else None
        self._initialize()
        nan = torch.full((num_words,), float("nan"), **like)
        self.register_buffer("log_p_word", nan.clone())  # log P(i), set by fit
        self.register_buffer("log_p_context", nan.clone())
        self.register_buffer("log_total", torch.tensor(float("nan"), **like))

    def _initialize(self, generator: torch.Generator | None = None) -> None:
        r"""Every table uniform in :math:`\pm 0.5 / d` (the reference code's start), drawn on
        the CPU from ``generator`` (the global one when ``None``), so that a seed gives the same
        start on every device."""
        tables = (self.word, self.context, self.word_bias, self.context_bias)
        with torch.no_grad():
            for emb in (t for t in tables if t is not None):
                draw = torch.rand(emb.weight.shape, generator=generator, dtype=torch.float64)
                emb.weight.copy_((draw - 0.5) / self.dim)

    def _tables(self) -> tuple[nn.Embedding, nn.Embedding]:
        return self.word, self.word if self.context is None else self.context

    def _biases(self) -> tuple[nn.Embedding, nn.Embedding] | None:
        if self.word_bias is None:
            return None
        return self.word_bias, self.word_bias if self.context_bias is None else self.context_bias

    def score(self, i: Tensor, j: Tensor) -> Tensor:
        r"""The fitted quantity at entries ``(i, j)``: :math:`\langle v_i, \tilde v_j \rangle`
        (``loss="pmi"``), plus :math:`b_i + \tilde b_j` (``"glove"``)."""
        self._check_built()
        word, context = self._tables()
        if context is word:  # one gather for both ends (faster on the CPU)
            both = word(torch.cat([i, j]))
            out = (both[: len(i)] * both[len(i) :]).sum(-1)
        else:
            out = (word(i) * context(j)).sum(-1)
        biases = self._biases()
        if biases is not None:
            out = out + biases[0](i).squeeze(-1) + biases[1](j).squeeze(-1)
        return out

    # ---------------------------------------------------------------- fitting
    def _weights(self, x: Tensor) -> Tensor:
        if self.weight == "none":
            return torch.ones_like(x)
        w = (x / self.x_max).pow(self.alpha)
        return w.clamp(max=1.0) if self.weight == "truncated" else w

    def _entries(
        self, counts: Tensor, marginals: Tensor | None, diagonal: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Rows, columns, targets and weights of the fitted entries, on the model's device."""
        counts = sparse_counts(counts)
        i, j = counts.indices()
        x = counts.values()
        target = pmi(counts, marginals).values() if self.loss == "pmi" else x.log()
        keep = torch.ones_like(i, dtype=torch.bool) if diagonal else i != j
        if not bool(keep.any()):
            raise ValueError("counts: expected a non-zero entry off the diagonal, got none")
        like = {"device": self._anchor.device, "dtype": self._anchor.dtype}
        log_rows, log_cols, log_total = log_marginals(counts, marginals)
        with torch.no_grad():
            self.log_p_word.copy_(log_rows.to(**like))
            self.log_p_context.copy_(log_cols.to(**like))
            self.log_total.copy_(log_total.to(**like))
        device = self._anchor.device
        return (
            i[keep].to(device),
            j[keep].to(device),
            target[keep].to(**like),
            self._weights(x[keep]).to(**like),
        )

    def fit(
        self,
        counts: Tensor,
        marginals: Tensor | None = None,
        *,
        epochs: int = 25,
        batch_size: int = 4096,
        lr: float | None = None,
        optimizer: torch.optim.Optimizer | Callable | None = None,
        diagonal: bool = False,
        seed: int | None = None,
        progress: bool = True,
        callbacks: Sequence[Callable[[StepInfo], object]] = (),
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
    ) -> History:
        r"""Fit the vectors to the non-zero entries of ``counts`` by
        :func:`~pyro_flowkit.inference.train`: minibatches of ``batch_size`` entries, reshuffled
        every epoch, the loss of a batch being :math:`\sum \frac12 f(X_{ij}) (\text{score} -
        \text{target})^2` over its entries (the reference code's per-entry cost, summed). A
        second call goes on from the current vectors with a new optimiser.

        Arguments:
            counts: a ``(V, V)`` co-occurrence matrix, sparse (from
                :func:`~pyro_flowkit.text.cooccurrence.cooccurrence`) or dense.
            marginals: word counts or probabilities for :math:`P(i)` in the PMI (``None``: the
                row and column sums of the counts; a vocabulary's ``counts`` gives the
                reference code's PMI). Also sets the normalisers of :meth:`pmi`.
            epochs: passes over the entries.
            batch_size: entries per step (at most all of them).
            lr: AdaGrad's :math:`\eta` (default 0.1, or 0.05 for ``loss="glove"``: the
                reference codes' rates for one entry per step). A minibatch is one step, so
                a frequent word moves far fewer times per epoch than in the per-entry
                reference: on minibatches of 4096 a larger rate (0.3; 0.5 for GloVe's loss)
                reached a lower cost in the same epochs (``benchmarks/glove.py``).
            optimizer: a ``torch.optim`` optimiser or a factory ``params -> optimizer`` instead
                of AdaGrad; with ``sparse=True`` it must take sparse gradients (``Adagrad``,
                ``SGD``, ``SparseAdam``), else build the model with ``sparse=False``.
            diagonal: also fit the diagonal entries :math:`X_{ii}` (left out by default, as in
                the reference code).
            seed: seeds the shuffling and, on the first fit, re-draws the initial vectors
                from this seed (``None``: the vectors drawn at construction from torch's
                global generator are kept, and the shuffling uses seed 0).
            progress: show a tqdm progress bar.
            callbacks, checkpoint, resume: as for :func:`~pyro_flowkit.inference.train`.

        Returns:
            The :class:`~pyro_flowkit.inference.History`: the loss of every step, and in its
            ``metrics["cost"]`` the mean cost per entry of every batch.

        Raises:
            FloatingPointError: when the loss becomes NaN or infinite (lower ``lr``).
        """
        epochs = check_count("epochs", epochs, minimum=0)
        batch_size = check_count("batch_size", batch_size)
        if seed is not None:
            seed = check_count("seed", seed, minimum=0)
        size = counts.shape[0] if isinstance(counts, Tensor) and counts.dim() == 2 else None
        if self.num_words is None and size is not None:
            self._build(size)
        if size != self.num_words:
            raise ValueError(
                f"counts: expected a ({self.num_words}, {self.num_words}) matrix, one row per "
                f"word, got {_shape(counts)}"
            )
        rows, cols, target, weight = self._entries(counts, marginals, diagonal)
        if seed is not None and not self._fitted:
            self._initialize(torch.Generator().manual_seed(seed))
        history = self._train(rows, cols, target, weight, epochs, batch_size, lr, optimizer,
                              seed, progress, callbacks, checkpoint, resume)  # fmt: skip
        self._fitted = True
        return history

    def _train(
        self,
        rows: Tensor,
        cols: Tensor,
        target: Tensor,
        weight: Tensor,
        epochs: int,
        batch_size: int,
        lr: float | None,
        optimizer: torch.optim.Optimizer | Callable | None,
        seed: int | None,
        progress: bool,
        callbacks: Sequence[Callable[[StepInfo], object]],
        checkpoint: str | Path | None,
        resume: str | Path | None,
    ) -> History:
        def loss_fn(batch: Tensor) -> tuple[Tensor, dict[str, float]]:
            diff = self.score(rows[batch], cols[batch]) - target[batch]
            loss = 0.5 * (weight[batch] * diff.square()).sum()
            return loss, {"cost": float(loss.detach()) / len(batch)}

        eta = check_positive("lr", lr) if lr is not None else 0.1 if self.loss == "pmi" else 0.05
        if optimizer is None:

            def optimizer(params: list[Tensor]) -> torch.optim.Optimizer:
                return torch.optim.Adagrad(params, lr=eta, initial_accumulator_value=1.0)

        entries = torch.arange(len(rows), device=rows.device)
        try:
            # torch's sparse AdaGrad builds sparse tensors; their invariant checks are opted out
            # of explicitly (else torch warns that they are implicitly off)
            with torch.sparse.check_sparse_tensor_invariants(enable=False):
                return train(
                    loss_fn, entries, params=self, epochs=epochs,
                    batch_size=min(batch_size, len(entries)), optimizer=optimizer, lr=eta,
                    seed=0 if seed is None else seed, progress=progress, desc=type(self).__name__,
                    callbacks=callbacks, checkpoint=checkpoint, resume=resume,
                )  # fmt: skip
        except FloatingPointError as error:
            raise FloatingPointError(
                f"{type(self).__name__}.fit: {error}: the fit diverged; lower the learning rate"
            ) from error

    # ---------------------------------------------------------------- vectors
    def _check_built(self) -> None:
        if self.num_words is None:
            raise RuntimeError(f"{type(self).__name__}: not fitted yet (call fit(counts))")

    @property
    def vectors(self) -> Tensor:
        r"""The word vectors, ``(V, D)`` (``(V, 2D)`` for variant 1): :math:`v`,
        :math:`[v, \tilde v]` or :math:`v + \tilde v`; detached from the graph."""
        self._check_built()
        word = self.word.weight.detach()
        if self.context is None:
            return word
        context = self.context.weight.detach()
        return torch.cat([word, context], -1) if self.variant == 1 else word + context

    @property
    def words(self) -> list[str] | None:
        """The vocabulary's words in id order (``None`` without a vocabulary)."""
        return None if self.vocabulary is None else self.vocabulary.words

    def similarity_vectors(
        self, metric: str = "context", context_words: int | None = None
    ) -> Tensor:
        r"""The vectors whose cosine is the similarity ``metric``: ``"context"``
        (:func:`context_metric`, the reference code's), ``"whitened"`` (BERT-whitening:
        :math:`(v - \mu)\, U \Lambda^{-1/2}` from the vectors' covariance, by
        :class:`~pyro_flowkit.transforms.whitening.Whitening`) or ``"cosine"`` (raw); the
        statistics come from the first ``context_words`` (most frequent) words."""
        check_choice("metric", metric, METRICS)
        vectors = self.vectors
        if metric == "cosine":
            return vectors
        if metric == "context":
            return context_metric(vectors, context_words)
        top = (
            vectors
            if context_words is None
            else vectors[: check_count("context_words", context_words)]
        )
        with torch.no_grad():
            return Whitening.from_data(top).inv(vectors)

    def _id(self, word: str | int) -> int:
        self._check_built()
        if isinstance(word, str):
            if self.vocabulary is None:
                raise ValueError(f"word: {word!r} given by name, but the model has no vocabulary")
            return self.vocabulary[word]
        index = check_count("word", word, minimum=0)
        if index >= self.num_words:
            raise ValueError(f"word: expected an id below {self.num_words}, got {index}")
        return index

    def _name(self, index: int) -> str | int:
        return index if self.vocabulary is None else self.vocabulary.words[index]

    def _nearest(self, space: Tensor, query: Tensor, exclude: list[int], topn: int) -> list:
        unit = nn.functional.normalize(space, dim=-1)
        scores = unit @ nn.functional.normalize(query, dim=-1)
        scores[exclude] = float("-inf")
        best = scores.topk(min(check_count("topn", topn), len(scores) - len(exclude)))
        return [(self._name(int(k)), float(s)) for s, k in zip(*best, strict=True)]

    def most_similar(
        self,
        word: str | int,
        topn: int = 10,
        metric: str = "context",
        context_words: int | None = None,
    ) -> list[tuple[str | int, float]]:
        r"""The ``topn`` words of highest cosine with ``word`` after the similarity ``metric``
        (see :meth:`similarity_vectors`), as ``(word, cosine)``, the word itself left out."""
        space = self.similarity_vectors(metric, context_words)
        index = self._id(word)
        return self._nearest(space, space[index], [index], topn)

    def analogy(
        self, a: str | int, b: str | int, c: str | int, topn: int = 10, metric: str = "cosine"
    ) -> list[tuple[str | int, float]]:
        r""" "``a`` is to ``b`` as ``c`` is to ?": the words of highest cosine with
        :math:`\hat v_b - \hat v_a + \hat v_c` (unit vectors after ``metric``; raw by default,
        as the reference code), ``a``, ``b`` and ``c`` left out (3CosAdd)."""
        space = nn.functional.normalize(self.similarity_vectors(metric), dim=-1)
        ids = [self._id(w) for w in (a, b, c)]
        return self._nearest(space, space[ids[1]] - space[ids[0]] + space[ids[2]], ids, topn)

    def pmi(self, word_a: str | int, word_b: str | int) -> float:
        r"""The model's estimate of :math:`\operatorname{PMI}_{ab}`: the inner product
        :math:`\langle v_a, \tilde v_b \rangle` (``loss="pmi"``), or
        :math:`\log \hat X_{ab} - \log S - \log P(a) - \log P(b)` with :math:`\log \hat X_{ab} =
        \langle v_a, \tilde v_b \rangle + b_a + \tilde b_b` (``"glove"``, with the fit's
        marginals); averaged over both orders for two tables."""
        if self.loss == "glove" and not bool(torch.isfinite(self.log_total)):
            raise RuntimeError(f"{type(self).__name__}: pmi needs the marginals of a fit")
        i, j = (torch.tensor([self._id(w)], device=self._anchor.device) for w in (word_a, word_b))
        with torch.no_grad():
            both = torch.cat([self.score(i, j), self.score(j, i)])
            if self.loss == "glove":
                both = both - self.log_total - self.log_p_word[torch.cat([i, j])]
                both = both - self.log_p_context[torch.cat([j, i])]
        return float(both.mean())

    def sentence_vectors(
        self, sentences: Sequence[str | Sequence[str]], tokenizer: Callable = tokenize
    ) -> Tensor:
        r"""The mean vector :math:`\frac1{|s|} \sum_{w \in s} v_w` of the known words of each
        sentence (a string, tokenised by ``tokenizer``, or a token list); a sentence with no
        known word gets the zero vector."""
        if self.vocabulary is None:
            raise ValueError("sentences: looking words up needs the model's vocabulary")
        vectors = self.vectors
        out = torch.zeros(
            len(sentences), vectors.shape[-1], dtype=vectors.dtype, device=vectors.device
        )
        for k, sentence in enumerate(sentences):
            tokens = tokenizer(sentence) if isinstance(sentence, str) else sentence
            ids = self.vocabulary.encode(tokens).to(vectors.device)
            if len(ids):
                out[k] = vectors[ids].mean(0)
        return out

    # ---------------------------------------------------------------- saving
    def config(self) -> dict:
        """The constructor's arguments (the vocabulary aside)."""
        return {
            "dim": self.dim, "variant": self.variant, "x_max": self.x_max, "alpha": self.alpha,
            "weight": self.weight, "loss": self.loss, "num_words": self.num_words,
            "sparse": self.sparse,
        }  # fmt: skip

    def save(self, path: str | Path) -> None:
        """Write the configuration, the parameters, the fit's marginals and the vocabulary to
        ``path`` (tensors, strings and numbers: readable with ``weights_only=True``)."""
        self._check_built()
        vocab = self.vocabulary
        torch.save(
            {
                "format": _FORMAT,
                "config": self.config(),
                "state_dict": self.state_dict(),
                "words": None if vocab is None else vocab.words,
                "counts": None if vocab is None else vocab.counts,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> SimplerGloVe:
        """A model written by :meth:`save` (``torch.load(..., weights_only=True)``)."""
        data = torch.load(path, weights_only=True, map_location=map_location)
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"path: expected a file written by SimplerGloVe.save, got {path}")
        words = data["words"]
        vocab = None if words is None else Vocabulary.from_words(words, data["counts"].tolist())
        state = data["state_dict"]
        model = cls(**data["config"], vocabulary=vocab).to(state["word.weight"].dtype)
        model.to(state["word.weight"].device).load_state_dict(state)
        model._fitted = True
        return model


def _as_vocabulary(vocabulary: Vocabulary | Sequence[str] | None) -> Vocabulary | None:
    if vocabulary is None or isinstance(vocabulary, Vocabulary):
        return vocabulary
    if isinstance(vocabulary, str):
        raise TypeError("vocabulary: expected a Vocabulary or a sequence of words, got a str")
    return Vocabulary.from_words(list(vocabulary))


def _shape(t: object) -> str:
    return f"shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
