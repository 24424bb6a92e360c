"""What the EM-fitted estimators share: scikit-learn's estimator contract, input checks, seeding,
chunked per-row maps, fitted state.

The estimators follow scikit-learn's rules: ``__init__`` only stores its arguments, every parameter
is validated and read by ``fit`` (so ``set_params``, ``clone`` and ``GridSearchCV`` work), fitted
attributes end in ``_`` and exist only after ``fit``. Data comes in two kinds and results follow
the kind they were computed from:

* a ``torch.Tensor`` (CPU or GPU) is checked by :func:`check_data` (the library's messages) and
  the results are tensors on its device, in its floating dtype;
* anything else (NumPy arrays, lists, pandas frames) is checked by scikit-learn's
  ``validate_data`` (its messages; ``feature_names_in_`` for frames) and the results are NumPy
  arrays.

Fitted array attributes follow the data given to ``fit``; the outputs of ``predict``,
``transform``, ``score_samples``... follow the data given to them. Their errors and warnings are
both the library's and scikit-learn's classes (:class:`NotFittedError`,
:class:`ConvergenceWarning`), so either library's ``except`` or warning filter catches them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils.validation import validate_data
from torch import Tensor

from pyro_flowkit import errors
from pyro_flowkit.inference.em import EM, EMResult, Params, chunk_slices
from pyro_flowkit.validation import check_count, check_positive

__all__ = [
    "ArrayLike",
    "ConvergenceWarning",
    "MixtureEstimator",
    "NotFittedError",
    "ProbabilisticMixture",
    "RandomStateLike",
    "check_binary",
    "check_data",
    "check_init",
    "check_nonnegative",
    "check_weights",
    "enumerated_mixture",
    "like_input",
    "to_tensor",
]

#: What the estimators take and give: tensors or NumPy arrays (lists and data frames work too).
ArrayLike = Tensor | np.ndarray
#: ``random_state``: a seed, a NumPy ``RandomState`` that draws one, or ``None``.
RandomStateLike = int | np.random.RandomState | None


class NotFittedError(errors.NotFittedError, _SklearnNotFittedError):
    """Raised by the mixtures when used before ``fit``: both
    :class:`pyro_flowkit.NotFittedError` and scikit-learn's ``NotFittedError``, so either
    ``except`` clause (and scikit-learn's estimator checks) catches it."""


class ConvergenceWarning(errors.ConvergenceWarning, _SklearnConvergenceWarning):
    """Warned by the mixtures: both :class:`pyro_flowkit.ConvergenceWarning` and scikit-learn's
    ``ConvergenceWarning``, so a filter on either catches it."""


def check_data(
    x: ArrayLike,
    *,
    name: str = "x",
    n_features: int | None = None,
    min_rows: int = 1,
    binary: bool = False,
    nonnegative: bool = False,
) -> Tensor:
    """``x`` as a 2-D floating tensor with finite values, or a ``ValueError`` naming ``name``.

    Integer and boolean input becomes the default dtype; floating input keeps its dtype and device.
    Complex input is refused (casting it would drop the imaginary part).
    """
    if isinstance(x, np.ndarray):
        x = to_tensor(x)
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a 2-D tensor, got {type(x).__name__}")
    if x.is_complex():
        raise ValueError(
            f"{name}: expected real values, got dtype {x.dtype} (Complex data not supported)"
        )
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.dim() != 2:
        raise ValueError(
            f"{name}: expected a 2-D tensor (n_samples, n_features), got {tuple(x.shape)}"
        )
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(
            f"{name}: expected {n_features} features (as in fit), got shape {tuple(x.shape)}"
        )
    if len(x) < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} samples, got {len(x)}")
    if not _all_finite(x):
        raise ValueError(f"{name}: contains NaN or infinite values")
    if binary:
        check_binary(x, name)
    if nonnegative:
        check_nonnegative(x, name)
    return x


def _all_finite(x: Tensor) -> bool:
    """Whether every entry of ``x`` is finite: a finite sum says so in one pass (NaN and
    infinities propagate through a sum), and only a sum that overflowed needs the entry-wise
    test (scikit-learn's ``_assert_all_finite`` does the same)."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def check_binary(x: Tensor, name: str) -> Tensor:
    """``x`` if every entry is 0 or 1."""
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{name}: expected binary values (0 or 1)")
    return x


def check_nonnegative(x: Tensor, name: str) -> Tensor:
    """``x`` if no entry is negative."""
    if bool((x < 0).any()):
        raise ValueError(f"{name}: expected non-negative counts")
    return x


def check_init(x: Tensor, value: ArrayLike, shape: tuple[int, ...], name: str) -> Tensor:
    """An initial parameter as a tensor like ``x`` of shape ``shape`` with finite values, or a
    ``ValueError`` naming ``name``."""
    try:
        value = to_tensor(value).to(x)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from error
    if tuple(value.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return value


def check_weights(x: Tensor, value: ArrayLike, k: int) -> Tensor:
    """Initial mixture weights: ``k`` non-negative values summing to 1."""
    w = check_init(x, value, (k,), "weights_init")
    if bool((w < 0).any()) or abs(float(w.sum()) - 1) > 1e-6:
        raise ValueError(f"weights_init: expected non-negative weights summing to 1, got {w}")
    return w


def to_tensor(value: object) -> Tensor:
    """``value`` as a tensor: a tensor as it is, a NumPy array without a copy (unless it is
    read-only, e.g. a memory map: torch cannot wrap those)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value if value.flags.writeable else value.copy())
    return torch.as_tensor(value)


