"""Pyro models (``PyroModule``s with ``model()``/``guide()``).

Installed as ``pyro_flowkit.models``.
"""
