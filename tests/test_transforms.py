"""The shared transform harness: every transform of the library is a row of ``CASES``.

Each row is checked, with its parameters first moved away from the identity initialisation, for
shapes under batch shapes (), (3,), (3, 4); round trips through ``_call``/``_inverse`` bypassing
the caches; ``log_abs_det_jacobian`` against ``torch.linalg.slogdet`` of the autograd Jacobian in
float64; gradients to every parameter; ``TransformedDistribution.log_prob``/``rsample``;
``state_dict`` save/load with ``weights_only=True``; ``.double()``/``.to(device)``; one network
pass per sample-then-score; and, for ``Conditional*`` twins, a context that broadcasts against
leading sample dimensions. Later issues add their rows here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pytest
import torch
from harness import (
    autograd_log_det,
    call_uncached,
    clear_caches,
    event_log_det,
    inverse_uncached,
    parts,
    perturb,
    state_dict_round_trip,
)
from pyro.distributions.conditional import ConditionalTransform
from torch import nn

import pyro_flowkit as fk
from pyro_flowkit.distributions import FlowDistribution, StandardNormal
from pyro_flowkit.nn import MLP, ConvNet, LipschitzConvNet, LipschitzMLP
from pyro_flowkit.transforms import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ConditionalAdditiveCoupling,
    ConditionalAffineCoupling,
    ConditionalInverse,
    ConditionalInvertibleResidual,
    ConditionalScaling,
    ConditionalSplitPrior,
    ConditionalSqueezeBlock,
    Inverse,
    InvertibleConv1x1,
    InvertibleResidual,
    Logit,
    Permute,
    Scaling,
    SplitPrior,
    Squeeze,
    SqueezeBlock,
    Whitening,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
    make_partition,
)

H = (8,)  # small conditioners keep the float64 Jacobians fast


def _randn(shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(shape, device=device, dtype=dtype)


def _unit(shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(shape, device=device, dtype=dtype) * 0.9 + 0.05


@dataclass
class Case:
    id: str
    build: Callable[[], nn.Module]
    event_shape: tuple[int, ...]
    context_dim: int = 0
    sample: Callable = _randn
    identity_at_init: bool = True
    data_shape: tuple[int, ...] | None = None  # the event's shape on the data side, if different
    round_trip_tol: float = 1e-10  # deep stacks of perturbed layers lose a few more digits
    random_in_training: bool = False  # built with dropout (an explicit option): eval mode only

    @property
    def conditional(self) -> bool:
        return self.context_dim > 0


def _mask(bits: str) -> torch.Tensor:
    return torch.tensor([b == "1" for b in bits])


def _affine(mask: torch.Tensor, **kw) -> AffineCoupling:
    kept = int(mask.sum())
    return AffineCoupling(mask, MLP(kept, 2 * (len(mask) - kept), H), **kw)


def _additive(mask: torch.Tensor) -> AdditiveCoupling:
    kept = int(mask.sum())
    return AdditiveCoupling(mask, MLP(kept, len(mask) - kept, H))


def _cond(cls: type, mask: torch.Tensor, per: int, c: int = 3) -> nn.Module:
    kept = int(mask.sum())
    return cls(mask, MLP(kept, per * (len(mask) - kept), H, context_features=c))


CASES = [
    Case("additive-alternating-odd", lambda: _additive(alternating_mask(5)), (5,)),
    Case("additive-half", lambda: _additive(half_mask(4)), (4,)),
    Case("affine-alternating", lambda: _affine(alternating_mask(6)), (6,)),
    Case("affine-alternating-flip", lambda: _affine(alternating_mask(6, flip=True)), (6,)),
    Case("affine-half-odd", lambda: _affine(half_mask(5)), (5,)),
    Case("affine-half-flip", lambda: _affine(half_mask(4, flip=True)), (4,)),
    Case("affine-irregular-mask", lambda: _affine(_mask("100101")), (6,)),
    Case("affine-tight-bound", lambda: _affine(half_mask(4), log_scale_bound=0.5), (4,)),
    Case("scaling", lambda: Scaling(4), (4,)),
    Case("permute", lambda: Permute.random(5), (5,), identity_at_init=False),
    Case("logit", lambda: Logit(0.05), (4,), sample=_unit, identity_at_init=False),
    Case(
        "conditional-additive",
        lambda: _cond(ConditionalAdditiveCoupling, alternating_mask(4), 1),
        (4,),
        context_dim=3,
    ),
    Case(
        "conditional-affine",
        lambda: _cond(ConditionalAffineCoupling, half_mask(5), 2),
        (5,),
        context_dim=3,
    ),
    Case("conditional-scaling", lambda: ConditionalScaling(4, 3, H), (4,), context_dim=3),
    Case("nice", lambda: fk.flows.nice(6, hidden_dims=H), (6,)),
    Case(
        "nice-half-reverse",
        lambda: fk.flows.nice(5, 3, H, mask="half", permutation="reverse"),
        (5,),
        identity_at_init=False,
    ),
    Case("realnvp", lambda: fk.flows.realnvp(6, num_layers=4, hidden_dims=H), (6,)),
    Case(
        "realnvp-random-permutation",
        lambda: fk.flows.realnvp(5, 3, H, mask="half", permutation="random"),
        (5,),
        identity_at_init=False,
    ),
    Case(
        "realnvp-dropout-eval-mode",
        lambda: fk.flows.realnvp(6, num_layers=3, hidden_dims=H, dropout=0.3).eval(),
        (6,),
        random_in_training=True,
    ),
    Case(
        "conditional-nice",
        lambda: fk.flows.conditional_nice(4, 3, num_layers=2, hidden_dims=H),
        (4,),
        context_dim=3,
    ),
    Case(
        "conditional-realnvp",
        lambda: fk.flows.conditional_realnvp(
            5, 3, num_layers=3, hidden_dims=H, permutation="random"
        ),
        (5,),
        context_dim=3,
        identity_at_init=False,
    ),
]
IMG = (2, 4, 4)
IMG4 = (4, 4, 4)


def _conv(cls: type, mask: torch.Tensor, per: int, c: int = 0, **kw) -> nn.Module:
    """A coupling on an image mask with a small ConvNet conditioner."""
    part = make_partition(mask)
    net = ConvNet(part.kept_features, per * part.moved_features, 8, context_features=c)
    return cls(mask, net, **kw)


def _initialized(module: nn.Module) -> nn.Module:
    """Mark every ActNorm as initialised, so the harness's perturbed parameters stay put."""
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.initialized.fill_(True)
    return module


