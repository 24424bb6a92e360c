"""Offline data: scikit-learn's bundled digits, 2-D toy densities, and uniform dequantisation.

Nothing here downloads anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from pyro_flowkit.validation import check_count

__all__ = [
    "DIGITS_LEVELS",
    "TOY_2D",
    "dequantize",
    "load_breast_cancer",
    "load_digits",
    "toy_2d",
]

DIGITS_LEVELS = 17
"""The digits hold integer intensities 0..16."""

_DIGITS_TEST_SIZE = 300


@lru_cache(maxsize=1)
def _digits_split() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits

    images = sk_load_digits().images.astype(np.float32)
    order = np.random.RandomState(0).permutation(len(images))
    return images[order[_DIGITS_TEST_SIZE:]], images[order[:_DIGITS_TEST_SIZE]]


def load_digits(split: str = "train", flatten: bool = False) -> Tensor:
    """scikit-learn's 8x8 handwritten digits as a float tensor of integer levels 0..16.

    The 1797 images are split once with seed 0 into 1497 for training and 300 for testing.

    Arguments:
        split: ``"train"`` or ``"test"``.
        flatten: return ``(N, 64)`` instead of ``(N, 1, 8, 8)``.

    Returns:
        A tensor of the default dtype.

    Example:
        >>> load_digits("test").shape
        torch.Size([300, 1, 8, 8])
    """
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    train, test = _digits_split()
    x = torch.as_tensor(train if split == "train" else test).to(torch.get_default_dtype())
    return x.reshape(len(x), 64) if flatten else x.reshape(len(x), 1, 8, 8)


def load_breast_cancer(split: str = "train") -> tuple[Tensor, Tensor]:
    """scikit-learn's breast cancer data (569 x 30) for Bayesian logistic regression.

    Split once with seed 0 into 469 training and 100 test rows; every feature is standardised
    with the training rows' mean and standard deviation.

    Arguments:
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(x, y)``: features ``(n, 30)`` and labels ``(n,)`` in {0, 1}, of the default dtype.

    Example:
        >>> x, y = load_breast_cancer("test")
        >>> x.shape, y.shape
        (torch.Size([100, 30]), torch.Size([100]))
    """
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    from sklearn.datasets import load_breast_cancer as sk_load

    x, y = sk_load(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(x))
    train, test = order[100:], order[:100]
    mean, std = x[train].mean(0), x[train].std(0)
    rows = train if split == "train" else test
    dtype = torch.get_default_dtype()
    features = torch.as_tensor((x[rows] - mean) / std, dtype=dtype)
    return features, torch.as_tensor(y[rows], dtype=dtype)


def dequantize(
    v: Tensor, num_levels: int = DIGITS_LEVELS, generator: torch.Generator | None = None
) -> Tensor:
    r"""Uniform dequantisation :math:`y = (v + u) / L`, :math:`u \sim U[0, 1)`, into :math:`[0, 1)`
    (values that round up to 1 are set to the largest float below 1).

    A density :math:`p` fitted to :math:`y` bounds the discrete log-likelihood of :math:`v`:
    :math:`\log P(v) \ge \mathbb{E}_u[\log p(y)] - D \log L` (Theis et al., 2016).

    Arguments:
        v: integer levels in ``0 .. num_levels - 1`` (any floating tensor).
        num_levels: :math:`L`.
        generator: optional random generator for the noise.
    """
    if not v.is_floating_point():
        raise TypeError(f"v: expected a floating tensor, got {v.dtype}")
    check_count("num_levels", num_levels)
    noise = torch.rand(v.shape, generator=generator, dtype=v.dtype, device=v.device)
    y = (v + noise) / num_levels
    # (L - 1 + u) / L rounds up to exactly 1 for u close to 1 (float32: ~7 in 10 million values)
    below_one = torch.nextafter(torch.ones((), dtype=y.dtype), torch.zeros((), dtype=y.dtype))
    return y.clamp_(max=below_one.item())


def _moons(n: int, g: torch.Generator) -> Tensor:
    n_out = n // 2
    t = torch.rand(n, generator=g) * math.pi
    upper = torch.arange(n) < n_out
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    pts = torch.stack([x, y], -1) + 0.05 * torch.randn(n, 2, generator=g)
    return (pts - torch.tensor([0.5, 0.25])) * 2


def _circles(n: int, g: torch.Generator) -> Tensor:
    t = torch.rand(n, generator=g) * 2 * math.pi
    radius = torch.where(torch.arange(n) % 2 == 0, 3.0, 1.5)
    pts = radius[:, None] * torch.stack([torch.cos(t), torch.sin(t)], -1)
    return pts + 0.08 * torch.randn(n, 2, generator=g)


def _rings(n: int, g: torch.Generator) -> Tensor:
    t = torch.rand(n, generator=g) * 2 * math.pi
    radius = (torch.randint(0, 4, (n,), generator=g) + 1).to(torch.float32)
    pts = radius[:, None] * torch.stack([torch.cos(t), torch.sin(t)], -1)
    return pts + 0.08 * torch.randn(n, 2, generator=g)


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    angles = torch.randint(0, 8, (n,), generator=g) * (math.pi / 4)
    centres = 2.8 * torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    return centres + 0.35 * torch.randn(n, 2, generator=g)


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    x1 = torch.rand(n, generator=g) * 4 - 2
    x2 = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g) * 2.0
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], -1) * 2


def _pinwheel(n: int, g: torch.Generator) -> Tensor:
    arms, rate = 5, 0.25
    labels = torch.randint(0, arms, (n,), generator=g)
    feats = torch.randn(n, 2, generator=g) * torch.tensor([0.3, 0.1]) + torch.tensor([1.0, 0.0])
    angle = labels * (2 * math.pi / arms) + rate * torch.exp(feats[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    rotated = torch.stack(
        [c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], -1
    )
    return 2 * rotated


def _spirals(n: int, g: torch.Generator) -> Tensor:
    t = torch.sqrt(torch.rand(n, generator=g)) * 3 * math.pi
    sign = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)[:, None]
    pts = sign * torch.stack([-torch.cos(t) * t, torch.sin(t) * t], -1) / 2.5
    return pts + 0.1 * torch.randn(n, 2, generator=g)


TOY_2D: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "moons": _moons,
    "circles": _circles,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "rings": _rings,
    "2spirals": _spirals,
}
"""The 2-D toy densities by name; each lies roughly within [-4, 4]^2."""


def toy_2d(name: str, n: int, seed: int = 0) -> Tensor:
    """``n`` points of a 2-D toy density (the usual benchmarks of flow papers such as FFJORD).

    Arguments:
        name: one of ``moons``, ``circles``, ``8gaussians``, ``checkerboard``, ``pinwheel``,
            ``rings``, ``2spirals``.
        n: number of points.
        seed: seed of the generator (the same seed gives the same points).

    Returns:
        A tensor of shape ``(n, 2)`` and the default dtype, in random order (any prefix is a
        sample of the whole density).

    Example:
        >>> toy_2d("moons", 5).shape
        torch.Size([5, 2])
    """
    if name not in TOY_2D:
        raise ValueError(f"name: expected one of {sorted(TOY_2D)}, got {name!r}")
    check_count("n", n)
    g = torch.Generator().manual_seed(seed)
    points = TOY_2D[name](n, g)
    return points[torch.randperm(n, generator=g)].to(torch.get_default_dtype())  # mix the parts
