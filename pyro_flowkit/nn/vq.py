r"""Vector quantisation (VQ-VAE's bottleneck): nearest code, straight-through gradient, and a
codebook trained by gradient or by exponential moving averages that agree across processes.

References:
    | Neural Discrete Representation Learning (van den Oord, Vinyals & Kavukcuoglu, 2017)
    | https://arxiv.org/abs/1711.00937
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import Tensor, nn

from pyro_flowkit.validation import (
    check_choice,
    check_count,
    check_finite_tensor,
    check_interval,
    check_positive,
)

__all__ = ["VQOutput", "VectorQuantizer"]

REDUCTIONS = ("mean", "sum", "none")


class VQOutput(NamedTuple):
    """What :class:`VectorQuantizer` returns.

    Attributes:
        value: :math:`z + \\mathrm{sg}(z_q - z)`: the nearest codes going forward, the identity
            going backward; shape of the input.
        indices: the nearest codes' indices, the input's shape without its last dimension.
        loss: the commitment term (plus the codebook term when the codebook is trained by
            gradient), reduced as asked.
        perplexity: :math:`\\exp` of the entropy of code use in this batch (1 to ``num_codes``).
    """

    value: Tensor
    indices: Tensor
    loss: Tensor
    perplexity: Tensor


def _distributed() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    r"""Replace each vector :math:`z \in \mathbb R^d` by its nearest code
    :math:`z_q = e_k`, :math:`k = \arg\min_j \lVert z - e_j \rVert`, of a codebook
    :math:`e_1, \dots, e_K`.

    The output :math:`z + \mathrm{sg}(z_q - z)` (``sg``: stop-gradient) is exactly :math:`z_q`
    going forward, and going backward hands the gradient at :math:`z_q` to :math:`z` unchanged:
    the straight-through estimator. The loss is

    .. math:: \beta\, \lVert z - \mathrm{sg}(z_q) \rVert^2
       \;+\; [\text{decay is None}]\; \lVert \mathrm{sg}(z) - z_q \rVert^2,

    the commitment term (its gradient reaches only the encoder) and, for a codebook trained by
    gradient as in the paper's main text, the codebook term (its gradient reaches only the
    codebook). With ``decay`` :math:`\gamma` set, the codebook is a buffer that follows the
    paper's exponential moving averages (its appendix A.1) in training mode: with
    :math:`n_k` the number of vectors assigned to code :math:`k` in the batch and :math:`s_k`
    their sum,

    .. math:: N_k \leftarrow \gamma N_k + (1 - \gamma) n_k, \qquad
       m_k \leftarrow \gamma m_k + (1 - \gamma) s_k, \qquad
       e_k = \frac{m_k}{\tilde N_k}, \quad
       \tilde N_k = \frac{N_k + \epsilon}{\sum_j N_j + K \epsilon} \sum_j N_j

    (Laplace smoothing of the counts, as in Sonnet). :math:`N` and :math:`m` start at zero, so
    :math:`m_k / N_k` is the weighted mean of the vectors the code has received, with no bias
    from the start (no zero-debiasing is needed for a ratio of two averages with one decay); a
    code that has never been used keeps its initial value. ``decay=0`` is one k-means (Lloyd)
    step per batch. Under ``torch.distributed`` the batch statistics :math:`n, s` are summed
    over the processes before the update, so every process keeps the same codebook (each must
    call the layer in training mode the same number of times).

    With ``data_init`` (the default) the first training batch replaces the random initial
    codebook by randomly chosen vectors of the batch (so no code starts far from the encoder's
    outputs, which collapses code use), and the ``initialized`` buffer records it.
    A code that no vector of any process has used for ``restart_after`` training steps is
    restarted at a random vector of the current batch (drawn on rank 0 and broadcast), with the
    average code's count; with ``restart_dead=False`` dead codes stay where they are.

    The nearest-code search works on chunks of ``chunk_size`` vectors at a time through
    :math:`\lVert e_j \rVert^2 - 2 z^\top e_j`, so memory is ``chunk_size`` by ``num_codes``
    (no ``(N, K, d)`` tensor).

    Arguments:
        num_codes: :math:`K`.
        code_dim: :math:`d`, the size of the last dimension of the input.
        commitment: :math:`\beta` (0.25 in the paper).
        decay: :math:`\gamma` in ``[0, 1)`` for the EMA codebook; ``None`` trains the codebook
            by gradient.
        eps: :math:`\epsilon` of the Laplace smoothing (``>= 0``).
        restart_dead: restart codes unused for ``restart_after`` training steps.
        restart_after: training steps without use after which a code is dead.
        data_init: initialise the codebook from the first training batch.
        chunk_size: vectors per chunk of the nearest-code search.

    References:
        | Neural Discrete Representation Learning (van den Oord et al., 2017)
        | https://arxiv.org/abs/1711.00937

    Example:
        >>> vq = VectorQuantizer(16, 4).eval()  # training mode would also update the codebook
        >>> z = torch.randn(8, 5, 4, requires_grad=True)
        >>> out = vq(z)
        >>> out.value.shape, out.indices.shape, out.loss.shape
        (torch.Size([8, 5, 4]), torch.Size([8, 5]), torch.Size([]))
        >>> bool((out.value == vq.codebook[out.indices]).all())  # forward: the nearest codes
        True
        >>> out.value.sum().backward()  # backward: the identity
        >>> bool((z.grad == 1).all())
        True
    """

    codebook: Tensor
    ema_count: Tensor
    ema_sum: Tensor
    unused_steps: Tensor

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        *,
        commitment: float = 0.25,
        decay: float | None = 0.99,
        eps: float = 1e-5,
        restart_dead: bool = True,
        restart_after: int = 100,
        data_init: bool = True,
        chunk_size: int = 4096,
    ) -> None:
        super().__init__()
        self.num_codes = check_count("num_codes", num_codes)
        self.code_dim = check_count("code_dim", code_dim)
        self.commitment = check_positive("commitment", commitment, allow_zero=True)
        self.decay = (
            None
            if decay is None
            else check_interval("decay", decay, 0, 1, open_high=True, what="a decay")
        )
        self.eps = check_positive("eps", eps, allow_zero=True)
        for flag, value in (("restart_dead", restart_dead), ("data_init", data_init)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag}: expected a bool, got {value!r}")
        self.restart_dead = restart_dead
        self.restart_after = check_count("restart_after", restart_after)
        self.chunk_size = check_count("chunk_size", chunk_size)
        start = torch.randn(num_codes, code_dim)
        if self.decay is None:
            self.codebook = nn.Parameter(start)
        else:
            self.register_buffer("codebook", start)
            self.register_buffer("ema_count", torch.zeros(num_codes))
            self.register_buffer("ema_sum", torch.zeros(num_codes, code_dim))
        self.register_buffer("unused_steps", torch.zeros(num_codes, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(not data_init))

    def extra_repr(self) -> str:
        return (
            f"num_codes={self.num_codes}, code_dim={self.code_dim}, "
            f"commitment={self.commitment}, decay={self.decay}"
        )

    # ---------------------------------------------------------------- search
    @torch.no_grad()
    def nearest(self, z: Tensor) -> Tensor:
        r"""Indices of the nearest codes of ``z`` ``(..., code_dim)``: shape ``z.shape[:-1]``
        (ties go to the lowest index)."""
        z = self._check(z)
        return self._search(z.reshape(-1, self.code_dim)).reshape(z.shape[:-1])

    @torch.no_grad()
    def _search(self, flat: Tensor) -> Tensor:
        codes = self.codebook.detach()
        squares = (codes * codes).sum(-1)
        out = torch.empty(len(flat), dtype=torch.long, device=flat.device)
        for start in range(0, len(flat), self.chunk_size):
            chunk = flat[start : start + self.chunk_size]
            distances = torch.addmm(squares, chunk, codes.T, alpha=-2)  # ||e||^2 - 2 z.e
            out[start : start + len(chunk)] = distances.argmin(-1)
        return out

    def lookup(self, indices: Tensor) -> Tensor:
        """The codes of ``indices`` (any shape): shape ``indices.shape + (code_dim,)``."""
        return F.embedding(indices, self.codebook)

    def _check(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or not z.is_floating_point():
            kind = z.dtype if isinstance(z, Tensor) else type(z).__name__
            raise TypeError(f"z: expected a floating tensor, got {kind}")
        if z.dim() < 1 or z.shape[-1] != self.code_dim:
            raise ValueError(f"z: expected shape (..., {self.code_dim}), got {tuple(z.shape)}")
        check_finite_tensor("z", z.detach())
        return z.to(self.codebook.dtype)

    # ---------------------------------------------------------------- forward
    def forward(self, z: Tensor, reduction: str = "mean") -> VQOutput:
        """Quantise ``z`` ``(..., code_dim)``; in training mode update the EMA codebook and the
        dead-code bookkeeping (after the codes of this batch are chosen).

        Arguments:
            z: encoder outputs.
            reduction: the loss as the mean over the entries of ``z`` (``"mean"``, the usual
                MSE form), their ``"sum"``, or per vector (``"none"``: summed over the last
                dimension, shape ``z.shape[:-1]``).
        """
        check_choice("reduction", reduction, REDUCTIONS)
        z = self._check(z)
        flat = z.reshape(-1, self.code_dim)
        if self.training and len(flat) and not bool(self.initialized):
            self._initialize(flat.detach())
        chosen = self._search(flat.detach())
        z_q = self.lookup(chosen)
        per_vector = self.commitment * (flat - z_q.detach()).pow(2).sum(-1)
        if self.decay is None:
            per_vector = per_vector + (flat.detach() - z_q).pow(2).sum(-1)
        value = z_q.detach() + (flat - flat.detach())  # exactly z_q; gradient: the identity
        counts = torch.bincount(chosen, minlength=self.num_codes).to(flat.dtype)
        perplexity = self._perplexity(counts)
        if self.training and len(flat):
            self._update(flat.detach(), chosen, counts)
        if reduction == "mean":
            loss = per_vector.sum() / max(flat.numel(), 1)
        elif reduction == "sum":
            loss = per_vector.sum()
        else:
            loss = per_vector.reshape(z.shape[:-1])
        indices = chosen.reshape(z.shape[:-1])
        return VQOutput(value.reshape(z.shape), indices, loss, perplexity)

    @staticmethod
    def _perplexity(counts: Tensor) -> Tensor:
        total = counts.sum()
        if total == 0:
            return torch.ones((), dtype=counts.dtype, device=counts.device)
        p = counts / total
        return torch.exp(-torch.special.xlogy(p, p).sum())

    # ---------------------------------------------------------------- training updates
    @torch.no_grad()
    def _update(self, flat: Tensor, chosen: Tensor, counts: Tensor) -> None:
        sums = torch.zeros_like(self.codebook).index_add_(0, chosen, flat)
        stats = torch.cat([counts[:, None], sums], 1)
        if _distributed():
            tdist.all_reduce(stats)  # every process: the statistics of the global batch
        counts, sums = stats[:, 0], stats[:, 1:]
        if self.decay is not None:
            self._ema(counts, sums)
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        if self.restart_dead:
            dead = self.unused_steps >= self.restart_after
            if bool(dead.any()):
                self._restart(dead, flat)

    def _ema(self, counts: Tensor, sums: Tensor) -> None:
        gamma = self.decay
        self.ema_count.mul_(gamma).add_(counts, alpha=1 - gamma)
        self.ema_sum.mul_(gamma).add_(sums, alpha=1 - gamma)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (total + self.num_codes * self.eps) * total
        used = self.ema_count > 0  # a code never used keeps its value
        self.codebook[used] = self.ema_sum[used] / smoothed[used, None]

    @staticmethod
    def _draw(flat: Tensor, num: int) -> Tensor:
        """``num`` random rows of ``flat`` (without replacement while there are enough), the
        same on every process (rank 0's)."""
        if num <= len(flat):
            picks = torch.randperm(len(flat), device=flat.device)[:num]
        else:
            picks = torch.randint(len(flat), (num,), device=flat.device)
        fresh = flat[picks].contiguous()
        if _distributed():
            tdist.broadcast(fresh, src=0)
        return fresh

    @torch.no_grad()
    def _initialize(self, flat: Tensor) -> None:
        self.codebook.data.copy_(self._draw(flat, self.num_codes))
        self.initialized.fill_(True)

    def _restart(self, dead: Tensor, flat: Tensor) -> None:
        fresh = self._draw(flat, int(dead.sum()))
        self.codebook.data[dead] = fresh
        if self.decay is not None:
            count = self.ema_count.sum() / self.num_codes
            self.ema_count[dead] = count
            self.ema_sum[dead] = fresh * count
        self.unused_steps[dead] = 0