def _irregular_image_mask() -> torch.Tensor:
    return torch.rand(IMG, generator=torch.Generator().manual_seed(3)) < 0.4


def _block(conditional: bool = False) -> nn.Module:
    inner = (2, 2, 2)  # one squeeze of (1, 4, 4), the leading 2 of its 4 channels
    c = 3 if conditional else 0
    coupling_cls = ConditionalAffineCoupling if conditional else AffineCoupling
    parts = [
        _conv(coupling_cls, channel_mask(inner), 2, c),
        InvertibleConv1x1(2),
        ActNorm(inner),
        _conv(coupling_cls, checkerboard_mask(inner, flip=True), 2, c),
    ]
    cls = ConditionalSqueezeBlock if conditional else SqueezeBlock
    return _initialized(cls(parts, (1, 4, 4), squeezes=1, active_channels=2))


IMAGE_CASES = [
    Case("affine-checkerboard", lambda: _conv(AffineCoupling, checkerboard_mask(IMG), 2), IMG),
    Case(
        "additive-checkerboard-flip",
        lambda: _conv(AdditiveCoupling, checkerboard_mask(IMG, True), 1),
        IMG,
    ),
    Case("affine-channel", lambda: _conv(AffineCoupling, channel_mask(IMG4), 2), IMG4),
    Case(
        "additive-channel-flip-odd",
        lambda: _conv(AdditiveCoupling, channel_mask((3, 2, 2), True), 1),
        (3, 2, 2),
    ),
    Case(
        "affine-irregular-image-mask",
        lambda: _conv(AffineCoupling, _irregular_image_mask(), 2, log_scale_bound=1.0),
        IMG,
    ),
    Case("actnorm-image", lambda: _initialized(ActNorm(IMG)), IMG, identity_at_init=False),
    Case("actnorm-vector", lambda: _initialized(ActNorm(5)), (5,), identity_at_init=False),
    Case(
        "actnorm-per-position",
        lambda: _initialized(ActNorm(IMG, per_position=True)),
        IMG,
        identity_at_init=False,
    ),
    Case("conv1x1-lu", lambda: InvertibleConv1x1(4), IMG4, identity_at_init=False),
    Case("conv1x1-dense", lambda: InvertibleConv1x1(4, lu=False), IMG4, identity_at_init=False),
    Case(
        "permute-channels",
        lambda: Permute(torch.randperm(4), IMG4),
        IMG4,
        identity_at_init=False,
    ),
    Case("squeeze", Squeeze, IMG, identity_at_init=False, data_shape=(8, 2, 2)),
    Case("split-prior", lambda: SplitPrior(IMG4), IMG4),
    Case("squeeze-block", _block, (1, 4, 4), identity_at_init=False),
    Case(
        "conditional-affine-checkerboard",
        lambda: _conv(ConditionalAffineCoupling, checkerboard_mask(IMG), 2, 3),
        IMG,
        context_dim=3,
    ),
    Case(
        "conditional-additive-channel",
        lambda: _conv(ConditionalAdditiveCoupling, channel_mask(IMG4), 1, 3),
        IMG4,
        context_dim=3,
    ),
    Case("conditional-split-prior", lambda: ConditionalSplitPrior(IMG4, 3), IMG4, context_dim=3),
    Case(
        "conditional-squeeze-block",
        lambda: _block(conditional=True),
        (1, 4, 4),
        context_dim=3,
        identity_at_init=False,
    ),
    Case(
        "realnvp-image",
        lambda: fk.flows.realnvp((1, 4, 4), hidden_channels=8),
        (1, 4, 4),
        round_trip_tol=1e-7,
    ),
    Case(
        "realnvp-image-3-scales-dropout-eval-mode",
        lambda: fk.flows.realnvp((1, 8, 8), num_scales=3, hidden_channels=4, dropout=0.2).eval(),
        (1, 8, 8),
        round_trip_tol=1e-7,
        random_in_training=True,
    ),
    Case(
        "glow",
        lambda: _initialized(fk.flows.glow((1, 4, 4), levels=2, depth=2, hidden_channels=8)),
        (1, 4, 4),
        identity_at_init=False,
    ),
    Case(
        "glow-additive-shuffle-one-level",
        lambda: _initialized(
            fk.flows.glow(IMG, 1, 2, 8, coupling="additive", permutation="shuffle")
        ),
        IMG,
        identity_at_init=False,
    ),
    Case(
        "glow-dense-conv1x1-prior-net",
        lambda: _initialized(fk.flows.glow((1, 4, 4), 2, 1, 8, lu=False, prior_hidden_channels=4)),
        (1, 4, 4),
        identity_at_init=False,
    ),
    Case(
        "glow-reverse",
        lambda: _initialized(fk.flows.glow((1, 4, 4), 2, 1, 8, permutation="reverse")),
        (1, 4, 4),
        identity_at_init=False,
    ),
    Case(
        "conditional-glow",
        lambda: _initialized(fk.flows.conditional_glow((1, 4, 4), 3, 2, 2, 8)),
        (1, 4, 4),
        context_dim=3,
        identity_at_init=False,
    ),
    Case(
        "conditional-realnvp-image",
        lambda: fk.flows.conditional_realnvp((1, 4, 4), 3, hidden_channels=8),
        (1, 4, 4),
        context_dim=3,
        round_trip_tol=1e-7,
    ),
]
CASES += IMAGE_CASES

