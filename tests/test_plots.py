"""The demo's pictures: readable layouts, whatever the number of panels or the title lengths."""

import matplotlib.image
import torch

from pyro_flowkit.app.mixture_demo import gmm_demo
from pyro_flowkit.app.plots import plot_image_grids


def test_many_image_panels_wrap_into_rows_not_a_strip(tmp_path):
    """Six panels made a 1920x210 strip; at most three now stand side by side."""
    grids = [(f"panel {i}", torch.rand(32, 1, 8, 8)) for i in range(6)]
    height, width, _ = matplotlib.image.imread(plot_image_grids(grids, tmp_path / "g.png")).shape
    assert width / height < 3


def test_the_mixture_demo_keeps_its_titles_inside_the_picture(tmp_path):
    """The demo's mixture picture cut its titles at the top edge; the saved box now includes
    every title: the top rows of pixels are blank."""
    gmm_demo(tmp_path, svi_steps=5)
    image = matplotlib.image.imread(tmp_path / "gmm_pinwheel.png")
    assert (image[:3, :, :3] > 0.99).all(), "ink at the very top edge: a clipped title"
