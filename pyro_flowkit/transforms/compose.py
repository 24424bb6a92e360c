"""The containers the flow builders return: Pyro's compose modules that can be copied.

Pyro's ``ComposeTransformModule`` keeps its last ``(x, y)`` (``cache_size=1``); after a pass
with gradients those are tensors of an autograd graph, and ``copy.deepcopy`` of the module (or
of a model holding it) fails with "Only Tensors created explicitly by the user support the
deepcopy protocol". These subclasses drop the cached pass when copied or pickled.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyro.distributions.conditional import ConditionalComposeTransformModule
from pyro.distributions.torch_transform import ComposeTransformModule
from torch import Tensor, nn

from pyro_flowkit.transforms._base import forget_pass

__all__ = ["ComposeFlow", "ConditionalComposeFlow", "compose"]


class ComposeFlow(ComposeTransformModule):
    """A ``ComposeTransformModule`` (base to data, parts in Pyro's order) with ``cache_size=1``
    that forgets its cached pass in ``copy.deepcopy`` and pickling."""

    def __init__(self, parts: Sequence[nn.Module], cache_size: int = 1) -> None:
        super().__init__(list(parts), cache_size=cache_size)

    def __getstate__(self) -> dict:
        return forget_pass(super().__getstate__())

    def with_cache(self, cache_size: int = 1) -> ComposeFlow:
        if cache_size == self._cache_size:
            return self
        return ComposeFlow(self.parts, cache_size=cache_size)


class ConditionalComposeFlow(ConditionalComposeTransformModule):
    """The conditional twin: ``condition(context)`` composes the parts conditioned on
    ``context``."""

    def __init__(self, parts: Sequence[nn.Module], cache_size: int = 1) -> None:
        super().__init__(list(parts), cache_size=cache_size)

    def condition(self, context: Tensor) -> ComposeFlow:
        """The plain flow for ``context`` (shape ``batch + (context_dim,)``)."""
        return ComposeFlow([t.condition(context) for t in self.transforms], self._cache_size)


def compose(parts: Sequence[nn.Module], conditional: bool = False) -> nn.Module:
    """The flow of ``parts`` (listed in Pyro's order, base to data)."""
    return ConditionalComposeFlow(parts) if conditional else ComposeFlow(parts)
