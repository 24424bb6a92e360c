"""Invertible residual blocks: log-det estimators and their gradients, the inverse, builders.

The shared harness (tests/test_transforms.py) runs every block and builder with exact log-dets;
here the stochastic estimators are checked against the exact log-det, in bias and in gradient.
"""

from __future__ import annotations

import math

import pytest
import torch
from harness import perturb

import pyro_flowkit as fk
from pyro_flowkit.flows import flow_distribution
from pyro_flowkit.nn import LipschitzMLP, frozen_spectral_norms, refresh_spectral_norms
from pyro_flowkit.transforms import (
    ConditionalInvertibleResidual,
    Inverse,
    InvertibleResidual,
)
from pyro_flowkit.transforms.residual import (
    banach_inverse,
    exact_log_det,
    power_series_log_det,
    series_coefficients,
)

D = 3
F64 = torch.float64


def _block(
    device, coeff=0.95, hidden=(32,), context=0, activation="elu", **options
) -> InvertibleResidual:
    """A block whose g is close to its Lipschitz bound (weights perturbed, norms converged)."""
    net = LipschitzMLP(D, hidden, context, coeff=coeff, activation=activation)
    cls = ConditionalInvertibleResidual if context else InvertibleResidual
    module = cls(net, **options).to(device=device, dtype=F64)
    perturb(module, scale=1.0)
    return module


def _stiff_block(device, **options) -> InvertibleResidual:
    """A block with g(x) = 0.95 R^T elu(0.95 R x) for a rotation R: Lip(g) near 0.9."""
    block = _block(device, hidden=(D,), **options)
    rotation = torch.linalg.qr(torch.randn(D, D, dtype=F64)).Q.to(device)
    with torch.no_grad():
        block.net.layers[0].weight.copy_(10 * rotation)
        block.net.layers[1].weight.copy_(10 * rotation.T)
    refresh_spectral_norms(block)
    return block


def _lipschitz_bound(block) -> float:
    """The product of the layers' exact spectral norms (the activations are 1-Lipschitz)."""
    return math.prod(layer.exact_spectral_norm().item() for layer in block.net.layers)


def _g_and_x(block, x):
    x = x.clone().requires_grad_()
    return block._g(x), x


def _jacobian_norms(block, x):
    gx, xg = _g_and_x(block, x)
    rows = torch.autograd.grad(gx, xg, torch.eye(D, dtype=F64, device=x.device)[:, None].expand(
        D, *x.shape), is_grads_batched=True)[0]  # fmt: skip
    return torch.linalg.matrix_norm(rows.movedim(0, -2), ord=2)


def _exact_probes(x):
    """The scaled basis vectors sqrt(D) e_i as Hutchinson probes: their mean gives exact traces."""
    eye = torch.eye(D, device=x.device, dtype=x.dtype)
    return math.sqrt(D) * eye[:, None].expand(D, *x.shape)


def _grad(loss, wrt):
    """Gradients, zeros for what the loss does not use (the last layer's bias in a log-det)."""
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt, strict=True)]


def test_truncated_series_with_exact_traces_is_within_its_tail_bound(device):
    block = _stiff_block(device).eval()
    x = 2 * torch.randn(6, D, device=device, dtype=F64)
    lip = _jacobian_norms(block, x)
    gx, xg = _g_and_x(block, x)
    exact = exact_log_det(gx, xg, 1, create_graph=False)
    basis = _exact_probes(x)
    errors = []
    for n in [1, 2, 4, 8, 16]:
        series = power_series_log_det(gx, xg, [1.0] * n, basis, 1, create_graph=False)
        bound = D * lip ** (n + 1) / ((n + 1) * (1 - lip))
        assert torch.all((series - exact).abs() <= bound + 1e-12), n
        errors.append((series - exact).abs().max().item())
    assert errors[0] > 1e-2 and errors == sorted(errors, reverse=True)  # not vacuous