# Invertible ResNets: exact log-dets, a fixed point solved to float64 resolution.
EXACT = {"logdet": "exact", "inverse_tol": 1e-13, "inverse_max_iter": 500}


def _residual(shape: tuple[int, ...], c: int = 0, inverse: bool = False) -> nn.Module:
    if len(shape) == 1:
        net = LipschitzMLP(shape[0], H, c, coeff=0.7, activation="lipswish")
    else:
        net = LipschitzConvNet(shape, (4,), c, coeff=0.7)
    if c:
        block = ConditionalInvertibleResidual(net, **EXACT)
        return ConditionalInverse(block) if inverse else block
    block = InvertibleResidual(net, **EXACT)
    return Inverse(block) if inverse else block


RESIDUAL_CASES = [
    Case("residual", lambda: _residual((4,)), (4,)),
    Case("residual-inverse", lambda: _residual((4,), inverse=True), (4,)),
    Case("residual-conv", lambda: _residual(IMG), IMG),
    Case("conditional-residual", lambda: _residual((4,), 3), (4,), context_dim=3),
    Case(
        "conditional-residual-conv-inverse",
        lambda: _residual(IMG, 3, inverse=True),
        IMG,
        context_dim=3,
    ),
    Case("iresnet", lambda: fk.flows.iresnet(3, 2, H, 0.7, **EXACT), (3,)),
    Case(
        "iresnet-sample",
        lambda: fk.flows.iresnet(3, 2, H, 0.7, direction="sample", **EXACT),
        (3,),
    ),
    Case(
        "residual-flow-image",
        lambda: _initialized(fk.flows.residual_flow((1, 4, 4), 1, (4,), 0.7, **EXACT)),
        (1, 4, 4),
        identity_at_init=False,
    ),
    Case(
        "conditional-residual-flow",
        lambda: _initialized(fk.flows.conditional_residual_flow(3, 2, 2, H, 0.7, **EXACT)),
        (3,),
        context_dim=2,
        identity_at_init=False,
    ),
]
CASES += RESIDUAL_CASES


