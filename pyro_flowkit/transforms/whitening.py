r"""BERT-whitening as a linear flow: the maximum-likelihood Gaussian, fitted in closed form.

References:
    | Whitening Sentence Representations for Better Semantics and Faster Retrieval
    | (Su, Cao, Liu & Ou, 2021) https://arxiv.org/abs/2103.15316
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from pyro_flowkit.transforms._base import FlowTransform
from pyro_flowkit.validation import (
    check_choice,
    check_count,
    check_finite_tensor,
    check_interval,
    check_positive,
)

__all__ = ["Whitening"]


class Whitening(FlowTransform):
    r"""An affine flow :math:`x = \mu + (z + b)\,\Lambda^{1/2} U^\top` whose inverse whitens data.

    With the covariance :math:`\Sigma = U \Lambda U^\top` of the data (eigenvalues
    :math:`\lambda_1 \ge \dots \ge \lambda_D`, columns of :math:`U` the principal axes) the
    inverse map (data -> base) is BERT-whitening,

    .. math::

        z = (x - \mu)\, U\, \Lambda_\epsilon^{-1/2} - b, \qquad
        \Lambda_\epsilon = \operatorname{diag}(\lambda_i + \epsilon \bar\lambda), \qquad
        \log|\det \partial x / \partial z| = \tfrac12 \sum_i \log(\lambda_i + \epsilon\bar\lambda),

    with :math:`\bar\lambda = \operatorname{tr}\Sigma / D` the mean variance, so ``eps`` is a
    variance floor relative to the data's scale: the map is finite for a singular covariance
    (fewer rows than dimensions) and unchanged when the data are rescaled. With a standard
    normal base and ``eps=0`` the flow's density is :math:`\mathcal{N}(\mu, \Sigma)`, the
    maximum-likelihood Gaussian (with ``correction=0``), so it can start any flow: whitening on
    the data side, couplings after it. The first :math:`k` coordinates of :math:`z`
    (:meth:`project`) are PCA whitening, as ``sklearn.decomposition.PCA(k, whiten=True)`` with
    ``correction=1``, up to the signs of the axes (here the largest entry of each axis is
    positive).

    :meth:`from_data` fits it from one tensor and :meth:`partial_fit` from a stream of batches:
    the mean and the scatter matrix :math:`\sum (x - \mu)(x - \mu)^\top` are accumulated in
    float64 (Chan et al.'s pairwise update), so the streamed fit equals the batch one. A fit
    sets the buffers ``center`` (:math:`\mu`) and ``rotation`` (:math:`U`) and the parameters
    ``log_scale`` (:math:`\frac12 \log \Lambda_\epsilon`) and ``shift`` (:math:`b = 0`).
    Training by likelihood moves the parameters only, so the inverse and the log-det stay exact
    and every step is taken in whitened units: a mean learned in data units would move by the
    optimiser's step size along every axis, far beyond the data's spread along the axes of tiny
    variance (a flow after whitening then diverges on real sentence vectors, whose covariance is
    often singular). A new ``Whitening`` is the identity. The accumulators are saved in
    ``state_dict`` (extra state), so a loaded transform can go on streaming.

    Arguments:
        dim: the event's size :math:`D`.
        eps: the variance floor :math:`\epsilon`, relative to the mean variance (``0``: none; a
            singular covariance then raises ``ValueError``).
        correction: ``0`` divides the scatter by :math:`N` (maximum likelihood), ``1`` by
            :math:`N - 1` (the unbiased covariance, scikit-learn's PCA).

    References:
        | Whitening Sentence Representations for Better Semantics and Faster Retrieval
        | (Su, Cao, Liu & Ou, 2021) https://arxiv.org/abs/2103.15316
        | Updating Formulae and a Pairwise Algorithm for Computing Sample Variances
        | (Chan, Golub & LeVeque, 1979) https://doi.org/10.1007/978-3-642-51461-6_3

    Example:
        >>> x = torch.randn(500, 3) @ torch.tensor([[2.0, 0, 0], [1, 1, 0], [0, 1, 0.5]]) + 5
        >>> w = Whitening.from_data(x)
        >>> z = w.inv(x)
        >>> torch.allclose(torch.cov(z.T, correction=0), torch.eye(3), atol=1e-4)
        True
        >>> w.project(x, 2).shape
        torch.Size([500, 2])
    """

    def __init__(self, dim: int, eps: float = 1e-6, correction: int = 0) -> None:
        dim = check_count("dim", dim)
        super().__init__(dim)
        self.eps = check_positive("eps", eps, allow_zero=True)
        self.correction = check_choice("correction", correction, (0, 1))
        self.shift = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("rotation", torch.eye(dim))
        self._count = 0
        self._mean: Tensor | None = None  # float64 accumulators
        self._scatter: Tensor | None = None

    @classmethod
    def from_data(cls, x: Tensor, eps: float = 1e-6, correction: int = 0) -> Whitening:
        """The whitening of the rows of ``x`` (shape ``batch + (D,)``), in ``x``'s dtype and
        on its device."""
        if not isinstance(x, Tensor) or x.dim() == 0:
            raise ValueError(f"x: expected a tensor of shape (N, D), got {_shape(x)}")
        w = cls(x.shape[-1], eps, correction)
        if x.is_floating_point():
            w = w.to(device=x.device, dtype=x.dtype)
        return w.partial_fit(x)

    @property
    def count(self) -> int:
        """The number of rows fitted so far."""
        return self._count

    @property
    def mean(self) -> Tensor:
        r"""The float64 mean :math:`\mu` of the rows fitted so far."""
        return self._fitted()[0]

    @property
    def covariance(self) -> Tensor:
        r"""The float64 covariance :math:`\Sigma` of the rows fitted so far (with
        ``correction``)."""
        return self._fitted()[1] / (self._count - self.correction)

    def _fitted(self) -> tuple[Tensor, Tensor]:
        if self._mean is None or self._scatter is None:
            raise RuntimeError("Whitening: no data yet; call partial_fit(x) or from_data(x)")
        return self._mean, self._scatter

    @torch.no_grad()
    def partial_fit(self, x: Tensor, refit: bool = True) -> Whitening:
        """Add the rows of ``x`` (shape ``batch + (D,)``) to the statistics and, with ``refit``,
        set the map from all the rows seen so far; returns ``self``.

        Raises ``ValueError`` for a non-finite entry (nothing is added) and, on refitting, when
        the rows seen so far have no variance, or too few rows for ``correction``, or a singular
        covariance with ``eps=0`` (the rows stay added; the map keeps its previous values).
        """
        self._check_input(x, "x")
        check_finite_tensor("x", x)
        rows = x.detach().reshape(-1, self.event_shape[0]).to(self.center.device, torch.float64)
        if len(rows):
            self._accumulate(rows)
        if refit:
            self.refit()
        return self

    def _accumulate(self, rows: Tensor) -> None:
        """Merge the rows' count, mean and scatter into the running ones (Chan et al. 1979)."""
        n_b, mean_b = len(rows), rows.mean(0)
        centred = rows - mean_b
        scatter_b = centred.T @ centred
        if self._mean is None or self._scatter is None:
            self._count, self._mean, self._scatter = n_b, mean_b, scatter_b
            return
        n_a = self._count
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._scatter = self._scatter + scatter_b + torch.outer(delta, delta) * (n_a * n_b / n)
        self._count = n

    @torch.no_grad()
    def refit(self) -> Whitening:
        """Set ``center``, ``rotation``, ``log_scale`` and ``shift`` (to 0) from the rows seen so
        far (the eigendecomposition of their covariance, in float64); returns ``self``."""
        mean, _ = self._fitted()
        if self._count <= self.correction:
            raise ValueError(
                f"x: expected at least {self.correction + 1} rows for correction="
                f"{self.correction}, got {self._count}"
            )
        variances, axes = _principal_axes(self.covariance)
        self.log_scale.copy_(0.5 * self._floored(variances).log())
        self.shift.zero_()
        self.center.copy_(mean)
        self.rotation.copy_(axes)
        return self

    def _floored(self, variances: Tensor) -> Tensor:
        """The eigenvalues plus the floor ``eps`` times their mean, or ``ValueError`` if that
        leaves a zero (data without variance, or a singular covariance with ``eps=0``)."""
        mean_variance = variances.mean()
        if mean_variance <= 0:
            raise ValueError(
                f"x: expected rows that vary, got {self._count} rows with zero variance"
            )
        singular = variances <= variances[0] * len(variances) * torch.finfo(torch.float64).eps
        if self.eps == 0 and bool(singular.any()):
            rank = int((~singular).sum())
            raise ValueError(
                f"eps: expected a positive variance floor for a singular covariance (rank "
                f"{rank} of {len(variances)}, from {self._count} rows), got 0"
            )
        return variances + self.eps * mean_variance

    def project(self, x: Tensor, k: int | None = None) -> Tensor:
        r"""The first ``k`` whitened coordinates of ``x`` (all ``D`` when ``None``): PCA
        whitening, :math:`(x - \mu)\, U_{:, :k}\, \Lambda_{\epsilon, :k}^{-1/2} - b_{:k}`."""
        self._check_input(x, "x")
        self._check_dtype(x, "x")
        dim = self.event_shape[0]
        k = dim if k is None else int(check_interval("k", check_count("k", k), 1, dim))
        z = ((x - self.center) @ self.rotation[:, :k]) * torch.exp(-self.log_scale[:k])
        return z - self.shift[:k]

    def _ladj(self, t: Tensor) -> Tensor:
        return self.log_scale.sum().expand(t.shape[:-1])

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = ((z + self.shift) * self.log_scale.exp()) @ self.rotation.T + self.center
        return x, self._ladj(z)

    def _backward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = ((x - self.center) @ self.rotation) * torch.exp(-self.log_scale) - self.shift
        return z, self._ladj(x)

    def get_extra_state(self) -> dict:
        """The float64 accumulators, saved with ``state_dict``."""
        if self._mean is None:
            return {"count": 0}
        return {"count": self._count, "mean": self._mean, "scatter": self._scatter}

    def set_extra_state(self, state: Mapping) -> None:
        """Restore the accumulators saved by :meth:`get_extra_state`."""
        self._count = int(state["count"])
        self._mean, self._scatter = (
            (state["mean"].to(self.center.device, torch.float64),
             state["scatter"].to(self.center.device, torch.float64))
            if self._count else (None, None)
        )  # fmt: skip

    def _apply(self, fn: Callable, *args: object, **kwargs: object) -> Whitening:
        super()._apply(fn, *args, **kwargs)
        if self._mean is not None and self._scatter is not None:  # moved, but kept in float64
            device = self.center.device
            self._mean, self._scatter = self._mean.to(device), self._scatter.to(device)
        return self

    def extra_repr(self) -> str:
        return f"dim={self.event_shape[0]}, eps={self.eps:g}, correction={self.correction}"


def _principal_axes(covariance: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending, clamped at 0) and unit eigenvectors (columns, each with its
    largest-magnitude entry positive) of a symmetric matrix."""
    variances, axes = torch.linalg.eigh(covariance)
    variances, axes = variances.flip(0).clamp_min(0), axes.flip(1)
    largest = axes.gather(0, axes.abs().argmax(0, keepdim=True))
    return variances, axes * torch.sign(largest)


def _shape(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