def _estimates(block, x, draws, replicas=25):
    """Independent means of the block's log-det estimate at ``x`` (one roulette draw per call)."""
    batch = x.expand(replicas, D)
    with torch.no_grad():
        return torch.stack([block._map(batch)[1].mean() for _ in range(draws)])


def test_roulette_is_unbiased_and_the_short_series_is_not(device):
    block = _stiff_block(device).eval()
    candidates = 3 * torch.randn(256, D, device=device, dtype=F64)
    norms = _jacobian_norms(block, candidates)
    x = candidates[norms.argmax()][None]
    assert norms.max() > 0.7  # a stiff point: the series' tail matters
    with torch.no_grad():
        block.logdet = "exact"
        exact = block._map(x)[1]
    block.logdet, block.n_terms = "roulette", 2
    roulette = _estimates(block, x, 400)
    se = roulette.std() / math.sqrt(len(roulette))
    assert (roulette.mean() - exact).abs() < 3 * se
    block.logdet = "series"
    series = _estimates(block, x, 200)
    se = series.std() / math.sqrt(len(series))
    assert (series.mean() - exact).abs() > 10 * se  # visibly biased at two terms


def test_neumann_gradient_equals_backprop_through_the_series_with_exact_traces(device):
    block = _block(device).eval()
    x = torch.randn(4, D, device=device, dtype=F64)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], device=device, dtype=F64)
    basis = _exact_probes(x)
    grads = []
    for neumann in [True, False]:
        gx, xg = _g_and_x(block, x)
        est = power_series_log_det(gx, xg, [1.0] * 6, basis, 1, neumann_grad=neumann)
        grads.append(_grad((weights * est).sum(), [xg, *block.parameters()]))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_neumann_gradient_is_unbiased_with_sample_weights_and_context(device):
    module = _block(device, coeff=0.8, context=2, logdet="roulette", n_terms=2).eval()
    x = torch.randn(4, D, device=device, dtype=F64, requires_grad=True)
    context = torch.randn(4, 2, device=device, dtype=F64, requires_grad=True)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], device=device, dtype=F64)
    wrt = [x, context, *module.parameters()]

    def gradient(logdet: str) -> torch.Tensor:
        module.logdet = logdet
        block = module.condition(context)
        ladj = block.log_abs_det_jacobian(x, block(x))  # the map's own gradient included
        return torch.cat([g.flatten() for g in _grad((weights * ladj).sum(), wrt)])

    exact = gradient("exact")
    draws = torch.stack([gradient("roulette") for _ in range(400)])
    se = draws.std(0) / math.sqrt(len(draws))
    z = (draws.mean(0) - exact).abs() / (se + 1e-12)
    assert z.max() < 4.5  # about 40 components: the largest of |N(0, 1)| stays below this
    assert (draws.std(0) > 0).sum() > len(exact) // 2  # the check is not vacuous


