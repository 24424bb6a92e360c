"""A transform module run backwards: its inverse as a module of its own."""

from __future__ import annotations

import torch  # noqa: F401 (the docstring examples use it)
from pyro.distributions.conditional import ConditionalTransformModule
from torch import Tensor

from pyro_flowkit.transforms._base import FlowTransform


class Inverse(FlowTransform):
    r"""The inverse of a library transform, as a module that owns (and trains) its parameters.

    ``Inverse(t)(y) = t.inv(y)`` and ``Inverse(t).inv(x) = t(x)``, with the log-det negated.
    Unlike ``t.inv`` (Pyro's ``_InverseTransform``, not an ``nn.Module``), it can sit in a
    ``ComposeTransformModule``. Flows whose one direction is iterative use it to choose which
    direction is explicit (DESIGN.md convention 1).

    Arguments:
        transform: a :class:`~pyro_flowkit.transforms.FlowTransform`.

    Example:
        >>> from pyro_flowkit.transforms import Scaling
        >>> t = Scaling(3)
        >>> x = torch.randn(2, 3)
        >>> torch.equal(Inverse(t)(t(x)), x)
        True
    """

    def __init__(self, transform: FlowTransform) -> None:
        if not isinstance(transform, FlowTransform):
            raise TypeError(
                f"transform: expected a pyro_flowkit FlowTransform, got {type(transform).__name__}"
            )
        super().__init__(transform.event_shape)
        self.transform = transform

    def _check_input(self, t: Tensor, name: str) -> None:
        self.transform._check_input(t, name)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, ladj = self.transform._backward(x)
        return y, -ladj

    def _backward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x, ladj = self.transform._forward(y)
        return x, -ladj


class ConditionalInverse(ConditionalTransformModule):
    """The inverse of a ``Conditional*`` library transform: ``condition(c)`` is
    ``Inverse(transform.condition(c))``."""

    def __init__(self, transform: ConditionalTransformModule) -> None:
        super().__init__()
        self.transform = transform

    def condition(self, context: Tensor) -> Inverse:
        """The plain inverse for ``context``."""
        return Inverse(self.transform.condition(context))
