"""Spectral normalisation and the Lipschitz nets of invertible residual blocks."""

import pytest
import torch
import torch.nn.functional as F

from pyro_flowkit.nn import (
    LipschitzConvNet,
    LipschitzMLP,
    LipSwish,
    SpectralNormConv2d,
    SpectralNormLinear,
    frozen_spectral_norms,
)


def _layers(device):
    return [
        SpectralNormLinear(6, 9, coeff=0.8),
        SpectralNormLinear(9, 4, coeff=0.95, n_power_iterations=2),
        SpectralNormConv2d(2, 5, 3, (6, 6), coeff=0.9),
        SpectralNormConv2d(5, 3, 1, (4, 5), coeff=0.7),
    ]


def _input(layer, n=16, **kw):
    if isinstance(layer, SpectralNormLinear):
        return torch.randn(n, layer.weight.shape[1], **kw)
    return torch.randn(n, layer.weight.shape[1], *layer.input_size, **kw)


@pytest.mark.parametrize("index", range(4))
def test_exact_spectral_norm_stays_below_coeff_during_training(index, device):
    layer = _layers(device)[index].to(device=device, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.mul_(10)  # far above the bound: the normalisation must act
    layer.refresh_spectral_norm()
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    target = torch.randn_like(layer(_input(layer, device=device, dtype=torch.float64)))
    for _ in range(50):
        x = _input(layer, device=device, dtype=torch.float64)
        loss = (layer(x) - 3 * target).pow(2).mean()  # pushes the weight to grow
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert layer.exact_spectral_norm() <= layer.coeff + 1e-3
    # the bound is reached (soft rescaling does not shrink below c once sigma > c)
    assert layer.exact_spectral_norm() > layer.coeff - 1e-2


def test_conv_norm_is_the_operator_norm_on_the_input_shape(device):
    conv = SpectralNormConv2d(3, 3, 3, (5, 5), coeff=0.99).to(device=device, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.mul_(0.01)  # below the bound: the layer leaves W unchanged
    conv.refresh_spectral_norm(max_iter=20000, rtol=1e-13)
    sigma = conv.exact_spectral_norm()
    kernel_norm = torch.linalg.matrix_norm(conv.weight.reshape(3, -1), ord=2)
    torch.testing.assert_close(conv.sigma_estimate(), sigma, rtol=1e-6, atol=0)
    assert not torch.isclose(sigma, kernel_norm, rtol=1e-3)  # a different number
    x = torch.randn(200, 3, 5, 5, device=device, dtype=torch.float64)  # the bound holds on data
    ratio = F.conv2d(x, conv.weight, padding=1).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert ratio.max() <= sigma + 1e-9
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 3, 5, 5\)"):
        conv(torch.randn(2, 3, 6, 6, device=device, dtype=torch.float64))


def test_power_iteration_runs_only_when_training_with_grad(device):
    layer = SpectralNormLinear(5, 5).to(device=device, dtype=torch.float64)
    x = torch.randn(3, 5, device=device, dtype=torch.float64)
    for mode in ["eval", "no_grad", "frozen"]:
        with torch.no_grad():
            layer.u.copy_(torch.linalg.qr(torch.randn_like(layer.u).T).Q.T)
        u = layer.u.clone()
        layer.train(mode != "eval")
        if mode == "no_grad":
            with torch.no_grad():
                layer(x)
        elif mode == "frozen":
            with frozen_spectral_norms():
                layer(x)
        else:
            layer(x)
        assert torch.equal(layer.u, u), mode
    layer.train()
    layer(x)
    assert not torch.equal(layer.u, u)


def test_zero_initialised_layer_keeps_its_vectors_and_learns(device):
    layer = SpectralNormLinear(4, 3, zero_init=True).to(device=device, dtype=torch.float64)
    out = layer(torch.ones(2, 4, device=device, dtype=torch.float64))
    assert not out.any()
    eye = torch.eye(3, device=device, dtype=torch.float64)  # orthonormal rows kept
    torch.testing.assert_close(layer.u @ layer.u.T, eye, atol=1e-6, rtol=0)
    with torch.no_grad():
        layer.weight.normal_()
    layer.refresh_spectral_norm()
    torch.testing.assert_close(
        layer.sigma_estimate(), torch.linalg.matrix_norm(layer.weight, ord=2), rtol=1e-6, atol=0
    )


def test_lipswish_is_one_lipschitz_for_every_beta(device):
    act = LipSwish().to(device=device, dtype=torch.float64)
    x = torch.linspace(-20, 20, 20001, device=device, dtype=torch.float64, requires_grad=True)
    steepest = 0.0
    for beta in [0.01, 0.5, 1.0, 3.0, 50.0]:
        with torch.no_grad():
            act.raw_beta.fill_(torch.tensor(beta).expm1().log().item())  # softplus^-1
        (slope,) = torch.autograd.grad(act(x).sum(), x)
        assert slope.abs().max() <= 1.0
        steepest = max(steepest, slope.abs().max().item())
    assert steepest > 0.99  # the 1.1 is tight


def _jacobian_norms(net, shape, n, device, context=None):
    norms = []
    for _ in range(n):
        x = torch.randn(shape, device=device, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(
            lambda v: net(v.view(shape), context).reshape(-1), x.reshape(-1)
        )
        norms.append(torch.linalg.matrix_norm(jac, ord=2))
    return torch.stack(norms)


@pytest.mark.parametrize("activation", ["elu", "lipswish"])
def test_lipschitz_of_g_measured_on_its_jacobian(activation, device):
    mlp = LipschitzMLP(5, (32, 32), 2, coeff=0.9, activation=activation)
    conv = LipschitzConvNet((2, 4, 4), (8, 8), 2, coeff=0.9, activation=activation)
    context = torch.randn(2, device=device, dtype=torch.float64)
    for net, shape in [(mlp, (5,)), (conv, (2, 4, 4))]:
        net = net.to(device=device, dtype=torch.float64)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))  # large weights: the normalisation decides
            net.context.weight.mul_(10)  # the context map is not constrained
        for m in net.modules():
            if hasattr(m, "refresh_spectral_norm"):
                m.refresh_spectral_norm()
        norms = _jacobian_norms(net, shape, 5, device, context)
        assert norms.max() < 0.9**3 + 1e-6  # three layers of coefficient 0.9
        assert norms.max() > 0.01  # not a trivial (zero) map


def test_lipschitz_nets_check_their_arguments():
    with pytest.raises(ValueError, match="coeff: expected a Lipschitz coefficient in"):
        LipschitzMLP(3, coeff=1.0)
    with pytest.raises(ValueError, match="coeff: expected a positive finite number"):
        SpectralNormLinear(3, 3, coeff=0.0)
    with pytest.raises(ValueError, match="power_vectors: expected"):
        SpectralNormLinear(3, 3, power_vectors=0)
    with pytest.raises(ValueError, match="kernel_size: expected an odd"):
        SpectralNormConv2d(3, 3, 2, (4, 4))
    with pytest.raises(ValueError, match="input_size: expected"):
        SpectralNormConv2d(3, 3, 3, (4,))
    with pytest.raises(ValueError, match="activation: expected one of"):
        LipschitzMLP(3, (8,), activation="relu")
    with pytest.raises(ValueError, match="hidden_dims: expected at least one hidden layer"):
        LipschitzMLP(3, ())
    with pytest.raises(ValueError, match=r"event_shape: expected \(C, H, W\)"):
        LipschitzConvNet((3, 4), (8,))
