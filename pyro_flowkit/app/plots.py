"""PNG figures of densities and samples (needs the ``plot`` extra: matplotlib)."""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from pyro_flowkit.diagnostics import import_arviz

__all__ = [
    "plot_density_2d",
    "plot_gaussian_mixture_2d",
    "plot_image_grids",
    "plot_samples_2d",
    "plot_trace",
]


def _pyplot():  # noqa: ANN202
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install 'pyro-flowkit[plot]'") from e
    return plt


@torch.no_grad()
def plot_density_2d(
    log_prob_fn: Callable[[Tensor], Tensor],
    data: Tensor,
    path: str | Path,
    *,
    limit: float = 4.5,
    resolution: int = 200,
    title: str = "",
) -> Path:
    """Save the model density on ``[-limit, limit]^2`` next to a scatter of ``data`` as a PNG."""
    plt = _pyplot()
    axis = torch.linspace(-limit, limit, resolution, dtype=data.dtype)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    density = log_prob_fn(grid).exp().reshape(resolution, resolution).cpu().numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4))
    extent = (-limit, limit, -limit, limit)
    left.scatter(*data.cpu().numpy().T, s=1, alpha=0.4)
    left.set(xlim=extent[:2], ylim=extent[2:], title="data", aspect="equal")
    right.imshow(density, origin="lower", extent=extent, cmap="viridis")
    _title(right, title or "model density")
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, plt, path)


def plot_image_grids(
    grids: Sequence[tuple[str, Tensor]],
    path: str | Path,
    *,
    ncol: int = 8,
    vmax: float = 1.0,
    panels_per_row: int = 3,
) -> Path:
    """Save one panel per ``(title, images)`` pair (images ``(n, 1, H, W)`` or ``(n, H, W)``, tiled
    ``ncol`` to a row), at most ``panels_per_row`` panels side by side."""
    plt = _pyplot()
    tiles = [_tile(images.detach().cpu(), ncol) for _, images in grids]
    cols = min(panels_per_row, len(grids))
    rows = -(-len(grids) // cols)
    aspect = max(t.shape[0] / t.shape[1] for t in tiles)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.4 * cols, (3.4 * aspect + 0.5) * rows), squeeze=False
    )
    for ax in axes.ravel()[len(grids) :]:
        ax.axis("off")
    for ax, (title, _), tile in zip(axes.ravel(), grids, tiles, strict=False):
        ax.imshow(tile.numpy(), cmap="gray", vmin=0, vmax=vmax)
        ax.set(xticks=[], yticks=[])
        _title(ax, title)
    return _save(fig, plt, path)


def plot_samples_2d(
    panels: Sequence[tuple[str, Tensor]], path: str | Path, *, limit: float = 4.5
) -> Path:
    """Save one scatter panel per ``(title, points)`` pair (points ``(n, 2)``) on one square."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (title, points) in zip(axes[0], panels, strict=True):
        ax.scatter(*points.detach().cpu().numpy().T, s=2, alpha=0.5)
        ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal")
        _title(ax, title)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, plt, path)


def plot_gaussian_mixture_2d(
    panels: Sequence[tuple[str, Tensor, Tensor, Tensor]],
    points: Tensor,
    path: str | Path,
    *,
    n_std: float = 2.0,
) -> Path:
    r"""Save one panel per ``(title, weights, means, covariances)`` fit (``(K,)``, ``(K, 2)``,
    ``(K, 2, 2)``): a scatter of ``points`` with the ``n_std``-standard-deviation ellipse of every
    component, its line width proportional to the weight. The ellipse's axes are
    :math:`n \sqrt{\lambda_i} v_i` for the eigenpairs of :math:`\Sigma_k`."""
    plt = _pyplot()
    from matplotlib.patches import Ellipse

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, weights, means, covariances) in zip(axes[0], panels, strict=True):
        ax.scatter(*points.detach().cpu().numpy().T, s=1, alpha=0.3, color="gray")
        values, vectors = torch.linalg.eigh(covariances.detach().cpu().double())
        angles = torch.rad2deg(torch.atan2(vectors[:, 1, 1], vectors[:, 0, 1]))
        rows = zip(weights.tolist(), means.tolist(), values, angles.tolist(), strict=True)
        for w, mu, lam, angle in rows:
            width, height = (2 * n_std * lam.clamp(min=0).sqrt()).flip(0).tolist()
            ax.add_patch(Ellipse(mu, width, height, angle=angle, fill=False, color="C3",
                                 lw=0.5 + 10 * w))  # fmt: skip
        ax.scatter(*means.detach().cpu().numpy().T, marker="x", color="C3")
        ax.set(aspect="equal")
        _title(ax, title)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, plt, path)


def plot_trace(idata: object, path: str | Path, **kwargs: object) -> Path:
    """Save ``arviz.plot_trace(idata, **kwargs)`` (densities and traces per chain) as a PNG."""
    plt = _pyplot()
    az = import_arviz()
    with warnings.catch_warnings():  # arviz 0.x calls a helper that matplotlib >= 3.11 deprecates
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        axes = az.plot_trace(idata, **kwargs)
    return _save(axes.ravel()[0].figure, plt, path)


def _tile(images: Tensor, ncol: int) -> Tensor:
    images = images.reshape(len(images), *images.shape[-2:])
    n, h, w = images.shape
    nrow = -(-n // ncol)
    padded = torch.zeros(nrow * ncol, h + 1, w + 1)
    padded[:n, :h, :w] = images
    return padded.reshape(nrow, ncol, h + 1, w + 1).permute(0, 2, 1, 3).reshape(nrow * (h + 1), -1)


def _title(ax: object, title: str, width: int = 34) -> None:
    """A panel title wrapped to ``width`` characters, so that neighbours do not overlap."""
    ax.set_title("\n".join(textwrap.wrap(title, width)) if title else "")


def _save(fig: object, plt: object, path: str | Path) -> Path:
    """Save with every title and label inside the picture (``bbox_inches="tight"``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path
