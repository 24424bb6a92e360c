r"""PCA with scalar-quantised coefficients: the reconstruction a bit budget buys without
learning a code, the baseline of a VQ-VAE's discrete code.

With a budget of :math:`B` bits per example, :math:`k` principal components each get
:math:`b = \lfloor B / k \rfloor` bits: every coefficient is replaced by the nearest of
:math:`2^b` levels fitted to the training coefficients by Lloyd's algorithm (the optimal
scalar quantiser of their distribution, Lloyd 1982). :meth:`PCACodec.fit` tries every
:math:`b` from 1 to ``max_bits`` (so :math:`k = \lfloor B / b \rfloor`) and keeps the split with
the lowest training error.

References:
    | Least squares quantization in PCM (Lloyd, 1982) https://doi.org/10.1109/TIT.1982.1056489
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyro_flowkit.validation import check_count, check_finite_tensor

__all__ = ["PCACodec"]


def _lloyd_1d(values: Tensor, levels: int, iterations: int) -> Tensor:
    """``levels`` sorted reconstruction levels of the 1-D ``values`` (Lloyd's algorithm from
    the quantiles)."""
    q = (torch.arange(levels, dtype=values.dtype, device=values.device) + 0.5) / levels
    centres = torch.quantile(values, q)
    for _ in range(iterations):
        assign = (values[:, None] - centres[None]).abs().argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, values)
        counts = torch.bincount(assign, minlength=levels).to(values.dtype)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return centres.sort().values


class PCACodec:
    r"""Encode vectors with ``bits`` bits: :math:`k` principal coefficients, each quantised to
    :math:`b` bits (:math:`kb \le` ``bits``), the split chosen on the training data.

    Arguments:
        bits: the budget :math:`B` per example.
        max_bits: the largest :math:`b` tried.
        iterations: Lloyd iterations per coefficient.

    Example:
        >>> x = torch.randn(500, 6) @ torch.randn(6, 6)
        >>> codec = PCACodec(bits=12).fit(x)
        >>> codec.components * codec.bits_per_component <= 12
        True
        >>> codec.reconstruct(x).shape
        torch.Size([500, 6])
    """

    def __init__(self, bits: int, max_bits: int = 8, iterations: int = 30) -> None:
        self.bits = check_count("bits", bits)
        self.max_bits = check_count("max_bits", max_bits)
        self.iterations = check_count("iterations", iterations, minimum=0)

    def fit(self, x: Tensor) -> PCACodec:
        """Fit the mean, the components and the quantisers to ``x`` ``(N, D)``."""
        x = check_finite_tensor("x", x).flatten(1)
        self.mean_ = x.mean(0)
        _, _, vt = torch.linalg.svd(x - self.mean_, full_matrices=False)
        best = None
        for b in range(1, min(self.bits, self.max_bits) + 1):
            k = min(self.bits // b, vt.shape[0])
            basis = vt[:k]
            coefficients = (x - self.mean_) @ basis.T
            levels = [_lloyd_1d(c, 2**b, self.iterations) for c in coefficients.T]
            error = self._error(x, basis, levels)
            if best is None or error < best[0]:
                best = (error, basis, levels, b)
        _, self.basis_, self.levels_, self.bits_per_component = best
        return self

    @property
    def components(self) -> int:
        """:math:`k`."""
        return len(self.basis_)

    def _error(self, x: Tensor, basis: Tensor, levels: list[Tensor]) -> float:
        return float(
            (self._decode(self._encode(x, basis, levels), basis, levels) - x).pow(2).mean()
        )

    def _encode(self, x: Tensor, basis: Tensor, levels: list[Tensor]) -> Tensor:
        c = (x - self.mean_) @ basis.T
        return torch.stack(
            [(c[:, j, None] - lv[None]).abs().argmin(1) for j, lv in enumerate(levels)], 1
        )

    def _decode(self, codes: Tensor, basis: Tensor, levels: list[Tensor]) -> Tensor:
        c = torch.stack([lv[codes[:, j]] for j, lv in enumerate(levels)], 1)
        return c @ basis + self.mean_

    def encode(self, x: Tensor) -> Tensor:
        """Integer codes ``(N, k)``, each in ``0 .. 2**b - 1``."""
        return self._encode(x.flatten(1), self.basis_, self.levels_)

    def decode(self, codes: Tensor) -> Tensor:
        """Reconstructions ``(N, D)`` of codes."""
        return self._decode(codes, self.basis_, self.levels_)

    def reconstruct(self, x: Tensor) -> Tensor:
        """``decode(encode(x))``, in the shape of ``x``."""
        return self.decode(self.encode(x)).reshape(x.shape)
