"""Exceptions and warnings raised on numerical failure or misuse (DESIGN.md convention 9)."""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "InversionError", "NotFittedError"]


class InversionError(RuntimeError):
    """A fixed-point inverse did not reach its tolerance.

    Attributes:
        residual: the largest :math:`|x + g(x) - y|` entry at the last iterate.
        iterations: the number of iterations run.
    """

    def __init__(self, message: str, residual: float, iterations: int) -> None:
        super().__init__(message)
        self.residual = residual
        self.iterations = iterations


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` (scikit-learn's convention: a ``ValueError`` and an
    ``AttributeError``)."""


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped at its iteration limit before its convergence test passed."""
