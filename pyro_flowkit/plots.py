"""Deprecated: moved to :mod:`pyro_flowkit.app.plots`; this alias will be removed in 0.3."""

from pyro_flowkit._deprecation import warn_moved_module
from pyro_flowkit.app.plots import (  # noqa: F401
    plot_density_2d,
    plot_gaussian_mixture_2d,
    plot_image_grids,
    plot_samples_2d,
    plot_trace,
)

__all__ = [
    "plot_density_2d",
    "plot_gaussian_mixture_2d",
    "plot_image_grids",
    "plot_samples_2d",
    "plot_trace",
]

warn_moved_module(__name__)
