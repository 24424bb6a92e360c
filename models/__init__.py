"""Pyro models (``PyroModule``s with ``model()``/``guide()``) and EM-fitted mixtures.

Installed as ``pyro_flowkit.models``.
"""

if __name__ != "pyro_flowkit.models":  # e.g. `import models` from the repository's root
    raise ImportError(
        f"this folder is pyro_flowkit.models: write `import pyro_flowkit.models`, "
        f"not {__name__!r} (that would load a second copy of every class)"
    )


from pyro_flowkit.models.bernoulli_mixture import BernoulliMixture
from pyro_flowkit.models.categorical_vae import CategoricalVAE
from pyro_flowkit.models.code_prior import AutoregressiveCategorical, CodeGrid
from pyro_flowkit.models.energy import EnergyModel, energy_mlp
from pyro_flowkit.models.fvae import FVAE
from pyro_flowkit.models.gaussian_mixture import GaussianMixture
from pyro_flowkit.models.glove import SimplerGloVe
from pyro_flowkit.models.kmeans import KMeans, kmeans_plusplus
from pyro_flowkit.models.pca_codec import PCACodec
from pyro_flowkit.models.plsa import PLSA
from pyro_flowkit.models.vae import VAE
from pyro_flowkit.models.vqvae import VQVAE

__all__ = [
    "VQVAE",
    "AutoregressiveCategorical",
    "CategoricalVAE",
    "CodeGrid",
    "PCACodec",
    "FVAE",
    "PLSA",
    "VAE",
    "BernoulliMixture",
    "EnergyModel",
    "GaussianMixture",
    "KMeans",
    "SimplerGloVe",
    "energy_mlp",
    "kmeans_plusplus",
]
