r"""Priors over a VQ-VAE's grid of codes: a distribution over index sequences (uniform, or
autoregressive through a :class:`~pyro_flowkit.nn.made.CategoricalMADE`), and the distribution
of the code vectors it induces through a codebook.

References:
    | Neural Discrete Representation Learning (van den Oord et al., 2017)
    | https://arxiv.org/abs/1711.00937
    | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
    | https://arxiv.org/abs/1502.03509
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from torch import Tensor

from pyro_flowkit.nn.made import CategoricalMADE
from pyro_flowkit.nn.vq import VectorQuantizer

__all__ = ["AutoregressiveCategorical", "CodeGrid", "uniform_codes"]


class AutoregressiveCategorical(TorchDistribution):
    r"""A distribution over sequences :math:`c \in \{0..K-1\}^M` (event shape ``(M,)``)

    .. math:: p(c) = \prod_{m=1}^M \operatorname{softmax}(\ell_m(c_{<m}))_{c_m}

    with the logits of a :class:`~pyro_flowkit.nn.made.CategoricalMADE`: ``log_prob`` is one
    network pass, ``sample`` is :math:`M` passes (position by position).

    Arguments:
        made: the network.
        batch_shape: the distribution's batch shape.

    Example:
        >>> from pyro_flowkit.nn.made import CategoricalMADE
        >>> p = AutoregressiveCategorical(CategoricalMADE(3, 4, hidden_dims=(8,)))
        >>> c = p.sample((5,))
        >>> c.shape, p.log_prob(c).shape
        (torch.Size([5, 3]), torch.Size([5]))
    """

    arg_constraints: dict = {}
    has_enumerate_support = False

    def __init__(
        self,
        made: CategoricalMADE,
        batch_shape: torch.Size | tuple[int, ...] = (),
        validate_args: bool | None = None,
    ) -> None:
        self.made = made
        super().__init__(torch.Size(batch_shape), (made.num_positions,), validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self) -> constraints.Constraint:
        return constraints.independent(
            constraints.integer_interval(0, self.made.num_classes - 1), 1
        )

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance: object = None
    ) -> AutoregressiveCategorical:
        return AutoregressiveCategorical(self.made, batch_shape, self._validate_args)

    def _like(self) -> Tensor:
        return next(self.made.parameters())

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        onehot = F.one_hot(value.long(), self.made.num_classes).to(self._like().dtype)
        logits = self.made(onehot).log_softmax(-1)
        picked = logits.gather(-1, value.long().unsqueeze(-1)).squeeze(-1).sum(-1)
        return picked.expand(torch.broadcast_shapes(picked.shape, self.batch_shape))

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        like = self._like()
        k = self.made.num_classes
        codes = torch.zeros(shape, dtype=torch.long, device=like.device)
        for m in range(self.made.num_positions):
            logits = self.made(F.one_hot(codes, k).to(like.dtype))[..., m, :]
            codes[..., m] = torch.distributions.Categorical(logits=logits).sample()
        return codes


def uniform_codes(
    num_positions: int, num_classes: int, like: Tensor | None = None
) -> dist.TorchDistribution:
    """The uniform prior over ``num_positions`` codes of ``num_classes`` values: independent
    ``Categorical`` positions, event shape ``(num_positions,)``; device and dtype of ``like``."""
    logits = torch.zeros(num_classes) if like is None else like.new_zeros(num_classes)
    return dist.Categorical(logits=logits).expand((num_positions,)).to_event(1)


class CodeGrid(TorchDistribution):
    r"""The distribution of a grid of code vectors :math:`z_q = (e_{c_1}, \dots, e_{c_M})`
    (event shape ``grid + (code_dim,)``) whose indices :math:`c` follow ``indices`` (event shape
    ``(M,)``, :math:`M` the grid's size): :math:`p(z_q) = p(c)`.

    ``log_prob`` scores the indices of the nearest codes of its argument (a value that is not
    on the codebook is scored as its nearest codes: the VQ-VAE's guide hands the model the
    straight-through value, which is the nearest codes going forward); ``sample`` draws indices
    and looks the codes up.

    Arguments:
        indices: a distribution over index sequences of event shape ``(M,)``.
        quantizer: the :class:`~pyro_flowkit.nn.vq.VectorQuantizer` holding the codebook.
        grid: the shape of the grid (``M`` positions in all).

    Example:
        >>> from pyro_flowkit.nn.vq import VectorQuantizer
        >>> vq = VectorQuantizer(8, 3)
        >>> p = CodeGrid(uniform_codes(4, 8), vq, (2, 2))
        >>> z = p.sample((5,))
        >>> z.shape, round(p.log_prob(z)[0].item(), 4) == round(-4 * math.log(8), 4)
        (torch.Size([5, 2, 2, 3]), True)
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)  # the codebook's vectors

    def __init__(
        self,
        indices: dist.TorchDistribution,
        quantizer: VectorQuantizer,
        grid: tuple[int, ...],
        validate_args: bool | None = None,
    ) -> None:
        grid = tuple(grid)
        if indices.event_shape != (math.prod(grid),):
            raise ValueError(
                f"indices: expected event shape ({math.prod(grid)},), got "
                f"{tuple(indices.event_shape)}"
            )
        self.indices, self.quantizer, self.grid = indices, quantizer, grid
        event = (*grid, quantizer.code_dim)
        super().__init__(indices.batch_shape, event, validate_args)

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance: object = None
    ) -> CodeGrid:
        indices = self.indices.expand(torch.Size(batch_shape))
        return CodeGrid(indices, self.quantizer, self.grid, self._validate_args)

    def codes(self, value: Tensor) -> Tensor:
        """The index sequences ``(..., M)`` of the nearest codes of ``value``."""
        return self.quantizer.nearest(value).flatten(-len(self.grid))

    def log_prob(self, value: Tensor) -> Tensor:
        return self.indices.log_prob(self.codes(value))

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        c = self.indices.sample(sample_shape)
        return self.quantizer.lookup(c).unflatten(-2, self.grid)
