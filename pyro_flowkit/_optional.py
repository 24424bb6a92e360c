"""Imports of optional or noisy dependencies, in one place."""

from __future__ import annotations

import warnings
from typing import Any


def import_arviz() -> Any:  # noqa: ANN401 - the arviz module
    """Import ArviZ without its refactoring ``FutureWarning`` (arviz 0.x prints one on import)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz
