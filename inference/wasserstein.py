r"""Wasserstein-1 by the Kantorovich-Rubinstein dual: trained critics, and WGAN training.

By Kantorovich-Rubinstein duality (the dual of the optimal-transport linear program, see
:mod:`pyro_flowkit.ot`),

.. math:: W_1(p, q) = \sup_{\|f\|_L \le 1} \mathbb E_{x \sim p} f(x) - \mathbb E_{y \sim q} f(y),

so a network :math:`f` (the *critic*) trained to maximise the right-hand side over a set of
(about) 1-Lipschitz functions gives a lower estimate of :math:`W_1`, and a generator trained to
minimise it moves its samples towards the data (the WGAN). Everything hinges on how the
Lipschitz bound is kept; three ways are offered, each a :class:`LipschitzConstraint`:

* ``"clip"`` (:class:`WeightClipping`, Arjovsky et al. 2017): every weight is clipped to
  :math:`[-c, c]` after each step. The critic is then :math:`K`-Lipschitz for some unknown
  :math:`K` set by :math:`c` and the architecture, so the estimate is :math:`\approx K\,W_1`, a
  *scaled* distance (with the paper's :math:`c = 0.01`, :math:`K \ll 1`): useful as a training
  signal, not as a number.
* ``"gp"`` (:class:`GradientPenalty`, Gulrajani et al. 2017): the loss gets
  :math:`\lambda\,\mathbb E_{\hat x}(\|\nabla f(\hat x)\|_2 - 1)^2` at random interpolates
  :math:`\hat x = \epsilon x + (1 - \epsilon) y`; a soft constraint, held only where it is
  sampled.
* ``"spectral"`` (:class:`SpectralNormalization`, Miyato et al. 2018): every weight matrix is
  divided by (an estimate of) its spectral norm, and the activations are 1-Lipschitz, so the
  network is 1-Lipschitz everywhere by construction. The activation is MaxMin (GroupSort with
  groups of two, Anil et al. 2019): with ReLU a norm-constrained network loses gradient norm
  at every layer and cannot represent even :math:`f(x) = \|x\|` at slope 1.

Every estimate reports the largest gradient norm of its critic on the data, so a user sees
whether the constraint held (it should be at most about 1; clipping gives far less).

References:
    | Optimal Transport: Old and New (C. Villani, 2009), Kantorovich-Rubinstein duality (5.16),
    | https://doi.org/10.1007/978-3-540-71050-9
    | Wasserstein GAN (M. Arjovsky, S. Chintala, L. Bottou, 2017), https://arxiv.org/abs/1701.07875
    | Improved Training of Wasserstein GANs (I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin,
    | A. Courville, 2017), https://arxiv.org/abs/1704.00028
    | Spectral Normalization for Generative Adversarial Networks (T. Miyato, T. Kataoka,
    | M. Koyama, Y. Yoshida, 2018), https://arxiv.org/abs/1802.05957
    | Sorting Out Lipschitz Function Approximation (C. Anil, J. Lucas, R. Grosse, 2019),
    | https://arxiv.org/abs/1811.05381
    | Flow-GAN: Combining Maximum Likelihood and Adversarial Learning in Generative Models
    | (A. Grover, M. Dhar, S. Ermon, 2018), https://arxiv.org/abs/1705.08868
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pyro_flowkit.inference.ema import EMA
from pyro_flowkit.inference.training import History, StepInfo, Trainer, train
from pyro_flowkit.nn.lipschitz import (
    SpectralNormConv2d,
    SpectralNormLinear,
    refresh_spectral_norms,
)
from pyro_flowkit.validation import check_choice, check_count, check_finite_tensor, check_positive

__all__ = [
    "CriticEstimate",
    "GradientPenalty",
    "LipschitzConstraint",
    "MaxMin",
    "SpectralNormalization",
    "WGANResult",
    "WeightClipping",
    "critic_gradient_norms",
    "critic_mlp",
    "train_wgan",
    "wasserstein1",
]

OptimizerFactory = Callable[[list[Tensor]], torch.optim.Optimizer]
_SPECTRAL = (SpectralNormLinear, SpectralNormConv2d)


class MaxMin(nn.Module):
    r"""GroupSort with groups of two: :math:`(a, b) \mapsto (\max(a, b), \min(a, b))` on the two
    halves of the last dimension.

    It only permutes its input, so it is 1-Lipschitz and keeps the gradient's norm (its
    Jacobian is a permutation), unlike ReLU, whose Jacobian zeroes the gradient of every
    inactive unit: a ReLU network with norm-1 weights cannot even represent :math:`|x|`
    (Anil et al.), and a spectrally normalised ReLU critic underestimates :math:`W_1` when the
    best critic is not linear (``benchmarks/wasserstein.py``).

    References:
        | Sorting Out Lipschitz Function Approximation (Anil, Lucas & Grosse, 2019),
        | https://arxiv.org/abs/1811.05381

    Example:
        >>> MaxMin()(torch.tensor([[1.0, -2.0, 3.0, 0.0]]))
        tensor([[ 3.,  0.,  1., -2.]])
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 2:
            raise ValueError(f"x: expected an even last dimension, got {tuple(x.shape)}")
        a, b = x.chunk(2, dim=-1)
        return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=-1)


def critic_gradient_norms(critic: nn.Module, x: Tensor, create_graph: bool = False) -> Tensor:
    r""":math:`\|\nabla_x f(x_i)\|_2` for every row :math:`x_i` of ``x`` ``(n, *event)``: shape
    ``(n,)``; ``create_graph`` keeps the graph, to differentiate a penalty on them.

    Example:
        >>> critic = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = critic.weight.copy_(torch.tensor([[3.0, 4.0]]))
        >>> critic_gradient_norms(critic, torch.randn(3, 2))
        tensor([5., 5., 5.])
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_scores(critic, x).sum(), x, create_graph=create_graph)
    return grad.flatten(1).norm(dim=1)


def _scores(critic: nn.Module, x: Tensor) -> Tensor:
    """The critic's ``(n,)`` values at ``x`` (a trailing dimension of size 1 is dropped)."""
    out = critic(x)
    if out.dim() == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.shape != (len(x),):
        raise ValueError(
            f"critic: expected one value per row, shape ({len(x)},) or ({len(x)}, 1), got "
            f"{tuple(out.shape)}"
        )
    return out


def _interpolates(x: Tensor, y: Tensor) -> Tensor:
    r""":math:`\epsilon x + (1 - \epsilon) y`, :math:`\epsilon \sim U(0, 1)` per row (the shorter
    set's length)."""
    k = min(len(x), len(y))
    eps = torch.rand((k,) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return eps * x[:k] + (1 - eps) * y[:k]


class LipschitzConstraint:
    r"""How a critic is kept (about) 1-Lipschitz, :math:`|f(x) - f(y)| \le \|x - y\|_2`: a
    penalty added to the critic's loss, a projection after each optimiser step, a last touch
    after training, a check of a given critic, a default critic and a default optimiser (the
    paper's). Subclass it for another scheme; the base class constrains nothing.

    Example:
        >>> class Tanh(LipschitzConstraint):  # a critic squashed by construction
        ...     name = "tanh"
        ...     def critic(self, features, hidden_dims=(32,)):
        ...         return nn.Sequential(nn.Linear(features, 1), nn.Tanh(), nn.Flatten(0))
        >>> from pyro_flowkit.inference.wasserstein import wasserstein1
        >>> w = wasserstein1(torch.zeros(50, 2), torch.ones(50, 2), Tanh(), steps=5, progress=False)
        >>> w.critic[0].out_features
        1
    """

    name = "none"

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        """The term added to the critic's loss on a batch (none by default)."""
        return real.new_zeros(())

    def project(self, critic: nn.Module) -> None:
        """Called before training and after every critic step (nothing by default)."""

    def finish(self, critic: nn.Module) -> None:
        """Called once after training (nothing by default)."""

    def check_critic(self, critic: nn.Module) -> None:
        """Raise ``ValueError`` if ``critic`` cannot satisfy this constraint."""

    def critic(self, features: int, hidden_dims: Sequence[int] = (128, 128)) -> nn.Module:
        """The default critic on ``(n, features)`` points."""
        return critic_mlp(features, hidden_dims, self.name)

    def optimizer(self, lr: float | None = None) -> OptimizerFactory:
        r"""The paper's optimiser (``lr`` overrides its learning rate): Adam(1e-4, betas (0,
        0.9))."""
        lr = 1e-4 if lr is None else check_positive("lr", lr)
        return lambda params: torch.optim.Adam(params, lr=lr, betas=(0.0, 0.9))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class WeightClipping(LipschitzConstraint):
    r"""WGAN's constraint: every parameter clipped to :math:`[-c, c]` after each step.

    The set of such critics is compact, so its members are :math:`K`-Lipschitz for one
    :math:`K` (set by :math:`c` and the architecture): the critic estimates :math:`K\,W_1`, not
    :math:`W_1`. Compare estimates of one critic architecture and clip with each other only.

    .. math:: w \leftarrow \mathrm{clamp}(w, -c, c)

    Arguments:
        clip: :math:`c > 0` (the paper's 0.01).

    References:
        | Wasserstein GAN (Arjovsky, Chintala & Bottou, 2017), https://arxiv.org/abs/1701.07875

    Example:
        >>> net = nn.Linear(2, 1)
        >>> WeightClipping(0.01).project(net)
        >>> bool(net.weight.abs().max() <= 0.01)
        True
    """

    name = "clip"

    def __init__(self, clip: float = 0.01) -> None:
        self.clip = check_positive("clip", clip)

    @torch.no_grad()
    def project(self, critic: nn.Module) -> None:
        for p in critic.parameters():
            p.clamp_(-self.clip, self.clip)

    def optimizer(self, lr: float | None = None) -> OptimizerFactory:
        """The paper's RMSprop(5e-5) (``lr`` overrides it): momentum destabilises clipping."""
        lr = 5e-5 if lr is None else check_positive("lr", lr)
        return lambda params: torch.optim.RMSprop(params, lr=lr)

    def __repr__(self) -> str:
        return f"WeightClipping(clip={self.clip})"


class GradientPenalty(LipschitzConstraint):
    r"""WGAN-GP's constraint: a penalty on the critic's gradient norm at interpolates.

    .. math:: \lambda\,\mathbb E_{\epsilon \sim U(0, 1)}
       \bigl(\|\nabla f(\epsilon x + (1 - \epsilon) y)\|_2 - 1\bigr)^2

    over paired rows of a real batch :math:`x` and a fake batch :math:`y`. The optimal critic
    has gradient norm 1 almost everywhere on the segments between coupled points, which the
    penalty asks for; elsewhere the norm is not controlled.

    Arguments:
        weight: :math:`\lambda` (the paper's 10).

    References:
        | Improved Training of Wasserstein GANs (Gulrajani et al., 2017),
        | https://arxiv.org/abs/1704.00028

    Example:
        >>> critic = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = critic.weight.copy_(torch.tensor([[0.6, 0.8]]))  # gradient norm exactly 1
        >>> GradientPenalty().penalty(critic, torch.randn(8, 2), torch.randn(8, 2)).item()
        0.0
    """

    name = "gp"

    def __init__(self, weight: float = 10.0) -> None:
        self.weight = check_positive("weight", weight)

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        norms = critic_gradient_norms(critic, _interpolates(real, fake), create_graph=True)
        return self.weight * (norms - 1).square().mean()

    def __repr__(self) -> str:
        return f"GradientPenalty(weight={self.weight})"


class SpectralNormalization(LipschitzConstraint):
    r"""Spectral normalisation: a critic built from spectrally normalised layers
    (:class:`~pyro_flowkit.nn.SpectralNormLinear` with :math:`c = 1`) and 1-Lipschitz
    activations, hence 1-Lipschitz by construction.

    .. math:: \tilde W = W / \max(1, \hat\sigma(W)), \qquad
       \|f\|_L \le \prod_l \|\tilde W_l\|_2 \le 1

    The power iteration's estimate :math:`\hat\sigma` approaches :math:`\sigma` from below, so
    the bound holds up to its tolerance (``power_rtol``, 1e-4 by default). A given critic must
    contain spectral-norm layers and no plain ``nn.Linear``/``nn.Conv*`` (its activations must
    be 1-Lipschitz: that cannot be checked).

    References:
        | Spectral Normalization for Generative Adversarial Networks (Miyato et al., 2018),
        | https://arxiv.org/abs/1802.05957

    Example:
        >>> critic = SpectralNormalization().critic(2, (16, 16))
        >>> bool(critic_gradient_norms(critic, torch.randn(100, 2)).max() <= 1 + 1e-3)
        True
    """

    name = "spectral"

    def finish(self, critic: nn.Module) -> None:
        """Converge every layer's power iteration, so the trained critic's bound is tight."""
        refresh_spectral_norms(critic)

    def check_critic(self, critic: nn.Module) -> None:
        layers = list(critic.modules())
        plain = [type(m).__name__ for m in layers if isinstance(m, _PLAIN)]
        if plain or not any(isinstance(m, _SPECTRAL) for m in layers):
            raise ValueError(
                "critic: expected spectral-norm layers (SpectralNormLinear, SpectralNormConv2d) "
                f"and no unconstrained ones for constraint 'spectral', got {plain or 'none'}"
            )


_PLAIN = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)
CONSTRAINTS = {"spectral": SpectralNormalization, "gp": GradientPenalty, "clip": WeightClipping}


def _constraint(constraint: str | LipschitzConstraint) -> LipschitzConstraint:
    if isinstance(constraint, LipschitzConstraint):
        return constraint
    return CONSTRAINTS[check_choice("constraint", constraint, tuple(CONSTRAINTS))]()


def critic_mlp(
    features: int, hidden_dims: Sequence[int] = (128, 128), constraint: str = "spectral"
) -> nn.Module:
    r"""A critic :math:`f: \mathbb R^D \to \mathbb R` for ``constraint``.

    .. math:: f(x) = W_L\,\phi(\cdots \phi(W_1 x + b_1) \cdots) + b_L

    ``"spectral"``: :class:`~pyro_flowkit.nn.SpectralNormLinear` layers (:math:`c = 1`) with
    :class:`MaxMin` activations, 1-Lipschitz by construction. ``"gp"`` and ``"clip"``: plain
    ``nn.Linear`` layers with ReLU, as in the papers' toy experiments. Returns ``(n,)`` values.

    The last layer starts at zero, so the critic starts as the constant 0 and the first steps
    set the sign of its slope from the estimate alone: from a random start, the gradient
    penalty pushes :math:`\|\nabla f\|` to 1 in whatever direction the random critic points,
    and on the line a critic with slope about :math:`-1` is a local optimum (turning it round
    means passing through slope 0, where the penalty is :math:`\lambda`).

    Arguments:
        features: :math:`D`.
        hidden_dims: the hidden widths (even, for MaxMin).
        constraint: ``"spectral"``, ``"gp"`` or ``"clip"``.

    Example:
        >>> critic_mlp(3, (8, 8))(torch.randn(5, 3)).shape
        torch.Size([5])
    """
    check_count("features", features)
    constraint = check_choice("constraint", constraint, tuple(CONSTRAINTS))
    widths = (features, *(check_count("hidden_dims", h) for h in hidden_dims), 1)
    spectral = constraint == "spectral"
    if spectral and any(h % 2 for h in widths[1:-1]):
        raise ValueError(f"hidden_dims: expected even widths for MaxMin, got {tuple(hidden_dims)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if i:
            layers.append(MaxMin() if spectral else nn.ReLU())
        last = i == len(widths) - 2
        layers.append(_spectral_linear(a, b, last) if spectral else nn.Linear(a, b))
    if not spectral:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers, nn.Flatten(0))


def _spectral_linear(a: int, b: int, zero_init: bool) -> SpectralNormLinear:
    """One block power iteration per training pass, as Miyato et al. (no tolerance loop: the
    weights move little per step, and :meth:`SpectralNormalization.finish` converges it)."""
    return SpectralNormLinear(a, b, 1.0, power_rtol=None, zero_init=zero_init)


def _check_points(name: str, x: Tensor) -> Tensor:
    check_finite_tensor(name, x)
    if x.dim() < 2 or len(x) < 2:
        raise ValueError(f"{name}: expected (n, *event) points with n >= 2, got {tuple(x.shape)}")
    return x


def _check_eval_data(eval_data: object, like: Tensor) -> tuple[Tensor, Tensor]:
    """``eval_data`` as a pair of finite point sets with ``like``'s event shape."""
    if not (isinstance(eval_data, tuple | list) and len(eval_data) == 2):
        raise ValueError(f"eval_data: expected a pair (x, y) of samples, got {type(eval_data)}")
    ex, ey = (_check_points(f"eval_data[{i}]", t) for i, t in enumerate(eval_data))
    if ex.shape[1:] != like.shape[1:] or ey.shape[1:] != like.shape[1:]:
        raise ValueError(
            f"eval_data: expected samples of event shape {tuple(like.shape[1:])}, got "
            f"{tuple(ex.shape)} and {tuple(ey.shape)}"
        )
    return ex, ey


@dataclass
class CriticEstimate:
    r"""What :func:`wasserstein1` found.

    Attributes:
        estimate: :math:`\frac1n\sum_i f(x_i) - \frac1m\sum_j f(y_j)` of the trained critic on
            the evaluation points (a lower estimate of :math:`W_1` if :math:`f` is
            1-Lipschitz).
        critic: the trained critic (in ``eval()`` mode).
        max_grad_norm: the largest :math:`\|\nabla f\|_2` at the evaluation points and at
            random interpolates between them; about 1 or below if the constraint held.
        history: per critic step, the loss and the metrics ``estimate`` (on the batch) and
            ``penalty``.
    """

    estimate: float
    critic: nn.Module
    max_grad_norm: float
    history: History


def _setup(
    constraint: str | LipschitzConstraint, critic: nn.Module | None, like: Tensor
) -> tuple[LipschitzConstraint, nn.Module]:
    """The constraint object and the critic (default: on ``like``'s device and dtype),
    checked and projected."""
    constraint = _constraint(constraint)
    if critic is None:
        if like.dim() != 2:
            raise ValueError(f"critic: no default critic for events of shape {like.shape[1:]}")
        critic = constraint.critic(like.shape[1]).to(device=like.device, dtype=like.dtype)
    constraint.check_critic(critic)
    constraint.project(critic)
    return constraint, critic


def _critic_loss(
    critic: nn.Module, constraint: LipschitzConstraint, real: Tensor, fake: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    r""":math:`-(\overline{f(x)} - \overline{f(y)}) + \text{penalty}` and its parts."""
    estimate = _scores(critic, real).mean() - _scores(critic, fake).mean()
    penalty = constraint.penalty(critic, real, fake)
    return penalty - estimate, {"estimate": estimate.detach(), "penalty": penalty.detach()}


@torch.no_grad()
def _mean_score(critic: nn.Module, x: Tensor, chunk: int = 4096) -> Tensor:
    return torch.cat([_scores(critic, part) for part in x.split(chunk)]).mean()


def _max_grad_norm(critic: nn.Module, x: Tensor, y: Tensor, chunk: int = 4096) -> float:
    points = torch.cat([x, y, _interpolates(x[torch.randperm(len(x))], y)])
    return max(critic_gradient_norms(critic, part).max().item() for part in points.split(chunk))


def wasserstein1(
    x: Tensor,
    y: Tensor,
    constraint: str | LipschitzConstraint = "spectral",
    critic: nn.Module | None = None,
    *,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float | None = 1e-3,
    optimizer: OptimizerFactory | None = None,
    eval_data: tuple[Tensor, Tensor] | None = None,
    average: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> CriticEstimate:
    r"""Estimate :math:`W_1` between the laws of two samples by training a critic on the dual.

    .. math:: \widehat W_1 = \frac1n \sum_i f(x_i) - \frac1m \sum_j f(y_j), \qquad
       f = \arg\max_{f \in \mathcal F} \mathbb E_x f - \mathbb E_y f - \text{penalty}(f)

    with :math:`\mathcal F` the critics ``constraint`` allows, trained with the library's loop
    (:func:`~pyro_flowkit.inference.train`) on minibatches of ``batch_size`` rows of each set. For
    a 1-Lipschitz critic evaluated on held-out samples (``eval_data``) this is, in expectation,
    a lower bound on the true :math:`W_1`; on the training samples it can exceed it (the critic
    fits the samples' noise, as the exact distance between the samples does, much more so).
    The cost is ``steps`` critic steps, independent of the number of samples. ``"clip"``
    estimates a scaled :math:`W_1` (:class:`WeightClipping`); check ``max_grad_norm``.

    Arguments:
        x, y: samples ``(n, *event)`` and ``(m, *event)``.
        constraint: ``"spectral"`` (default), ``"gp"``, ``"clip"`` or a
            :class:`LipschitzConstraint`.
        critic: a module mapping ``(k, *event)`` to ``(k,)`` values (default
            :func:`critic_mlp` for the constraint, on vectors).
        steps: critic steps.
        batch_size: rows of each set per step.
        lr: the learning rate of the constraint's optimiser (``None``: the paper's; the default
            1e-3 converges within about 1000 steps on small problems).
        optimizer: a factory ``params -> Optimizer`` instead of the constraint's.
        eval_data: held-out ``(x, y)`` samples for the final estimate (default ``(x, y)``).
        average: end with the exponential moving average of the critic's weights (decay
            :math:`1 - 5/\text{steps}`: about the last fifth of training; the start keeps the
            weight :math:`e^{-5}`) rather than the last iterate, whose estimate jitters by a few
            percent from step to step (the gradient penalty's most).
        seed: seed of the minibatch shuffling.
        progress: a tqdm progress bar.

    Returns:
        A :class:`CriticEstimate`: the estimate, the critic, its largest gradient norm on the
        evaluation points and the training history.

    Raises:
        FloatingPointError: when the critic's loss stops being finite.

    References:
        | Wasserstein GAN (Arjovsky et al., 2017), https://arxiv.org/abs/1701.07875
        | Improved Training of Wasserstein GANs (Gulrajani et al., 2017),
        | https://arxiv.org/abs/1704.00028
        | Spectral Normalization for GANs (Miyato et al., 2018), https://arxiv.org/abs/1802.05957

    Example:
        >>> from pyro_flowkit.inference.wasserstein import wasserstein1
        >>> x, y = torch.randn(1000, 2), torch.randn(1000, 2) + torch.tensor([3.0, 4.0])
        >>> w = wasserstein1(x, y, steps=300, progress=False)
        >>> 4.5 < w.estimate < 5.5, w.max_grad_norm < 1.01  # true W1 = 5
        (True, True)
    """
    x, y = _check_points("x", x), _check_points("y", y)
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"x, y: expected one event shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    check_count("steps", steps, minimum=0)
    constraint, critic = _setup(constraint, critic, x)
    n, m = len(x), len(y)

    def loss_fn(index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return _critic_loss(critic, constraint, x[index % n], y[index % m])

    def project(info: StepInfo) -> None:
        constraint.project(critic)

    ema = EMA(max(0.0, 1 - 5 / steps), critic) if average and steps else None
    critic.train()
    history = train(
        loss_fn, torch.arange(max(n, m), device=x.device), params=critic, steps=steps,
        batch_size=batch_size, optimizer=optimizer or constraint.optimizer(lr), ema=ema,
        callbacks=[project], seed=seed, progress=progress, desc=f"wasserstein1 ({constraint.name})",
    )  # fmt: skip
    if ema is not None:  # averaged after each optimiser step, before the projection: project
        critic.load_state_dict(ema.averages(), strict=False)
        constraint.project(critic)
    constraint.finish(critic.eval())
    ex, ey = (x, y) if eval_data is None else _check_eval_data(eval_data, x)
    estimate = (_mean_score(critic, ex) - _mean_score(critic, ey)).item()
    return CriticEstimate(estimate, critic, _max_grad_norm(critic, ex, ey), history)


@dataclass
class WGANResult:
    """What :func:`train_wgan` returns.

    Attributes:
        history: per generator step, the generator's loss :math:`-\\overline{f(G(z))}` and the
            metrics ``wasserstein`` (the critic's estimate on its last batch of the step) and
            ``penalty``.
        critic: the trained critic (in ``eval()`` mode).
        critic_history: per critic step, the loss and the metrics ``estimate`` and ``penalty``.
    """

    history: History
    critic: nn.Module
    critic_history: History


def _noise_fn(noise: Callable[[int], Tensor] | None, data: Tensor) -> Callable[[int], Tensor]:
    if noise is not None:
        return noise
    return lambda k: torch.randn((k, *data.shape[1:]), dtype=data.dtype, device=data.device)


def _generate(generator: nn.Module, noise: Callable[[int], Tensor], k: int, like: Tensor) -> Tensor:
    fake = generator(noise(k))
    if not isinstance(fake, Tensor) or fake.shape[1:] != like.shape[1:] or len(fake) != k:
        raise ValueError(
            f"generator: expected samples of shape ({k}, {', '.join(map(str, like.shape[1:]))}),"
            f" got {tuple(getattr(fake, 'shape', ()))}"
        )
    return fake


def train_wgan(
    generator: nn.Module,
    data: Tensor,
    critic: nn.Module | None = None,
    constraint: str | LipschitzConstraint = "spectral",
    *,
    steps: int,
    critic_steps: int = 5,
    batch_size: int = 64,
    noise: Callable[[int], Tensor] | None = None,
    lr: float | None = None,
    critic_lr: float | None = None,
    generator_optimizer: OptimizerFactory | None = None,
    critic_optimizer: OptimizerFactory | None = None,
    regularizer: Callable[[Tensor], Tensor] | None = None,
    callbacks: Sequence[Callable[[StepInfo], object]] = (),
    seed: int = 0,
    progress: bool = True,
) -> WGANResult:
    r"""Train ``generator`` as a Wasserstein GAN against a Lipschitz-constrained critic.

    Each generator step first takes ``critic_steps`` critic steps, each on a fresh batch of
    data and generated samples, minimising
    :math:`\overline{f(G(z))} - \overline{f(x)} + \text{penalty}`, then one generator step on

    .. math:: \mathcal L_G = -\frac1B \sum_b f(G(z_b)) \;\bigl[+\ \text{regularizer}(x)\bigr]

    (Arjovsky et al., Algorithm 1; Gulrajani et al., Algorithm 1). Two
    :class:`~pyro_flowkit.inference.Trainer` s take the steps: the generator's runs in the
    library's loop (:func:`~pyro_flowkit.inference.train`: progress bar, callbacks, the NaN
    check), whose batches of ``critic_steps * batch_size`` rows are split between the critic's
    steps. ``generator`` can be any module from noise to samples; a flow (whose forward map goes
    from the base to the data) trained this way keeps its exact likelihood (Flow-GAN), and
    ``regularizer=lambda x: lam * -d.log_prob(x).mean()`` gives Flow-GAN's hybrid objective.

    Arguments:
        generator: a module mapping ``noise(k)`` to ``(k, *event)`` samples.
        data: ``(n, *event)`` training points, all finite.
        critic: the critic (default :func:`critic_mlp` for the constraint, on vectors).
        constraint: ``"spectral"`` (default: it trained the best flows on 8gaussians in
            ``benchmarks/wasserstein.py``), ``"gp"``, ``"clip"`` or a
            :class:`LipschitzConstraint`.
        steps: generator steps.
        critic_steps: critic steps per generator step (the papers' 5).
        batch_size: rows per critic or generator step.
        noise: ``noise(k)`` draws ``k`` inputs of the generator (default standard normal of
            the data's event shape, dtype and device: a flow's base).
        lr, critic_lr: learning rates of the constraint's optimiser for the generator and the
            critic (default: WGAN-GP's Adam(1e-4, betas (0, 0.9)), also for spectral norm;
            WGAN's RMSprop(5e-5) for clipping).
        generator_optimizer, critic_optimizer: factories ``params -> Optimizer`` instead.
        regularizer: a function of a data batch (the last critic step's, ``batch_size``
            rows) added to the generator's loss.
        callbacks: called after every generator step with a
            :class:`~pyro_flowkit.inference.StepInfo` (returning ``True`` stops training).
        seed: seed of the data shuffling.
        progress: a tqdm progress bar.

    Returns:
        A :class:`WGANResult` with both histories and the critic.

    Raises:
        FloatingPointError: when a loss stops being finite, naming the step.

    References:
        | Wasserstein GAN (Arjovsky et al., 2017), https://arxiv.org/abs/1701.07875
        | Improved Training of Wasserstein GANs (Gulrajani et al., 2017),
        | https://arxiv.org/abs/1704.00028
        | Flow-GAN (Grover, Dhar & Ermon, 2018), https://arxiv.org/abs/1705.08868

    Example:
        >>> from pyro_flowkit.inference.wasserstein import train_wgan
        >>> data = torch.randn(512, 2) + 3.0
        >>> shift = nn.Linear(2, 2)  # a generator: noise -> samples
        >>> fit = train_wgan(shift, data, steps=60, batch_size=64, lr=5e-2, critic_lr=1e-2,
        ...                  progress=False)
        >>> len(fit.history), len(fit.critic_history), fit.history.metrics["wasserstein"][-1] < 1
        (60, 300, True)
    """
    data = _check_points("data", data)
    check_count("steps", steps, minimum=0)
    critic_steps = check_count("critic_steps", critic_steps)
    batch_size = check_count("batch_size", batch_size)
    if len(data) < critic_steps:
        raise ValueError(
            f"data: expected at least critic_steps={critic_steps} rows, got {len(data)}"
        )
    constraint, critic = _setup(constraint, critic, data)
    noise = _noise_fn(noise, data)

    def critic_loss(real: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            fake = _generate(generator, noise, len(real), real)
        return _critic_loss(critic, constraint, real, fake)

    critic_optimizer = critic_optimizer or constraint.optimizer(critic_lr)
    critic_trainer = Trainer(critic_loss, params=critic, optimizer=critic_optimizer)

    def generator_loss(batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        for real in batch.chunk(critic_steps):
            try:
                critic_trainer.step(real)
            except FloatingPointError as error:
                raise FloatingPointError(f"critic: {error}") from error
            constraint.project(critic)
        loss = -_scores(critic, _generate(generator, noise, batch_size, data)).mean()
        if regularizer is not None:
            loss = loss + regularizer(real)
        last = {k: v[-1] for k, v in critic_trainer.history.metrics.items()}
        return loss, {"wasserstein": last["estimate"], "penalty": last["penalty"]}

    critic.train()
    try:
        history = train(
            generator_loss, data, params=generator, steps=steps,
            batch_size=critic_steps * batch_size,
            optimizer=generator_optimizer or constraint.optimizer(lr), callbacks=callbacks,
            seed=seed, progress=progress, desc=f"train_wgan ({constraint.name})",
        )  # fmt: skip
    except FloatingPointError as error:
        raise FloatingPointError(f"train_wgan: {error}") from error
    finally:
        constraint.finish(critic.eval())
    return WGANResult(history, critic, critic_trainer.history)