def _whitened_flow() -> nn.Module:
    """Couplings after a whitening fitted to 3 rows in 5 dimensions (a singular covariance)."""
    couplings = fk.flows.realnvp(5, num_layers=2, hidden_dims=H)
    rows = torch.randn(3, 5, dtype=torch.float64)
    return fk.transforms.compose([*couplings.parts, Whitening.from_data(rows)])


WHITENING_CASES = [
    Case("whitening", lambda: Whitening(5), (5,)),
    Case(
        "whitening-fitted",
        lambda: Whitening.from_data(
            torch.randn(40, 5, dtype=torch.float64) @ torch.randn(5, 5, dtype=torch.float64) + 3
        ),
        (5,),
        identity_at_init=False,
    ),
    Case("whitening-singular-then-couplings", _whitened_flow, (5,), identity_at_init=False),
]
CASES += WHITENING_CASES
CONDITIONAL = [c for c in CASES if c.conditional]
LEARNABLE = [c for c in CASES if c.identity_at_init]

cases = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
modes = pytest.mark.parametrize("mode", ["train", "eval"])


def instantiate(
    case: Case, device: torch.device, dtype: torch.dtype = torch.float64, mode: str | None = None
):
    """The row's module (perturbed, moved; in training or evaluation ``mode`` if given), the
    plain transform to test, and the context used."""
    module = case.build().to(device=device, dtype=dtype)
    if mode is not None:
        if mode == "train" and case.random_in_training:
            pytest.skip("built with dropout: a random map in training mode, by request")
        module.train(mode == "train")
    perturb(module)
    if not case.conditional:
        return module, module, None
    context = torch.randn(case.context_dim, device=device, dtype=dtype)
    return module, module.condition(context), context


def sample(
    case: Case, batch: tuple[int, ...], device: torch.device, dtype=torch.float64, data=False
):
    """Draws on the base side of the transform (its domain), or on the data side."""
    event = case.data_shape if data and case.data_shape else case.event_shape
    return case.sample(torch.Size(batch + event), device, dtype)


@cases
@pytest.mark.parametrize("batch", [(), (3,), (3, 4)], ids=str)
def test_shapes(case, batch, device):
    _, t, _ = instantiate(case, device)
    x = sample(case, batch, device)
    y = t(x)
    assert y.shape == sample(case, batch, device, data=True).shape
    assert t.inv(y).shape == x.shape
    assert event_log_det(t, x, y, len(case.event_shape)).shape == batch


