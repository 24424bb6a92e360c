"""Flow guides: AutoFlow against AutoNormal (ELBO and PSIS k-hat), initialisation, constrained
sites, the amortised conditional-flow guide under subsampling, and the ArviZ conversion."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from harness import guide_and_model_traces
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal, init_to_value
from torch import nn

from pyro_flowkit.diagnostics import from_guide, psis_diagnostic
from pyro_flowkit.guides import AmortizedFlowGuide, AutoFlow

STEPS = 1500


def banana():
    x1 = pyro.sample("x1", dist.Normal(0.0, 1.0))
    pyro.sample("x2", dist.Normal(x1**2 - 1, 0.5))


def funnel(d=9):
    v = pyro.sample("v", dist.Normal(0.0, 3.0))
    pyro.sample("x", dist.Normal(torch.zeros(d), torch.exp(v / 2)[..., None]).to_event(1))


def fit(model, guide, steps=STEPS, lr=0.01, *args):
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / steps)})
    svi = SVI(model, guide, optim, elbo)
    for _ in range(steps):
        svi.step(*args)
    return guide


def elbo_and_khat(model, guide):
    elbo = -Trace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1).loss(
        model, guide
    )
    khats = [
        psis_diagnostic(model, guide, num_samples=20000, max_plate_nesting=1) for _ in range(3)
    ]
    return elbo, sum(khats) / 3


@pytest.mark.parametrize("model", [banana, funnel], ids=["banana", "funnel10d"])
def test_autoflow_beats_autonormal_in_elbo_and_khat(model):
    """Both targets are normalised, so the ELBO's optimum is 0 (log Z) and the gap is the KL.

    ``benchmarks/guides.py`` (the same protocol, seeds 0-5): banana ELBO -0.05..-0.17 against
    -0.55..-0.59 and k-hat 0.41-0.72 against 0.74-0.92; funnel ELBO -0.47..-0.83 against
    -1.95..-2.00 and k-hat 0.72-0.82 against 0.81-1.01, lower in every seed but at or above 0.7
    for both, where PSIS says neither is trustworthy; in an earlier study with another order of
    random draws the funnel's k-hat was lower in only 4 of 6 seeds, hence the tolerance below.
    """
    torch.set_default_dtype(torch.float64)
    try:
        normal = fit(model, AutoNormal(model))
        pyro.clear_param_store()
        flow = fit(model, AutoFlow(model, num_layers=4, hidden_dims=(32, 32)))
        elbo_normal, khat_normal = elbo_and_khat(model, normal)
        elbo_flow, khat_flow = elbo_and_khat(model, flow)
    finally:
        torch.set_default_dtype(torch.float32)
    assert elbo_flow > elbo_normal + 0.1 and elbo_flow < 0.05
    if model is banana:
        assert khat_flow < khat_normal
    else:  # both stay at or above 0.7 on the funnel; the flow's k-hat is not materially higher
        assert khat_flow < khat_normal + 0.1


def constrained(y):
    rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
    mix = pyro.sample("mix", dist.Dirichlet(torch.ones(3)))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Poisson(rate * 3 * mix[..., 0]), obs=y)


def _count_inverse_passes(module: nn.Module) -> list[int]:
    counter = [0]
    for m in module.modules():
        if hasattr(m, "_backward"):
            inverse = m._backward

            def counted(y, inverse=inverse):
                counter[0] += 1
                return inverse(y)

            m._backward = counted
    return counter


@pytest.mark.parametrize("flow", ["realnvp", "iresnet"])
def test_svi_steps_never_run_the_flow_inverse(flow):
    """The guide scores its own sample: the affine map's cache hands the flow the tensor it
    produced (no inverse pass; for iresnet that would be a fixed-point solve, which could raise
    InversionError in training)."""
    kw = {"num_layers": 2} if flow == "realnvp" else {"num_blocks": 2}
    guide = AutoFlow(banana, flow, hidden_dims=(8,), **kw)
    guide()
    counter = _count_inverse_passes(guide.flow)
    svi = SVI(banana, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    for _ in range(10):
        svi.step()
    assert counter[0] == 0


def test_initialisation_honours_init_loc_fn():
    y = torch.tensor([3.0, 5.0, 4.0])
    init = init_to_value(values={"rate": torch.tensor(7.0), "mix": torch.tensor([0.5, 0.3, 0.2])})
    guide = AutoFlow(constrained, init_loc_fn=init, init_scale=0.01, num_layers=2)
    draws = Predictive(constrained, guide=guide, num_samples=400, return_sites=["rate", "mix"])(y)
    assert draws["rate"].mean().item() == pytest.approx(7.0, rel=0.01)
    assert torch.allclose(draws["mix"].mean(0), torch.tensor([0.5, 0.3, 0.2]), atol=0.01)
    # the median (u = 0, an identity flow) is the initial point itself
    median = guide.median(y)
    assert median["rate"].item() == pytest.approx(7.0, rel=1e-3)


def gamma_poisson(y):
    """Two independent rates (a coupling flow needs two dimensions); the first sees ``y``."""
    rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
    pyro.sample("other", dist.Gamma(3.0, 2.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Poisson(rate), obs=y)


def test_constrained_site_posterior_and_quantiles():
    y = torch.tensor([3.0, 5.0, 4.0, 6.0, 2.0, 4.0, 5.0, 3.0])
    guide = fit(gamma_poisson, AutoFlow(gamma_poisson, num_layers=2, hidden_dims=(16,)), 1500,
                0.01, y)  # fmt: skip
    exact = dist.Gamma(2.0 + y.sum(), 1.0 + len(y))  # mean 3.78, sd 0.63
    q = guide.quantiles([0.1, 0.5, 0.9], y)["rate"]
    icdf = torch.distributions.Gamma(exact.concentration, exact.rate)
    draws = icdf.sample((200000,))
    expected = torch.quantile(draws, torch.tensor([0.1, 0.5, 0.9]))
    assert torch.allclose(q.flatten(), expected, rtol=0.06), (q, expected)
    assert guide.median(y)["rate"].item() == pytest.approx(expected[1].item(), rel=0.05)
    with pytest.raises(NotImplementedError, match="no closed-form loc/scale"):
        guide._loc_scale(y)


def test_mixed_supports_are_sampled_on_their_supports():
    y = torch.tensor([3.0, 5.0, 4.0])
    guide = fit(constrained, AutoFlow(constrained, num_layers=2, hidden_dims=(8,)), 20, 0.01, y)
    draws = Predictive(constrained, guide=guide, num_samples=50, return_sites=["rate", "mix"])(y)
    assert (draws["rate"] > 0).all() and draws["mix"].shape == (50, 1, 3)
    assert torch.allclose(draws["mix"].sum(-1), torch.ones(50, 1))


def test_flow_options_and_errors():
    for flow in ["nice", "iresnet"]:
        guide = AutoFlow(funnel, flow=flow)
        assert guide()["x"].shape == (9,)
    custom = AutoFlow(funnel, flow=lambda dim: pyro.distributions.transforms.Planar(dim))
    assert custom()["v"].shape == ()
    with pytest.raises(ValueError, match="flow: expected one of"):
        AutoFlow(funnel, flow="maf")
    with pytest.raises(ValueError, match="flow: expected one of .* or a callable, got 3"):
        AutoFlow(funnel, flow=3)
    with pytest.raises(ValueError, match="init_scale: expected a positive finite number"):
        AutoFlow(funnel, init_scale=0.0)
    with pytest.raises(ValueError, match="at least 2 latent dimensions"):
        AutoFlow(lambda: pyro.sample("a", dist.Normal(0.0, 1.0)))()


# ---------------------------------------------------------------- amortised guides

W = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.3, 0.3]])
NOISE = 0.5


def linear_gaussian(x):
    with pyro.plate("rows", len(x), subsample_size=getattr(linear_gaussian, "n", None)) as idx:
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T, NOISE).to_event(1), obs=x[idx])


def exact_log_evidence(x):
    cov = W @ W.T + NOISE**2 * torch.eye(3)
    return dist.MultivariateNormal(torch.zeros(3), cov).log_prob(x)


def encoder(context_dim):
    return nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 4 + context_dim))


def test_amortised_guide_reaches_the_exact_evidence():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, generator=g) @ W.T + NOISE * torch.randn(512, 3, generator=g)
    guide = AmortizedFlowGuide("z", "rows", encoder(8), 2, 8, num_layers=2, hidden_dims=(16,),
                               subsample_size=64)  # fmt: skip
    linear_gaussian.n = 64
    try:
        svi = SVI(linear_gaussian, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
        for _ in range(1500):
            svi.step(x)
    finally:
        linear_gaussian.n = None
    guide.subsample_size = None
    elbo = -Trace_ELBO(num_particles=20).loss(linear_gaussian, guide, x) / len(x)
    exact = exact_log_evidence(x).mean().item()
    assert exact - 0.1 < elbo <= exact + 0.02  # 0.03-0.06 nats below over seeds 0-4


def test_subsampled_plate_shapes_and_scaling():
    x = torch.randn(100, 3)
    guide = AmortizedFlowGuide("z", "rows", encoder(4), 2, 4, subsample_size=10,
                               num_layers=2, hidden_dims=(8,))  # fmt: skip
    guide_trace, model_trace = guide_and_model_traces(linear_gaussian, guide, x)
    z = guide_trace.nodes["z"]
    assert z["value"].shape == (10, 2) and z["scale"] == pytest.approx(10.0)
    assert model_trace.nodes["x"]["value"].shape == (10, 3)
    assert model_trace.nodes["x"]["scale"] == pytest.approx(10.0)


def test_new_flow_guide_equals_the_gaussian_guide():
    x = torch.randn(7, 3)
    net = encoder(4)
    flow = AmortizedFlowGuide("z", "rows", net, 2, 4, num_layers=2, hidden_dims=(8,))
    gauss = AmortizedFlowGuide("z", "rows", encoder(0), 2, 0)
    gauss.encoder.load_state_dict({k: v[: 4 + 0] if v.shape[0] == 8 else v
                                   for k, v in net.state_dict().items()})  # fmt: skip
    z = torch.randn(7, 2)
    torch.testing.assert_close(flow.posterior(x).log_prob(z), gauss.posterior(x).log_prob(z))
    with pytest.raises(ValueError, match="encoder: expected outputs of size"):
        AmortizedFlowGuide("z", "rows", encoder(3), 2, 4).posterior(x)


# ---------------------------------------------------------------- diagnostics


def normal_model():
    pyro.sample("a", dist.Normal(0.0, 1.0))


def test_khat_separates_a_good_guide_from_a_narrow_one():
    good = psis_diagnostic(normal_model, lambda: pyro.sample("a", dist.Normal(0.0, 1.1)),
                           num_samples=4000)  # fmt: skip
    assert good < 0.5
    # for q = N(0, s^2) and p = N(0, 1) the weights' tail index is k = 1 - s^2: 0.91 here; one
    # estimate from 4000 draws ranges over 0.65-1.07, so average five (vectorised) estimates
    narrow = lambda: pyro.sample("a", dist.Normal(0.0, 0.3))  # noqa: E731
    estimates = [psis_diagnostic(normal_model, narrow, num_samples=4000, max_plate_nesting=1)
                 for _ in range(5)]  # fmt: skip
    assert sum(estimates) / 5 > 0.7


def test_inference_data_from_a_guide():
    y = torch.tensor([3.0, 5.0, 4.0, 6.0])
    guide = fit(gamma_poisson, AutoFlow(gamma_poisson, num_layers=2, hidden_dims=(8,)), 200, 0.02,
                y)  # fmt: skip
    idata = from_guide(guide, gamma_poisson, y, num_samples=300)
    assert idata.posterior["rate"].shape == (4, 75)  # 300 draws as 4 chains
    assert idata.posterior_predictive["y"].shape == (4, 75, 4)
    assert (idata.observed_data["y"].values == y.numpy()).all()
    assert (idata.posterior["rate"].values > 0).all()
    # replicated data follow the posterior draws: their mean is near the mean rate
    ppc = idata.posterior_predictive["y"].values.mean()
    assert abs(ppc - idata.posterior["rate"].values.mean()) < 0.4


# ---------------------------------------------------------------- eight schools (issue 23)

SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def centred_schools():
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", 8):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, SCHOOLS_SIGMA), obs=SCHOOLS_Y)


def noncentred_schools():
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", 8):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu + tau * eta, SCHOOLS_SIGMA), obs=SCHOOLS_Y)


@pytest.mark.parametrize("model", [centred_schools, noncentred_schools],
                         ids=["centred", "noncentred"])  # fmt: skip
def test_eight_schools_stays_finite_at_tutorial_learning_rates(model):
    """The default AutoFlow under plain Adam at lr 0.01 (Pyro's tutorials). Before issue 23 the
    centred model's loss was inf at step 5 and the guide raised at step 6 for seed 4 (and after
    464 steps for seed 3): the 8 couplings of two 64-wide layers moved their outputs by about
    lr x fan-in per step, and the shifts compounded through the stack (max |z| 5, 95, 763, NaN)."""
    for seed in range(5):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        guide = AutoFlow(model)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
        losses = torch.tensor([svi.step() for _ in range(60)])
        assert torch.isfinite(losses).all(), seed
        params = [guide.loc, guide.scale, *guide.flow.parameters()]
        assert all(torch.isfinite(p).all() for p in params), seed


def test_noncentred_eight_schools_posterior_means_match_nuts():
    """NUTS (many chains, long runs): E[mu] = 4.4, E[tau] = 3.6. Over seeds 0-4 this protocol
    gives mu 4.4-4.7 and tau 2.5-3.2 (VI's usual shrinkage of tau)."""
    pyro.set_rng_seed(0)
    guide = AutoFlow(noncentred_schools)
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / 400)})
    svi = SVI(noncentred_schools, guide, optim, Trace_ELBO())
    for _ in range(400):
        svi.step()
    draws = Predictive(noncentred_schools, guide=guide, num_samples=4000,
                       return_sites=["mu", "tau"])()  # fmt: skip
    assert draws["mu"].mean().item() == pytest.approx(4.4, abs=1.0)
    assert draws["tau"].mean().item() == pytest.approx(3.6, abs=1.2)


def test_a_non_finite_step_names_the_guide_the_step_and_a_remedy():
    guide = AutoFlow(noncentred_schools)
    svi = SVI(noncentred_schools, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    for _ in range(2):
        svi.step()
    with torch.no_grad():  # what a diverged optimiser step leaves behind
        next(guide.flow.parameters())[0] = float("nan")
    with pytest.raises(FloatingPointError) as info:
        svi.step()
    message = str(info.value)
    assert message.startswith("AutoFlow: a non-finite posterior draw at call 3")
    assert "flow." in message and "are not finite" in message
    assert "smaller learning rate" in message
    # a draw that overflows on its support (exp of a huge value) is caught before the model
    with torch.no_grad():
        next(guide.flow.parameters())[0] = 0.0
        guide.loc[1] = 1e4  # tau = exp(1e4) = inf
    with pytest.raises(FloatingPointError, match="call 4 .* reached the edge of its support"):
        svi.step()
