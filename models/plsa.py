r"""Probabilistic latent semantic analysis (pLSA) fit by EM on a document-word count matrix.

:math:`p(w \mid d) = \sum_z p(z \mid d)\, p(w \mid z)`, fit by maximising
:math:`\sum_{d,w} n_{dw} \log p(w \mid d)`. The E-step's posteriors
:math:`p(z \mid d, w) \propto p(z \mid d) p(w \mid z)` never need a :math:`D \times W \times K`
tensor: with :math:`R = n / (P_{zd} P_{wz})` (elementwise, :math:`D \times W`), the M-step is
:math:`p(w \mid z) \propto p(w \mid z) \, [P_{zd}^\top R]_{zw}` and
:math:`p(z \mid d) \propto p(z \mid d) \, [R P_{wz}^\top]_{dz}`: two matrix products per iteration.
Documents are rows, so chunks (and processes) hold whole documents and their own :math:`p(z \mid
d)`.

References:
    Probabilistic Latent Semantic Analysis (Hofmann, 1999).
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from torch import Tensor
from torch.distributions import constraints

from pyro_flowkit.inference.em import Params
from pyro_flowkit.models._mixture import MixtureEstimator, check_data

__all__ = ["PLSA"]


class PLSA(MixtureEstimator):
    r"""pLSA topics of a count matrix ``(n_docs, n_words)``, fit by EM.

    Arguments:
        n_topics: the number of topics :math:`K`.
        max_iter: the most EM iterations per initialisation.
        tol: stop when the mean per-token log-likelihood changes by less than this.
        n_init: initialisations (random, Dirichlet(1)-distributed); the best is kept.
        chunk_size: documents per chunk of the E-step.
        seed: seed of the initialisation.
        name: prefix of the Pyro sites and params of :meth:`model`.

    Fitted attributes: ``p_w_given_z`` ``(n_topics, n_words)``, ``p_z_given_d``
    ``(n_docs, n_topics)``, ``converged_``, ``n_iter_``, ``lower_bound_`` (mean log-likelihood per
    token), ``lower_bounds_``.

    Example:
        >>> topics = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
        >>> mix = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(20, 1)
        >>> counts = torch.distributions.Multinomial(50, mix @ topics).sample()
        >>> plsa = PLSA(2, seed=0).fit(counts)
        >>> sorted(plsa.p_w_given_z.round(decimals=1).tolist())
        [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.0, 0.0]]
    """

    local_keys = ("p_z_given_d",)
    _fitted_attr = "p_w_given_z"

    def __init__(
        self,
        n_topics: int,
        max_iter: int = 100,
        tol: float = 1e-4,
        n_init: int = 1,
        chunk_size: int | None = None,
        seed: int | None = None,
        name: str = "plsa",
    ) -> None:
        super().__init__(
            n_topics, tol=tol, max_iter=max_iter, n_init=n_init, chunk_size=chunk_size,
            seed=seed, count_name="n_topics",
        )  # fmt: skip
        self.n_topics, self.name = n_topics, name

    def fit(self, counts: Tensor | np.ndarray) -> PLSA:
        """Fit by EM on non-negative ``counts`` of shape ``(n_docs, n_words)``; returns ``self``."""
        counts = check_data(counts, name="counts", nonnegative=True)
        if not float(counts.sum()) > 0:
            raise ValueError("counts: expected at least one positive count")
        self._use_chunks(self.n_topics + counts.shape[1])
        g = self._generator()
        result = self._em.fit(self, counts, lambda _: self._initial_params(counts, g))
        self.p_w_given_z = result.params["p_w_given_z"]
        self.p_z_given_d = result.params["p_z_given_d"]
        self._store(result)
        return self

    def score(self, counts: Tensor | np.ndarray) -> float:
        r"""The mean per-token log-likelihood :math:`\sum n_{dw} \log p(w \mid d) / \sum n_{dw}` of
        the training documents (rows must be the fitted documents)."""
        self._check_fitted()
        counts = check_data(counts, name="counts", nonnegative=True)
        shape = (len(self.p_z_given_d), self.p_w_given_z.shape[1])
        if counts.shape != shape:
            raise ValueError(
                f"counts: expected the fitted shape {shape}, got {tuple(counts.shape)}"
            )
        mix = self.p_z_given_d.to(counts) @ self.p_w_given_z.to(counts)
        return float(torch.xlogy(counts, mix).sum() / counts.sum())

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
        if not hasattr(self, "p_w_given_z"):
            params = self._initial_params(counts, self._generator())
            self.p_w_given_z, self.p_z_given_d = params["p_w_given_z"], params["p_z_given_d"]
        return {"p_w_given_z": self.p_w_given_z.clone(), "p_z_given_d": self.p_z_given_d.clone()}

    def load_param_store(self) -> PLSA:
        """Copy the Pyro params of :meth:`model` into ``p_w_given_z`` and ``p_z_given_d``."""
        store = pyro.get_param_store()
        self.p_w_given_z = store[f"{self.name}.p_w_given_z"].detach()
        self.p_z_given_d = store[f"{self.name}.p_z_given_d"].detach()
        return self


@config_enumerate
def _token_model(
    name: str, doc: Tensor, word: Tensor, pzd: Tensor, pwz: Tensor, subsample_size: int | None
) -> None:
    with pyro.plate(f"{name}.tokens", len(doc), subsample_size=subsample_size) as idx:
        z = pyro.sample(f"{name}.topic", dist.Categorical(pzd[doc[idx]]))
        pyro.sample(f"{name}.word", dist.Categorical(pwz[z]), obs=word[idx])