@cases
@modes
def test_round_trip_bypassing_cache(case, mode, device):
    _, t, _ = instantiate(case, device, mode=mode)
    x = sample(case, (3, 2), device)
    y = call_uncached(t, x)
    if case.identity_at_init:
        assert not torch.allclose(y, x, atol=1e-3)
    tol = case.round_trip_tol
    torch.testing.assert_close(inverse_uncached(t, y), x, atol=tol, rtol=tol)
    if case.sample is _randn:  # the codomain is the reals too
        z = sample(case, (3,), device, data=True)
        torch.testing.assert_close(call_uncached(t, inverse_uncached(t, z)), z, atol=tol, rtol=tol)


@cases
@modes
def test_round_trip_through_the_public_api(case, mode, device):
    """``t.inv(t(x).clone())``: a clone is not the cached output, so the inverse really runs; a
    new flow is a bijection in training mode too (DESIGN.md: no dropout unless asked for)."""
    _, t, _ = instantiate(case, device, mode=mode)
    x = sample(case, (3,), device)
    tol = case.round_trip_tol
    torch.testing.assert_close(t.inv(t(x).clone()), x, atol=tol, rtol=tol)


@cases
@modes
def test_log_det_matches_autograd_jacobian(case, mode, device):
    _, t, _ = instantiate(case, device, mode=mode)
    shape = torch.Size(case.event_shape)
    for x in sample(case, (3,), device):
        clear_caches(t)
        expected = autograd_log_det(t, x, shape)
        y = t(x)
        torch.testing.assert_close(
            event_log_det(t, x, y, len(shape)), expected, atol=1e-8, rtol=1e-8
        )
        clear_caches(t)  # the same value from the inverse pass
        y = y.detach().clone()
        x_back = t.inv(y)
        torch.testing.assert_close(
            event_log_det(t, x_back, y, len(shape)), expected, atol=1e-8, rtol=1e-8
        )


@pytest.mark.parametrize("case", LEARNABLE, ids=lambda c: c.id)
def test_new_transform_is_identity(case, device):
    module = case.build().to(device=device, dtype=torch.float64)
    t = (
        module.condition(torch.randn(case.context_dim, device=device, dtype=torch.float64))
        if (case.conditional)
        else module
    )
    x = sample(case, (3,), device)
    y = t(x)
    torch.testing.assert_close(y, x, atol=0, rtol=0)
    assert torch.all(event_log_det(t, x, y, len(case.event_shape)) == 0)


def _distribution(t, case: Case, device: torch.device) -> dist.TransformedDistribution:
    loc = torch.zeros(case.event_shape, device=device, dtype=torch.float64)
    base = dist.Normal(loc, torch.ones_like(loc)).to_event(len(case.event_shape))
    return dist.TransformedDistribution(base, [t])


@cases
def test_gradients_reach_every_parameter(case, device):
    module, t, context = instantiate(case, device)
    if context is not None:
        context.requires_grad_(True)
        t = module.condition(context)
    if not list(module.parameters()):
        pytest.skip("no parameters")
    d = _distribution(t, case, device)
    loss = d.log_prob(sample(case, (4,), device)).sum() + d.rsample((4,)).pow(2).sum()
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} receives no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has a zero gradient"
    if context is not None:
        assert context.grad is not None and context.grad.abs().sum() > 0


@cases
def test_transformed_distribution(case, device):
    _, t, _ = instantiate(case, device)
    d = _distribution(t, case, device)
    y = sample(case, (2, 3), device, data=True)
    clear_caches(t)
    x = inverse_uncached(t, y)
    clear_caches(t)
    expected = d.base_dist.log_prob(x) - event_log_det(
        t, x, call_uncached(t, x), len(case.event_shape)
    )
    clear_caches(t)
    torch.testing.assert_close(d.log_prob(y), expected, atol=1e-9, rtol=1e-9)
    if case.sample is _randn:
        draws = d.rsample((5,))
        assert draws.shape == (5, *(case.data_shape or case.event_shape))
        assert torch.isfinite(d.log_prob(draws)).all()


def _count_network_calls(module: nn.Module) -> list[int]:
    counter = [0]
    for m in module.modules():
        if isinstance(m, MLP | ConvNet):
            m.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