def like_input(value: Tensor, reference: object) -> ArrayLike:
    """``value`` in the kind of ``reference``: a tensor for a tensor, else a NumPy array."""
    return value if isinstance(reference, Tensor) else value.detach().cpu().numpy()


class MixtureEstimator(BaseEstimator):
    """The scikit-learn estimator around an :class:`~pyro_flowkit.inference.EM` model.

    Subclasses store their ``__init__`` arguments unchanged (scikit-learn's rule), set
    ``_fitted_attr`` (an attribute that exists only after ``fit``) and ``_count_name`` (the
    parameter holding the number of components), extend :meth:`_check_params`, and implement the
    :class:`~pyro_flowkit.inference.em.EMModel` methods. Every subclass has the parameters
    ``tol``, ``max_iter``, ``n_init``, ``chunk_size``, ``seed`` and ``random_state``.
    """

    local_keys: tuple[str, ...] = ()
    merge_keys: tuple[str, ...] = ()
    _fitted_attr = "params_"
    _count_name = "n_components"

    # ---------------------------------------------------------------- parameters
    def _check_params(self) -> None:
        """Validate the parameters (at ``fit``, never in ``__init__`` or ``set_params``)."""
        check_count(self._count_name, getattr(self, self._count_name))
        check_count("max_iter", self.max_iter)
        check_count("n_init", self.n_init)
        check_positive("tol", self.tol, allow_zero=True)
        if self.chunk_size is not None:
            check_count("chunk_size", self.chunk_size)
        self._seed_source()

    def _seed_source(self) -> int | np.random.RandomState | None:
        """The checked seed: ``seed`` and ``random_state`` name the same thing (the library's name
        and scikit-learn's); at most one may be set."""
        seed, state = self.seed, self.random_state
        if seed is not None and state is not None:
            raise ValueError(
                f"seed, random_state: expected at most one of them (they name the same seed), "
                f"got seed={seed!r} and random_state={state!r}"
            )
        if seed is not None:
            return check_count("seed", seed, minimum=0)
        if state is None or isinstance(state, np.random.RandomState):
            return state
        return check_count("random_state", state, minimum=0)

    def _generator(self) -> torch.Generator:
        """A CPU generator seeded by ``seed``/``random_state``: an integer seeds it, a NumPy
        ``RandomState`` draws its seed, ``None`` draws it from torch's global RNG (so
        ``pyro.set_rng_seed`` makes it reproducible)."""
        source = self._seed_source()
        if isinstance(source, np.random.RandomState):
            seed = int(source.randint(np.iinfo(np.int32).max))
        elif source is None:
            seed = int(torch.randint(0, 2**62, ()))
        else:
            seed = source
        return torch.Generator().manual_seed(seed)

    # ---------------------------------------------------------------- data
    def _input(self, x: object, *, reset: bool, name: str = "x", min_rows: int = 1) -> Tensor:
        """``x`` checked and as a tensor. ``reset`` (in ``fit``) records ``n_features_in_``
        (and ``feature_names_in_`` for frames) and the kind of the fitted arrays (NumPy unless
        ``x`` is a tensor); otherwise ``x`` must have as many features as in ``fit``."""
        if isinstance(x, Tensor):
            n_features = None if reset else self.n_features_in_
            tensor = check_data(x, name=name, n_features=n_features, min_rows=min_rows)
            array = None
            if reset:
                self.__dict__.pop("feature_names_in_", None)
        else:
            array = validate_data(
                self, x, reset=reset, dtype=[np.float64, np.float32], ensure_min_samples=min_rows
            )
            tensor = to_tensor(array)
        if reset:
            self.n_features_in_ = tensor.shape[1]
            self._numpy_out = array is not None
        return self._check_values(tensor, name, array)

    def _check_values(self, x: Tensor, name: str, array: np.ndarray | None) -> Tensor:
        """The model's own demands on the values (binary, non-negative...); ``array`` is the
        NumPy array ``x`` came from, if any."""
        return x

    def _export(self, value: Tensor) -> ArrayLike:
        """A fitted array in the kind of the data given to ``fit``."""
        return value.detach().cpu().numpy() if getattr(self, "_numpy_out", False) else value

    # ---------------------------------------------------------------- chunks and EM
    def _width(self, n_features: int) -> int:
        """Intermediate values per row of the E-step (to size chunks)."""
        return getattr(self, self._count_name) + n_features

    def _rows(self, n_features: int) -> int:
        """Rows per chunk: ``chunk_size``, or (``None``) enough rows for about :math:`2^{19}`
        intermediate values, which keeps the temporaries in cache (on 2 CPU cores this is 2-3x
        faster than one chunk of 100k rows)."""
        if self.chunk_size is not None:
            return check_count("chunk_size", self.chunk_size)
        return max(1024, 2**19 // max(self._width(n_features), 1))

    def _driver(self, n_features: int) -> EM:
        """The EM driver with the current parameters."""
        return EM(
            max_iter=self.max_iter,
            tol=self.tol,
            chunk_size=self._rows(n_features),
            n_init=self.n_init,
        )

    def _map_rows(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """``fn`` applied to chunks of rows and concatenated."""
        rows = self._rows(x.shape[1])
        return torch.cat([fn(x[part]) for part in chunk_slices(len(x), rows)])

    def _fit_em(self, em: EM, x: Tensor, init: Callable[[int], Params]) -> EMResult:
        """``em.fit``, warning :class:`ConvergenceWarning` when the best run did not converge."""
        result = em.fit(self, x, init, warn=False)
        if not result.converged:
            warnings.warn(
                f"{type(self).__name__}: EM did not converge in max_iter={em.max_iter} "
                f"iterations (last change of the objective above tol={em.tol}); raise max_iter "
                "or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        return result

    # EMModel default
    def converged(self, change: float, old: Params, new: Params, tol: float) -> bool:
        """Converged when the mean objective changed by less than ``tol`` (scikit-learn's rule)."""
        return abs(change) < tol

    # ---------------------------------------------------------------- fitted state
    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` ran (scikit-learn's ``check_is_fitted`` asks this)."""
        return hasattr(self, self._fitted_attr)

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(x) first"
            )

    def _store(self, result: EMResult) -> None:
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = list(result.lower_bounds)
        self.monotone_violations_ = list(result.decreases)


class ProbabilisticMixture(DensityMixin, MixtureEstimator):
    """A mixture with a density: scores, responsibilities, predictions and information criteria
    from ``_weighted_log_prob``."""

    def _params(self) -> Params:
        """The fitted parameters as tensors."""
        raise NotImplementedError

    def _weighted_log_prob(self, x: Tensor, params: Params) -> Tensor:
        """:math:`\\log w_k + \\log p(x_n \\mid k)`, shape ``(K, n)``."""
        raise NotImplementedError

    def n_parameters(self) -> int:
        """The number of free parameters (for BIC/AIC)."""
        raise NotImplementedError

    def _rows_map(self, fn: Callable[[Tensor], Tensor], x: object) -> Tensor:
        self._check_fitted()
        xt = self._input(x, reset=False)
        params = self._params()
        return self._map_rows(lambda c: fn(self._weighted_log_prob(c, params)), xt)

    def score_samples(self, x: ArrayLike) -> ArrayLike:
        r"""The log-density :math:`\log p(x_n)` of every row."""
        return like_input(self._rows_map(lambda lp: lp.logsumexp(0), x), x)

    def score(self, x: ArrayLike, y: object = None) -> float:
        """The mean per-sample log-likelihood of ``x`` (``y`` is ignored)."""
        return float(self._rows_map(lambda lp: lp.logsumexp(0), x).mean())

    def predict_proba(self, x: ArrayLike) -> ArrayLike:
        r"""Responsibilities :math:`p(k \mid x_n)`, shape ``(n, K)``."""
        return like_input(self._rows_map(lambda lp: lp.softmax(0).T, x), x)

    def predict(self, x: ArrayLike) -> ArrayLike:
        """The most likely component of every row."""
        return like_input(self._rows_map(lambda lp: lp.argmax(0), x), x)

    def fit_predict(self, x: ArrayLike, y: object = None) -> ArrayLike:
        """``fit(x)``, then the most likely component of every row (``y`` is ignored)."""
        return self.fit(x).predict(x)

    def bic(self, x: ArrayLike) -> float:
        r"""Bayesian information criterion :math:`-2 \log L + p \log n` (lower is better)."""
        return -2 * self.score(x) * len(x) + self.n_parameters() * math.log(len(x))

    def aic(self, x: ArrayLike) -> float:
        r"""Akaike information criterion :math:`-2 \log L + 2p` (lower is better)."""
        return -2 * self.score(x) * len(x) + 2 * self.n_parameters()


@config_enumerate
def enumerated_mixture(
    name: str,
    x: Tensor,
    weights: Tensor,
    component: Callable[[Tensor], dist.Distribution],
    subsample_size: int | None = None,
) -> None:
    r"""A mixture likelihood as a Pyro model: in the plate ``f"{name}.data"`` over the rows of
    ``x``, ``z ~ Categorical(weights)`` (site ``f"{name}.assignment"``, enumerated) and
    ``x ~ component(z)`` (site ``f"{name}.x"``), so ``TraceEnum_ELBO`` with an empty guide computes
    :math:`\sum_n \log \sum_k w_k\, p(x_n \mid k)` exactly."""
    with pyro.plate(f"{name}.data", len(x), subsample_size=subsample_size) as idx:
        z = pyro.sample(f"{name}.assignment", dist.Categorical(weights))
        pyro.sample(f"{name}.x", component(z), obs=x[idx])
