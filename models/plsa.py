r"""Probabilistic latent semantic analysis (pLSA) fit by EM on a document-word count matrix.

:math:`p(w \mid d) = \sum_z p(z \mid d)\, p(w \mid z)`, fit by maximising
:math:`\sum_{d,w} n_{dw} \log p(w \mid d)`. The E-step's posteriors
:math:`p(z \mid d, w) \propto p(z \mid d) p(w \mid z)` never need a :math:`D \times W \times K`
tensor: with :math:`R = n / (P_{zd} P_{wz})` (elementwise, :math:`D \times W`), the M-step is
:math:`p(w \mid z) \propto p(w \mid z) \, [P_{zd}^\top R]_{zw}` and
:math:`p(z \mid d) \propto p(z \mid d) \, [R P_{wz}^\top]_{dz}`: two matrix products per iteration.
Documents are rows, so chunks (and processes) hold whole documents and their own :math:`p(z \mid
d)`. New documents are folded in (Hofmann 1999, section 3.4): EM on their :math:`p(z \mid d)` with
the topics held fixed, which is a concave maximisation per document. :class:`PLSA` is a
scikit-learn estimator (a transformer, like its ``LatentDirichletAllocation``); tensors in give
tensors out, NumPy in gives NumPy out.

References:
    Probabilistic Latent Semantic Analysis (Hofmann, 1999).
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_non_negative
from torch import Tensor
from torch.distributions import constraints

from pyro_flowkit.inference.em import Params
from pyro_flowkit.models._mixture import (
    ArrayLike,
    MixtureEstimator,
    RandomStateLike,
    check_data,
    check_nonnegative,
    like_input,
    to_tensor,
)
from pyro_flowkit.validation import check_count, check_positive

__all__ = ["PLSA"]


class PLSA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, MixtureEstimator):
    r"""pLSA topics of a count matrix ``(n_docs, n_words)``, fit by EM.

    Arguments:
        n_topics: the number of topics :math:`K`.
        max_iter: the most EM iterations per initialisation (and per folded-in document).
        tol: stop when the mean per-token log-likelihood changes by less than this (in
            :meth:`transform`: that of each document).
        n_init: initialisations (random, Dirichlet(1)-distributed); the best is kept.
        chunk_size: documents per chunk of the E-step.
        seed: seed of the initialisation.
        name: prefix of the Pyro sites and params of :meth:`model`.
        random_state: scikit-learn's name for ``seed``: an integer (the same fit as ``seed`` of
            that value), a NumPy ``RandomState`` (draws the seed at every ``fit``) or ``None``. At
            most one of ``seed`` and ``random_state`` may be set.

    The arguments are stored as given and checked by :meth:`fit` (scikit-learn's rules). Fitted
    arrays are tensors when ``fit`` got a tensor, NumPy arrays otherwise; :meth:`transform`
    follows its own input the same way.

    Fitted attributes: ``p_w_given_z_`` ``(n_topics, n_words)``, ``p_z_given_d_``
    ``(n_docs, n_topics)`` (of the training documents), ``converged_``, ``n_iter_``,
    ``lower_bound_`` (mean log-likelihood per token), ``lower_bounds_``, ``monotone_violations_``,
    ``n_features_in_`` (``n_words``; and ``feature_names_in_`` when fit on a data frame).
    ``p_w_given_z`` and ``p_z_given_d`` are aliases of the first two.

    Example:
        >>> topics = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
        >>> mix = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(20, 1)
        >>> counts = torch.distributions.Multinomial(50, mix @ topics).sample()
        >>> plsa = PLSA(2, seed=0).fit(counts)
        >>> sorted(plsa.p_w_given_z_.round(decimals=1).tolist())
        [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.0, 0.0]]
        >>> plsa.transform(counts[:2]).round().tolist() in ([[1.0, 0.0], [0.0, 1.0]],
        ...                                                 [[0.0, 1.0], [1.0, 0.0]])
        True
    """

    local_keys = ("p_z_given_d",)
    _fitted_attr = "p_w_given_z_"
    _count_name = "n_topics"

    def __init__(
        self,
        n_topics: int = 10,
        max_iter: int = 100,
        tol: float = 1e-4,
        n_init: int = 1,
        chunk_size: int | None = None,
        seed: int | None = None,
        name: str = "plsa",
        random_state: RandomStateLike = None,
    ) -> None:
        self.n_topics = n_topics
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.chunk_size = chunk_size
        self.seed = seed
        self.name = name
        self.random_state = random_state

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def _n_features_out(self) -> int:
        """The number of outputs of ``transform`` (for ``get_feature_names_out``)."""
        return self.p_w_given_z_.shape[0]

    @property
    def p_w_given_z(self) -> ArrayLike:
        """Alias of ``p_w_given_z_``."""
        return self.p_w_given_z_

    @property
    def p_z_given_d(self) -> ArrayLike:
        """Alias of ``p_z_given_d_``."""
        return self.p_z_given_d_

    def _check_values(self, x: Tensor, name: str, array: np.ndarray | None) -> Tensor:
        if array is not None:
            check_non_negative(array, f"{type(self).__name__} ({name})")
        return check_nonnegative(x, name)

    def fit(self, counts: ArrayLike, y: object = None) -> PLSA:
        """Fit by EM on non-negative ``counts`` of shape ``(n_docs, n_words)``; ``y`` is ignored.
        Returns ``self``."""
        self._check_params()
        x = self._input(counts, reset=True, name="counts")
        if not float(x.sum()) > 0:
            raise ValueError("counts: expected at least one positive count")
        g = self._generator()
        em = self._driver(x.shape[1])
        result = self._fit_em(em, x, lambda _: self._initial_params(x, g))
        self.p_w_given_z_ = self._export(result.params["p_w_given_z"])
        self.p_z_given_d_ = self._export(result.params["p_z_given_d"])
        self._store(result)
        return self

    def transform(self, counts: ArrayLike) -> ArrayLike:
        r"""The topic mixes :math:`p(z \mid d)` of the documents ``counts`` ``(n, n_words)``,
        folded in: EM on each document's mix with the fitted topics fixed, from the uniform mix,
        until its per-token log-likelihood changes by less than ``tol`` (at most ``max_iter``
        steps). Words no topic can emit are ignored; a document without words gets the uniform
        mix. Each document is folded in on its own, so the result of a row does not depend on the
        other rows."""
        self._check_fitted()
        max_iter = check_count("max_iter", self.max_iter)
        tol = check_positive("tol", self.tol, allow_zero=True)
        x = self._input(counts, reset=False, name="counts")
        pwz = to_tensor(self.p_w_given_z_).to(x)
        mixes = self._map_rows(lambda c: _fold_in(c, pwz, max_iter, tol), x)
        return like_input(mixes, counts)

    def score(self, counts: ArrayLike, y: object = None) -> float:
        r"""The mean per-token log-likelihood :math:`\sum n_{dw} \log p(w \mid d) / \sum n_{dw}` of
        the training documents (rows must be the fitted documents; ``y`` is ignored)."""
        self._check_fitted()
        x = self._input(counts, reset=False, name="counts")
        pzd, pwz = to_tensor(self.p_z_given_d_), to_tensor(self.p_w_given_z_)
        shape = (len(pzd), pwz.shape[1])
        if x.shape != shape:
            raise ValueError(f"counts: expected the fitted shape {shape}, got {tuple(x.shape)}")
        mix = pzd.to(x) @ pwz.to(x)
        return float(torch.xlogy(x, mix).sum() / x.sum())

    def _initial_params(self, counts: Tensor, g: torch.Generator) -> Params:
        n_docs, n_words = counts.shape
        k = self.n_topics
        # Dirichlet(1) rows: normalised exponential draws
        pwz = -torch.rand(k, n_words, generator=g, dtype=counts.dtype).log()
        pzd = -torch.rand(n_docs, k, generator=g, dtype=counts.dtype).log()
        return {
            "p_w_given_z": (pwz / pwz.sum(1, keepdim=True)).to(counts.device),
            "p_z_given_d": (pzd / pzd.sum(1, keepdim=True)).to(counts.device),
        }

    # ---------------------------------------------------------------- EMModel
    def e_step(self, x: Tensor, params: Params, rows: slice) -> Params:
        pwz, pzd = params["p_w_given_z"], params["p_z_given_d"][rows]
        mix = pzd @ pwz
        ratio = torch.where(x > 0, x / mix, 0.0)
        new = pzd * (ratio @ pwz.T)
        total = new.sum(1, keepdim=True)
        new = torch.where(total > 0, new / total, pzd)  # a document without words keeps its mix
        return {
            "s_wz": pwz * (pzd.T @ ratio),
            "log_likelihood": torch.xlogy(x, mix).sum(),
            "n": x.sum(),
            "p_z_given_d": new,
        }

    def m_step(self, stats: Params, params: Params) -> Params:
        s = stats["s_wz"]
        total = s.sum(1, keepdim=True)
        pwz = torch.where(total > 0, s / total, params["p_w_given_z"])  # a topic with no tokens
        return {"p_w_given_z": pwz, "p_z_given_d": stats["p_z_given_d"]}

    # ---------------------------------------------------------------- Pyro model
    def model(self, counts: Tensor, subsample_size: int | None = None) -> None:
        r"""pLSA as a Pyro model over tokens, for SVI with ``TraceEnum_ELBO`` and an empty guide.

        Every token (document :math:`d`, word :math:`w`) of the integer ``counts`` is a row of the
        plate ``f"{name}.tokens"`` (``subsample_size`` subsamples tokens); the topic
        ``f"{name}.topic"`` :math:`\sim p(z \mid d)` is enumerated and the word ``f"{name}.word"``
        :math:`\sim p(w \mid z)` observed, so the ELBO is :math:`\sum_{d,w} n_{dw} \log p(w \mid
        d)`. Params ``f"{name}.p_w_given_z"`` and ``f"{name}.p_z_given_d"`` (simplex rows) start
        from the fit, or from the random initialisation when unfitted; :meth:`load_param_store`
        copies them back.
        """
        counts = check_data(counts, name="counts", nonnegative=True)
        if not bool((counts == counts.round()).all()):
            raise ValueError("counts: the token model needs integer counts")
        init = self._svi_init(counts)
        pwz = pyro.param(f"{self.name}.p_w_given_z", init["p_w_given_z"], constraints.simplex)
        pzd = pyro.param(f"{self.name}.p_z_given_d", init["p_z_given_d"], constraints.simplex)
        doc, word = counts.nonzero(as_tuple=True)
        repeats = counts[doc, word].long()
        _token_model(self.name, doc.repeat_interleave(repeats), word.repeat_interleave(repeats),
                     pzd, pwz, subsample_size)  # fmt: skip

    def _svi_init(self, counts: Tensor) -> dict[str, Tensor | None]:
        if f"{self.name}.p_w_given_z" in pyro.get_param_store():
            return {"p_w_given_z": None, "p_z_given_d": None}
        if not hasattr(self, "p_w_given_z_"):
            self._check_params()
            params = self._initial_params(counts, self._generator())
            self.n_features_in_ = counts.shape[1]
            self.p_w_given_z_, self.p_z_given_d_ = params["p_w_given_z"], params["p_z_given_d"]
        return {
            "p_w_given_z": to_tensor(self.p_w_given_z_).to(counts, copy=True),
            "p_z_given_d": to_tensor(self.p_z_given_d_).to(counts, copy=True),
        }

    def load_param_store(self) -> PLSA:
        """Copy the Pyro params of :meth:`model` into ``p_w_given_z_`` and ``p_z_given_d_``
        (NumPy arrays if the estimator was fit on NumPy data); returns ``self``."""
        store = pyro.get_param_store()
        self.p_w_given_z_ = self._export(store[f"{self.name}.p_w_given_z"].detach())
        self.p_z_given_d_ = self._export(store[f"{self.name}.p_z_given_d"].detach())
        return self


def _fold_in(x: Tensor, pwz: Tensor, max_iter: int, tol: float) -> Tensor:
    r""":math:`p(z \mid d)` of the documents ``x`` under the topics ``pwz`` by EM from the
    uniform mix, each document until its per-token log-likelihood changes by less than ``tol``."""
    n_docs, k = len(x), len(pwz)
    mixes = x.new_full((n_docs, k), 1 / k)
    known = pwz.sum(0) > 0  # words some topic can emit
    x = torch.where(known, x, 0.0)
    tokens = x.sum(1)
    previous = x.new_full((n_docs,), -math.inf)
    active = (tokens > 0).nonzero().flatten()
    for _ in range(max_iter):
        if len(active) == 0:
            break
        counts, theta = x[active], mixes[active]
        mix = theta @ pwz
        ratio = torch.where(counts > 0, counts / mix, 0.0)
        objective = torch.xlogy(counts, mix).sum(1) / tokens[active]
        new = theta * (ratio @ pwz.T)
        mixes[active] = new / new.sum(1, keepdim=True)
        done = objective - previous[active] < tol
        previous[active] = objective
        active = active[~done]
    return mixes


@config_enumerate
def _token_model(
    name: str, doc: Tensor, word: Tensor, pzd: Tensor, pwz: Tensor, subsample_size: int | None
) -> None:
    with pyro.plate(f"{name}.tokens", len(doc), subsample_size=subsample_size) as idx:
        z = pyro.sample(f"{name}.topic", dist.Categorical(pzd[doc[idx]]))
        pyro.sample(f"{name}.word", dist.Categorical(pwz[z]), obs=word[idx])