@cases
@pytest.mark.parametrize("kind", ["pyro", "flowkit"])
def test_sample_then_score_runs_each_network_once(case, kind, device):
    module, t, _ = instantiate(case, device)
    networks = sum(isinstance(m, MLP | ConvNet) for m in module.modules())
    if not networks or case.sample is not _randn:
        pytest.skip("no conditioner network")
    counter = _count_network_calls(module)
    if kind == "pyro":
        d = _distribution(t, case, device)
    else:  # the distribution flow_distribution builds, scoring through inverse_and_log_det
        base = StandardNormal(case.event_shape, device=device, dtype=torch.float64)
        d = FlowDistribution(base, parts(t))
    draws = d.rsample((4,))
    d.log_prob(draws)
    assert counter[0] == networks


@cases
def test_state_dict_round_trip(case, device):
    module, t, context = instantiate(case, device)
    other = case.build().to(device=device, dtype=torch.float64)
    other.load_state_dict(state_dict_round_trip(module))
    t_other = other.condition(context) if case.conditional else other
    x = sample(case, (3,), device)
    torch.testing.assert_close(t_other(x), t(x), atol=0, rtol=0)


@cases
def test_double_float_and_to_device(case, device):
    module = case.build()
    perturb(module)
    for dtype, convert in [(torch.float64, nn.Module.double), (torch.float32, nn.Module.float)]:
        module = convert(module).to(device)
        for tensor in [*module.parameters(), *module.buffers()]:
            assert tensor.device.type == device.type
            assert not tensor.is_floating_point() or tensor.dtype == dtype
        t = (
            module.condition(torch.randn(case.context_dim, device=device, dtype=dtype))
            if (case.conditional)
            else module
        )
        x = sample(case, (2,), device, dtype)
        y = t(x)
        assert y.dtype == dtype and y.device.type == device.type
        assert event_log_det(t, x, y, len(case.event_shape)).dtype == dtype


@cases
def test_wrong_event_shape_raises(case, device):
    _, t, _ = instantiate(case, device)
    if all(leaf.event_dim == 0 for leaf in parts(t)):
        pytest.skip("element-wise transform: any shape is valid")
    bad = torch.randn(2, case.event_shape[-1] + 1, device=device, dtype=torch.float64)
    with pytest.raises(ValueError, match="expected a tensor whose trailing shape"):
        t(bad)
    with pytest.raises(ValueError, match="expected a tensor whose trailing shape"):
        t.inv(bad)


