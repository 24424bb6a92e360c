"""Pyro models (``PyroModule``s with ``model()``/``guide()``) and EM-fitted mixtures.

Installed as ``pyro_flowkit.models``.
"""

from pyro_flowkit.models.bernoulli_mixture import BernoulliMixture
from pyro_flowkit.models.energy import EnergyModel, energy_mlp
from pyro_flowkit.models.gaussian_mixture import GaussianMixture
from pyro_flowkit.models.kmeans import KMeans, kmeans_plusplus
from pyro_flowkit.models.plsa import PLSA

__all__ = [
    "PLSA",
    "BernoulliMixture",
    "EnergyModel",
    "GaussianMixture",
    "KMeans",
    "energy_mlp",
    "kmeans_plusplus",
]