def _saved_bytes(fn) -> int:
    """Bytes of tensors autograd saves for the backward pass of ``fn()``."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


@pytest.mark.parametrize("neumann", [True, False])
def test_memory_of_the_gradient_does_not_grow_with_terms_when_neumann(neumann, device):
    x = torch.randn(64, D, device=device, dtype=F64)
    saved = []
    for n_terms in [2, 8]:
        block = _block(device, logdet="series", n_terms=n_terms, neumann_grad=neumann)
        saved.append(_saved_bytes(lambda b=block: b.log_abs_det_jacobian(x, b(x))))
    if neumann:
        assert saved[0] == saved[1]
    else:
        assert saved[1] > 2 * saved[0]


def test_inverse_reaches_1e6_and_decays_as_the_banach_bound(device):
    block = _block(device).eval()
    y = 3 * torch.randn(16, D, device=device, dtype=F64)
    lip = _lipschitz_bound(block)
    assert 0.5 < lip < 0.95**2 + 1e-6
    x = block.inv(y)
    assert (x + block._g(x) - y).abs().max() < 1e-6
    torch.testing.assert_close(block(x), y, atol=1e-6, rtol=0)
    history: list[torch.Tensor] = []
    fixed, *_ = banach_inverse(block._g, y, 1e-15, 1000, floor=1e-14)
    banach_inverse(block._g, y, 0.0, 40, history)
    first = (history[0] - y).norm(dim=-1)  # |x_1 - x_0|
    for k, xk in enumerate(history, 1):
        error = (xk - fixed).norm(dim=-1)
        assert torch.all(error <= lip**k / (1 - lip) * first + 1e-12), k


def test_inverse_gradient_is_the_implicit_gradient(device):
    block = _block(device, inverse_tol=1e-13).eval()
    y = torch.randn(2, D, device=device, dtype=F64, requires_grad=True)
    x = block.inv(y)
    jac_x = torch.stack(
        [torch.autograd.grad(x[0, i], y, retain_graph=True)[0][0] for i in range(D)]
    )
    jac_y = torch.autograd.functional.jacobian(lambda v: v + block._g(v), x[0].detach())
    torch.testing.assert_close(jac_x, torch.linalg.inv(jac_y), atol=1e-9, rtol=1e-7)


def test_inversion_error_carries_residual_and_iterations(device):
    block = _block(device, coeff=0.999, hidden=(16,), inverse_max_iter=3)
    with pytest.raises(fk.InversionError, match="after 3 iterations") as info:
        block.inv(5 * torch.randn(4, D, device=device, dtype=F64))
    assert info.value.iterations == 3 and info.value.residual > 0


def test_float32_inverse_meets_its_default_tolerance(device):
    block = _block(device).float()
    y = 3 * torch.randn(64, D, device=device)
    x = block.inv(y)
    assert (x + block._g(x) - y).abs().max() < 1e-5


def _count_calls(flow) -> list[int]:
    counter = [0]
    for m in flow.modules():
        if isinstance(m, LipschitzMLP):
            m.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


@pytest.mark.parametrize("direction", ["density", "sample"])
def test_direction_decides_which_way_iterates(direction, device):
    flow = fk.flows.iresnet(D, num_blocks=3, hidden_dims=(16,), direction=direction)
    perturb(flow)
    flow = flow.to(device=device, dtype=F64)
    d = flow_distribution(flow, D)
    calls = _count_calls(flow)
    d.log_prob(torch.randn(8, D, device=device, dtype=F64))
    scoring, calls[0] = calls[0], 0
    samples = d.rsample((8,))
    sampling, calls[0] = calls[0], 0
    explicit, iterative = (scoring, sampling) if direction == "density" else (sampling, scoring)
    assert explicit == 3  # one pass of each g, the log-det from the same graph
    assert iterative > 3 * 5
    d.log_prob(samples)  # sample then score: the cache serves the log-det
    assert calls[0] == 0


def test_logdet_mode_is_not_in_the_state_dict(device):
    trained = fk.flows.residual_flow(D, num_blocks=2, hidden_dims=(16,), logdet="roulette")
    perturb(trained)
    x = torch.randn(5, D)
    trained.eval()
    flow_distribution(trained, D).log_prob(x)  # initialises the ActNorms
    exact = fk.flows.residual_flow(D, num_blocks=2, hidden_dims=(16,), logdet="exact")
    exact.load_state_dict(trained.state_dict())
    exact.eval()
    for m in trained.modules():
        if isinstance(m, InvertibleResidual):
            m.logdet = "exact"
    torch.testing.assert_close(
        flow_distribution(exact, D).log_prob(x), flow_distribution(trained, D).log_prob(x)
    )


def test_image_builder_levels_and_training_step(device):
    flow = fk.flows.residual_flow((1, 8, 8), num_blocks=1, hidden_dims=(8,), levels=2)
    flow = flow.to(device=device, dtype=F64)
    d = flow_distribution(flow, (1, 8, 8))
    x = torch.rand(16, 1, 8, 8, device=device, dtype=F64)
    loss = -d.log_prob(x).mean()
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters())
    shapes = {m.event_shape for m in flow.modules() if isinstance(m, InvertibleResidual)}
    assert shapes == {torch.Size((1, 8, 8)), torch.Size((4, 4, 4))}
    assert sum(isinstance(m, Inverse) for m in flow.modules()) == 2


def test_training_by_likelihood_improves_and_keeps_lipschitz(device):
    torch.manual_seed(0)
    data = fk.data.toy_2d("moons", 2000).to(device=device, dtype=F64)
    flow = fk.flows.residual_flow(2, num_blocks=4, hidden_dims=(32, 32)).to(device, F64)
    d = flow_distribution(flow, 2)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    losses = []
    for _ in range(200):
        loss = -d.log_prob(data[torch.randint(0, len(data), (128,))]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20 - 0.3
    for m in flow.modules():
        if hasattr(m, "exact_spectral_norm"):
            assert m.exact_spectral_norm() <= m.coeff + 1e-3


def test_eval_mode_fixes_the_map(device):
    block = _block(device, logdet="exact").eval()
    buffers = [b.clone() for b in block.buffers()]
    x = torch.randn(4, D, device=device, dtype=F64)
    y = block(x)
    torch.testing.assert_close(block.inv(y), x, atol=1e-6, rtol=0)
    assert all(torch.equal(a, b) for a, b in zip(buffers, block.buffers(), strict=True))
    with frozen_spectral_norms():
        block.train()(x)
    assert all(torch.equal(a, b) for a, b in zip(buffers, block.buffers(), strict=True))


def test_series_coefficients():
    assert series_coefficients("series", 3) == [1.0, 1.0, 1.0]
    torch.manual_seed(0)
    lengths = [len(series_coefficients("roulette", 2, 0.5)) for _ in range(4000)]
    assert min(lengths) == 2
    assert abs(sum(lengths) / len(lengths) - 3.0) < 0.1  # 2 + E[M] = 2 + (1 - p) / p
    coeffs = series_coefficients("roulette", 1, 0.25)
    assert coeffs == [1.0] + [0.75**-m for m in range(1, len(coeffs))]


def test_saving_after_sampling_and_training_passes_does_not_warn(tmp_path):
    """The sampling pass of a density-direction flow registers a gradient hook on its output;
    a cached pass kept that tensor, and pickling it warned (an error under filterwarnings)."""
    flow = fk.flows.residual_flow(2, num_blocks=2, hidden_dims=(8,))
    d = fk.flows.flow_distribution(flow, 2)
    d.log_prob(d.rsample((4,))).sum().backward()
    torch.save(flow, tmp_path / "flow.pt")  # the whole module, cache included
    torch.save(flow.state_dict(), tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "flow.pt", weights_only=False)
    x = torch.randn(3, 2)
    torch.testing.assert_close(loaded.inv(x), flow.inv(x.clone()))


def test_bad_arguments_name_themselves():
    net = LipschitzMLP(D, (8,))
    with pytest.raises(ValueError, match="logdet: expected one of"):
        InvertibleResidual(net, logdet="hutchinson")
    with pytest.raises(ValueError, match="inverse_tol: expected a positive"):
        InvertibleResidual(net, inverse_tol=0)
    with pytest.raises(ValueError, match="geom_p: expected a probability"):
        InvertibleResidual(net, geom_p=1.0)
    with pytest.raises(TypeError, match="event_shape: net has no event_shape"):
        InvertibleResidual(torch.nn.Linear(D, D))
    with pytest.raises(TypeError, match="context_dim: net has no context_features"):
        ConditionalInvertibleResidual(net)
    with pytest.raises(ValueError, match="direction: expected one of"):
        fk.flows.iresnet(D, direction="forward")
    with pytest.raises(ValueError, match="coeff: expected a Lipschitz coefficient"):
        fk.flows.iresnet(D, lipschitz=1.0)
    with pytest.raises(ValueError, match="levels: only for"):
        fk.flows.iresnet(D, levels=2)
    with pytest.raises(TypeError, match="n_term"):
        fk.flows.iresnet(D, n_term=3)
    block = InvertibleResidual(net)
    with pytest.raises(ValueError, match="logdet: expected one of"):
        block.logdet = "approx"