@pytest.mark.parametrize("case", CONDITIONAL, ids=lambda c: c.id)
def test_conditional_context_broadcasts_against_sample_dims(case, device):
    module, _, _ = instantiate(case, device)
    assert isinstance(module, ConditionalTransform)
    context = torch.randn(3, case.context_dim, device=device, dtype=torch.float64)
    x = sample(case, (5, 3), device)
    t = module.condition(context)
    y = t(x)
    ladj = event_log_det(t, x, y, len(case.event_shape))
    assert y.shape == x.shape and ladj.shape == (5, 3)
    for j in range(3):
        tj = module.condition(context[j])
        yj = tj(x[:, j])
        torch.testing.assert_close(y[:, j], yj, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(
            ladj[:, j], event_log_det(tj, x[:, j], yj, len(case.event_shape))
        )
    torch.testing.assert_close(t.inv(y), x, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("case", CONDITIONAL, ids=lambda c: c.id)
def test_conditional_rejects_wrong_context(case, device):
    module, _, _ = instantiate(case, device)
    with pytest.raises(ValueError, match="context"):
        module.condition(torch.randn(2, case.context_dim + 1, device=device))


@cases
def test_cache_is_never_stale(case, device):
    """One fixed data tensor scored before and after a parameter update, and under no_grad."""
    module, t, _ = instantiate(case, device)
    d = _distribution(t, case, device)
    y = sample(case, (4,), device, data=True)
    with torch.no_grad():
        d.log_prob(y)
    first = d.log_prob(y)
    if not list(module.parameters()):
        assert not first.requires_grad
        return
    assert first.requires_grad, "a result cached under no_grad was reused with grad enabled"
    first.sum().backward()
    perturb(module, 0.05)  # as an optimiser step would: in place
    second = d.log_prob(y)
    second.sum().backward()  # a reused pass would have its graph freed already
    clear_caches(t)
    torch.testing.assert_close(second, d.log_prob(y))
    assert not torch.allclose(first, second)


def _scoring_a_learnable_transform(case: Case, device: torch.device) -> tuple:
    """The row's module, its plain transform, their distribution and data to score."""
    module, t, _ = instantiate(case, device)
    if not list(module.parameters()):
        pytest.skip("no parameters")
    return module, t, _distribution(t, case, device), sample(case, (4,), device, data=True)


@cases
def test_scoring_one_tensor_twice_with_a_backward_between(case, device):
    _, _, d, y = _scoring_a_learnable_transform(case, device)
    first = d.log_prob(y)
    first.sum().backward()
    second = d.log_prob(y)  # no optimiser step: only the gradients changed
    second.sum().backward()
    torch.testing.assert_close(second, first)


@cases
def test_loading_new_parameter_objects_invalidates_the_cache(case, device):
    module, t, d, y = _scoring_a_learnable_transform(case, device)
    before = d.log_prob(y).detach()
    other = case.build().to(device=device, dtype=torch.float64)
    perturb(other)
    module.load_state_dict(other.state_dict(), assign=True)  # new Parameter objects
    after = d.log_prob(y)
    clear_caches(t)
    torch.testing.assert_close(after, d.log_prob(y))
    assert not torch.allclose(before, after)


@cases
def test_outputs_are_contiguous(case, device):
    """A later transform (e.g. ``AffineTransform(event_dim=3)``) may ``.view()`` them."""
    _, t, _ = instantiate(case, device)
    x = sample(case, (3, 2), device)
    y = t(x)
    assert y.is_contiguous() and t.inv(y.clone()).is_contiguous()
    for name, p in t.named_parameters():
        assert p.is_contiguous(), f"{name} is not contiguous"


@cases
def test_pyro_module_registers_the_parameters_the_module_trains(case, device):
    """``pyro.module`` must hand the param store the very tensors the module holds, so that
    an SVI step updates the module (a non-contiguous parameter would be registered as a copy)."""
    module, _, _ = instantiate(case, device)
    pyro.module("m", module)
    store = pyro.get_param_store()
    for name, p in module.named_parameters():
        assert store[f"m$$${name}"] is p, f"{name} is registered as a copy"


@cases
def test_deepcopy_after_a_training_pass(case, device):
    """The cached pass holds graph tensors, which ``copy.deepcopy`` cannot copy: it is dropped;
    the copy computes the same map and trains independently."""
    module, t, context = instantiate(case, device)
    d = _distribution(t, case, device)
    log_p = d.log_prob(sample(case, (4,), device, data=True))
    if log_p.requires_grad:
        log_p.sum().backward()
    other = copy.deepcopy(module)
    t_other = other.condition(context) if case.conditional else other
    x = sample(case, (3,), device)
    torch.testing.assert_close(t_other(x), call_uncached(t, x), atol=0, rtol=0)
    if list(module.parameters()):
        perturb(other, 0.05)  # the copy's parameters are its own
        assert not torch.equal(call_uncached(t_other, x), call_uncached(t, x))


@cases
def test_other_dtype_is_named(case, device):
    module, t, _ = instantiate(case, device, dtype=torch.float32)
    if not any(p.is_floating_point() for p in [*module.parameters(), *module.buffers()]):
        pytest.skip("no floating parameters: any dtype is valid")
    x = sample(case, (2,), device, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"expected a torch.float32 tensor .* got torch.float64"):
        t(x)
    with pytest.raises(TypeError, match=r"expected a torch.float32 tensor .* got torch.float64"):
        t.inv(sample(case, (2,), device, dtype=torch.float64, data=True))


@cases
def test_an_empty_batch_maps_to_an_empty_batch(case, device):
    """``sample((0,))`` must not crash (a fixed-point inverse took a max over nothing)."""
    _, t, _ = instantiate(case, device)
    x = sample(case, (0,), device)
    y = t(x)
    assert y.shape == sample(case, (0,), device, data=True).shape
    assert t.inv(y.clone()).shape == x.shape
