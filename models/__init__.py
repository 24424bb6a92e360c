"""Pyro models (``PyroModule``s with ``model()``/``guide()``).

Installed as ``pyro_flowkit.models``.
"""

from pyro_flowkit.models.energy import EnergyModel, energy_mlp

__all__ = ["EnergyModel", "energy_mlp"]
