"""Imports of ``pyro_flowkit.models`` and ``pyro_flowkit.inference`` from a source checkout.

The project's layout keeps ``models/`` and ``inference/`` at the top of the repository, beside
``pyro_flowkit/``; an install maps them into the package (``package-dir`` in pyproject.toml).
When Python finds the *source* ``pyro_flowkit/`` first (running from the repository's root, or a
checkout on ``sys.path`` without an editable install), that mapping is not there, and
``import pyro_flowkit.models`` would fail. :func:`install_source_finder` then adds a finder for
exactly those two subpackages, pointing at the sibling folders.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path


class _SiblingPackages(importlib.abc.MetaPathFinder):
    """Finds ``{package}.{name}`` in the folder ``root / name`` for the given names only."""

    def __init__(self, package: str, root: Path, names: Sequence[str]) -> None:
        self.targets = {f"{package}.{name}": root / name for name in names}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        folder = self.targets.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def install_source_finder(package: str, init_file: str, names: Sequence[str]) -> None:
    """If ``package`` was imported from a source checkout whose ``names`` folders sit beside it
    (and not inside it, as in an install), let ``import {package}.{name}`` find them."""
    here = Path(init_file).resolve().parent
    root = here.parent
    missing = [n for n in names if not (here / n).is_dir() and (root / n / "__init__.py").is_file()]
    if not missing or not (root / "pyproject.toml").is_file():
        return
    if not any(isinstance(f, _SiblingPackages) for f in sys.meta_path):
        sys.meta_path.append(_SiblingPackages(package, root, missing))
