"""The vectorised Langevin core: fast properties of one step, then statistical accuracy."""

import math

import pytest
import torch

from pyro_flowkit.diagnostics import from_chains, import_arviz
from pyro_flowkit.inference import (
    DualAveraging,
    WarmupAdapter,
    find_step_size,
    init_state,
    mala_step,
    potential_and_grad,
    sample_langevin,
    ula_step,
)
from pyro_flowkit.inference.langevin import check_inverse_mass

STEPS = {"mala": mala_step, "ula": ula_step}


def gaussian_potential(variances):
    return lambda x: 0.5 * (x.square() / variances).flatten(1).sum(1)


def std_normal(x):
    return 0.5 * x.square().flatten(1).sum(1)


@pytest.mark.parametrize("kind", STEPS)
def test_step_keeps_shapes_and_acceptance_is_a_probability(kind, device):
    state = init_state(std_normal, torch.randn(5, 3, 2, device=device, dtype=torch.float64))
    new, info = STEPS[kind](state, std_normal, torch.full((5,), 0.7, device=device))
    for old, now in zip(state, new, strict=True):
        assert now.shape == old.shape and now.device == old.device and now.dtype == old.dtype
    assert info.acceptance_rate.shape == info.accepted.shape == info.diverging.shape == (5,)
    assert ((info.acceptance_rate >= 0) & (info.acceptance_rate <= 1)).all()
    assert info.accepted.dtype == info.diverging.dtype == torch.bool


@pytest.mark.parametrize("kind", STEPS)
def test_cached_potential_and_gradient_equal_a_recomputation(kind, device):
    potential = gaussian_potential(torch.tensor([0.5, 2.0, 1.0], device=device))
    state = init_state(potential, torch.randn(16, 3, device=device, dtype=torch.float64))
    for _ in range(10):
        state, _ = STEPS[kind](state, potential, 0.3)
    fresh_potential, fresh_grad = potential_and_grad(potential, state.position)
    torch.testing.assert_close(state.potential, fresh_potential)
    torch.testing.assert_close(state.grad, fresh_grad)


def test_rejected_chains_keep_their_state():
    state = init_state(std_normal, torch.randn(200, 4, dtype=torch.float64))
    new, info = mala_step(state, std_normal, 1.2)
    rejected = ~info.accepted
    assert rejected.any() and info.accepted.any()
    torch.testing.assert_close(new.position[rejected], state.position[rejected])
    assert not torch.equal(new.position[~rejected], state.position[~rejected])


def test_tiny_steps_are_accepted_and_huge_steps_rejected():
    state = init_state(std_normal, torch.randn(500, 10, dtype=torch.float64))
    _, tiny = mala_step(state, std_normal, 1e-4)
    _, huge = mala_step(state, std_normal, 50.0)
    assert tiny.acceptance_rate.mean() > 0.999
    assert huge.acceptance_rate.mean() < 0.01


def test_ula_reports_the_mala_acceptance_of_its_move():
    state = init_state(std_normal, torch.randn(500, 10, dtype=torch.float64))
    _, info = ula_step(state, std_normal, 50.0)
    assert info.accepted.all() and info.acceptance_rate.mean() < 0.01


@pytest.mark.parametrize("kind", STEPS)
def test_non_finite_proposals_are_divergences_that_do_not_move(kind):
    def walled(x):  # NaN outside the unit ball: a region where the density is undefined
        inside = x.detach().norm(dim=1) < 1.0
        return std_normal(x) + torch.where(inside, 0.0, math.nan)

    state = init_state(walled, 0.1 * torch.randn(300, 2, dtype=torch.float64))
    new, info = STEPS[kind](state, walled, 1.0)
    assert info.diverging.any() and not info.diverging.all()
    assert (info.acceptance_rate[info.diverging] == 0).all()
    assert not info.accepted[info.diverging].any()
    torch.testing.assert_close(new.position[info.diverging], state.position[info.diverging])
    assert torch.isfinite(new.potential).all() and torch.isfinite(new.position).all()


def test_bad_starts_and_potentials_are_reported():
    with pytest.raises(ValueError, match="init: .*not finite.*chains \\[1\\]"):
        init_state(lambda x: x.log().sum(1), torch.tensor([[1.0], [-1.0]]))
    with pytest.raises(ValueError, match="potential_fn: expected a tensor of shape \\(3,\\)"):
        init_state(lambda x: x.sum(), torch.zeros(3, 2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -1.0}, "step_size"),
        ({"step_size": 0.1, "target_accept_prob": 1.0}, "target_accept_prob"),
        ({"step_size": 0.1, "target_accept_prob": 0.0}, "target_accept_prob"),
        ({"step_size": 0.1, "thin": 0}, "thin"),
        ({"step_size": 0.1, "num_warmup": -1}, "num_warmup"),
    ],
)
def test_sample_langevin_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_langevin(std_normal, torch.zeros(2, 1), 10, progress=False, **kwargs)


BAD_MASSES = {"negative": -1.0, "zero": 0.0, "nan": math.nan, "inf": math.inf}


@pytest.mark.parametrize("value", BAD_MASSES.values(), ids=BAD_MASSES.keys())
def test_a_non_positive_or_non_finite_inverse_mass_is_refused_at_every_entry(value):
    # such a mass froze every chain (each proposal NaN, so each move a rejected divergence)
    mass = torch.tensor([1.0, value])
    init = torch.zeros(3, 2)
    for warmup in (0, 50):
        with pytest.raises(ValueError, match="^inverse_mass: expected"):
            sample_langevin(std_normal, init, 5, step_size=0.1, num_warmup=warmup,
                            inverse_mass=mass, progress=False)  # fmt: skip
    state = init_state(std_normal, init)
    with pytest.raises(ValueError, match="^inverse_mass: expected"):
        check_inverse_mass(mass, state.position)  # for loops that call the step directly
    with pytest.raises(ValueError, match="^inverse_mass: expected"):
        WarmupAdapter(state, std_normal, 10, 0.1, 0.574, inverse_mass=mass)
    with pytest.raises(ValueError, match="^inverse_mass: expected"):
        find_step_size(state, std_normal, torch.full((3,), 0.1), 0.574, inverse_mass=mass)


def test_an_inverse_mass_of_the_wrong_shape_or_kind_is_refused():
    state = init_state(std_normal, torch.zeros(3, 2))
    with pytest.raises(
        ValueError, match="inverse_mass: expected a shape broadcastable to \\(3, 2\\)"
    ):
        check_inverse_mass(torch.ones(3), state.position)
    with pytest.raises(ValueError, match="inverse_mass: expected a shape broadcastable"):
        sample_langevin(std_normal, torch.zeros(3, 2), 2, step_size=0.1,
                        inverse_mass=torch.ones(4, 2), progress=False)  # fmt: skip
    with pytest.raises(TypeError, match="inverse_mass: expected a tensor"):
        check_inverse_mass([1.0, 1.0], state.position)


def test_a_valid_fixed_inverse_mass_scales_the_moves():
    variances = torch.tensor([0.01, 100.0], dtype=torch.float64)
    samples, _ = sample_langevin(
        gaussian_potential(variances), torch.zeros(16, 2, dtype=torch.float64), 400,
        step_size=1.0, num_warmup=200, adapt_mass_matrix=False, inverse_mass=variances,
        progress=False,
    )  # fmt: skip
    _check_moments(samples, torch.zeros(2), variances)


@pytest.mark.parametrize("adjusted", [True, False])
def test_scalar_events(adjusted):
    # chains of a scalar: init (chains,), a potential (chains,) -> (chains,)
    state = init_state(lambda x: 0.5 * x.square(), torch.randn(5, dtype=torch.float64))
    new, info = (mala_step if adjusted else ula_step)(state, lambda x: 0.5 * x.square(), 0.5)
    assert new.position.shape == new.grad.shape == info.acceptance_rate.shape == (5,)
    samples, stats = sample_langevin(
        lambda x: 0.5 * x.square() / 4.0, torch.zeros(16, dtype=torch.float64), 500,
        step_size=0.5, num_warmup=200, adjusted=adjusted, progress=False,
    )  # fmt: skip
    assert samples.shape == (16, 500)
    assert all(value.shape == (16, 500) for value in stats.values())
    torch.testing.assert_close(stats["lp"], -0.5 * samples.square() / 4.0)
    if adjusted:  # ULA is biased by O(h)
        _check_moments(samples[..., None], torch.zeros(1), torch.full((1,), 4.0))
    idata = from_chains(samples, stats, var_name="theta")
    assert dict(idata.posterior.sizes) == {"chain": 16, "draw": 500}
    assert import_arviz().summary(idata).shape[0] == 1


def test_sample_langevin_shapes_thinning_and_fixed_step_after_warmup(device):
    init = torch.zeros(3, 2, 2, device=device, dtype=torch.float64)
    samples, stats = sample_langevin(
        std_normal, init, 7, step_size=0.5, num_warmup=50, thin=3, progress=False
    )
    assert samples.shape == (3, 7, 2, 2) and samples.device == init.device
    assert set(stats) == {"lp", "acceptance_rate", "step_size", "diverging"}
    for value in stats.values():
        assert value.shape == (3, 7)
    assert (stats["step_size"] == stats["step_size"][:, :1]).all()
    assert not stats["step_size"][:, 0].eq(0.5).all()  # adapted
    torch.testing.assert_close(stats["lp"], -std_normal(samples.flatten(0, 1)).view(3, 7))


def test_without_adaptation_the_step_size_is_the_given_one():
    _, stats = sample_langevin(
        std_normal, torch.zeros(2, 1), 5, step_size=0.3, num_warmup=50, adapt_step_size=False,
        progress=False,
    )  # fmt: skip
    assert (stats["step_size"] == 0.3).all()


def test_step_size_search_brackets_the_target():
    state = init_state(std_normal, torch.randn(64, 20, dtype=torch.float64))
    h = find_step_size(state, std_normal, torch.full((64,), 1e-3, dtype=torch.float64), 0.574)
    assert (h > 1e-3).all()
    # one more doubling would push the trial acceptance below the target for a typical chain
    _, above = mala_step(state, std_normal, h / 2)
    _, below = mala_step(state, std_normal, 4 * h)
    assert above.acceptance_rate.mean() > 0.574 > below.acceptance_rate.mean()


def test_dual_averaging_moves_the_step_against_the_acceptance_gap():
    dual = DualAveraging(torch.tensor([1.0, 1.0]), 0.5)
    for _ in range(20):
        h = dual.update(torch.tensor([0.1, 0.9]))
    assert h[0] < 1.0 < h[1]


def test_warmup_reaches_the_target_acceptance():
    _, stats = sample_langevin(
        gaussian_potential(torch.linspace(0.5, 2.0, 10, dtype=torch.float64)),
        torch.zeros(32, 10, dtype=torch.float64), 300, step_size=0.01, num_warmup=400,
        progress=False,
    )  # fmt: skip
    assert abs(stats["acceptance_rate"].mean().item() - 0.574) < 0.08


def _check_moments(samples, mean, variance, z=5.0):
    """Means and variances within z Monte-Carlo standard errors (ESS from ArviZ)."""
    az = import_arviz()
    flat = samples.flatten(2)
    ess = torch.as_tensor(az.ess(az.convert_to_dataset(flat.numpy())).x.values)
    draws = flat.flatten(0, 1)
    sd = variance.sqrt()
    assert ((draws.mean(0) - mean).abs() < z * sd / ess.sqrt()).all()
    ratio = draws.var(0) / variance
    assert ((ratio - 1).abs() < z * (2 / ess).sqrt()).all(), ratio


def test_mala_moments_on_a_correlated_gaussian():
    cov = torch.tensor([[1.0, 0.95], [0.95, 1.0]], dtype=torch.float64)
    precision = torch.linalg.inv(cov)
    samples, stats = sample_langevin(
        lambda x: 0.5 * ((x @ precision) * x).sum(1),
        torch.randn(32, 2, dtype=torch.float64), 1000, step_size=0.1, num_warmup=500,
        progress=False,
    )  # fmt: skip
    _check_moments(samples, torch.zeros(2), cov.diagonal())
    draws = samples.flatten(0, 1)
    assert abs(torch.corrcoef(draws.T)[0, 1] - 0.95) < 0.02
    assert not stats["diverging"].any()


def test_mala_moments_on_a_50d_gaussian_with_log_spaced_variances():
    variances = torch.logspace(-2, 2, 50, dtype=torch.float64)
    samples, _ = sample_langevin(
        gaussian_potential(variances), torch.randn(32, 50, dtype=torch.float64), 1000,
        step_size=0.01, num_warmup=1000, progress=False,
    )  # fmt: skip
    _check_moments(samples, torch.zeros(50), variances)


def test_ula_stationary_variance_has_the_known_step_size_bias():
    s2, h = 2.0, 1.0  # biased variance s^2 / (1 - h / (2 s^2)) = 2 / 0.75
    samples, _ = sample_langevin(
        lambda x: 0.5 * x.square().sum(1) / s2, torch.zeros(4000, 1, dtype=torch.float64), 20,
        step_size=h, num_warmup=50, adjusted=False, adapt_step_size=False, thin=5,
        adapt_mass_matrix=True,  # ignored without step-size adaptation
        progress=False,
    )  # fmt: skip
    variance = samples.var().item()
    expected = s2 / (1 - h / (2 * s2))
    standard_error = expected * math.sqrt(2 / samples.numel())  # draws 5 steps apart: rho^5 ~ 0.03
    assert abs(variance - expected) < 5 * standard_error
    assert abs(variance - s2) > 20 * standard_error


def test_inference_data_has_arviz_names():
    samples, stats = sample_langevin(
        std_normal, torch.randn(2, 3), 40, step_size=0.5, num_warmup=20, progress=False
    )
    idata = from_chains(samples, stats, var_name="theta")
    az = import_arviz()
    assert dict(idata.posterior.sizes) == {"chain": 2, "draw": 40, "theta_dim_0": 3}
    assert set(idata.sample_stats.data_vars) == set(stats)
    assert idata.sample_stats.diverging.dtype == bool
    assert az.rhat(idata).theta.shape == (3,)
    assert az.summary(idata).shape[0] == 3


def test_inference_data_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="samples"):
        from_chains({"a": torch.zeros(2, 5), "b": torch.zeros(3, 5)})
    with pytest.raises(ValueError, match="stats\\['lp'\\]"):
        from_chains(torch.zeros(2, 5), {"lp": torch.zeros(2, 4)})


def _textbook_log_ratio(x, u, g, u_new, g_new, proposal, hm, clip=None):
    """log [e^-U(x') q(x | x')] / [e^-U(x) q(x' | x)] with the Gaussian kernels written out."""
    c = (lambda v: v) if clip is None else (lambda v: v.clamp(-clip, clip))
    forward = proposal - (x - hm * c(g))
    backward = x - (proposal - hm * c(g_new))
    log_q = (forward.square() - backward.square()) / (4 * hm)
    return u - u_new + log_q.flatten(1).sum(1)


@pytest.mark.parametrize("clip", [None, 0.7])
def test_the_simplified_kernel_ratio_equals_the_textbook_one(clip):
    # the step computes 1/2 sum a (sigma xi - h M^-1 a / 2) with a = c(g) + c(g'): the same number
    from pyro_flowkit.inference.langevin import _propose, step_scales

    potential = gaussian_potential(torch.tensor([0.3, 2.0, 1.0], dtype=torch.float64))
    x = 2 * torch.randn(64, 3, dtype=torch.float64)
    state = init_state(potential, x)
    h = torch.rand(64, dtype=torch.float64) + 0.05
    inverse_mass = torch.rand(3, dtype=torch.float64) + 0.5
    scales = step_scales(h, inverse_mass, x)
    new, log_ratio = _propose(state, potential, None, None, None, clip, scales)
    expected = _textbook_log_ratio(
        x, state.potential, state.grad, new.potential, new.grad, new.position, scales.drift, clip
    )
    torch.testing.assert_close(log_ratio, expected, rtol=1e-9, atol=1e-9)
    assert log_ratio.abs().max() > 0.1  # not trivially zero


def test_dual_averaging_in_place_equals_the_recursion():
    h0, target = torch.tensor([0.5, 2.0], dtype=torch.float64), 0.6
    dual = DualAveraging(h0, target)
    mu, h_bar, log_avg = h0.log() + math.log(10), torch.zeros(2, dtype=torch.float64), h0.log()
    for t in range(1, 30):
        accept = torch.rand(2, dtype=torch.float64)
        step = dual.update(accept)
        eta = 1 / (t + 10)
        h_bar = (1 - eta) * h_bar + eta * (target - accept)
        log_step = mu - math.sqrt(t) / 0.05 * h_bar
        log_avg = t**-0.75 * log_step + (1 - t**-0.75) * log_avg
        torch.testing.assert_close(step, log_step.exp())
    torch.testing.assert_close(dual.final_step_size, log_avg.exp())


def test_draws_recorded_in_blocks_are_each_steps_state():
    # 150 draws thinned by 2 cross the recorder's blocks of 64: every draw is its own state
    samples, stats = sample_langevin(
        std_normal, torch.randn(4, 3, dtype=torch.float64), 150, step_size=0.4, thin=2,
        progress=False,
    )  # fmt: skip
    torch.testing.assert_close(stats["lp"], -std_normal(samples.flatten(0, 1)).view(4, 150))
    moved = (samples[:, 1:] != samples[:, :-1]).any(-1).float().mean()
    assert moved > 0.5  # consecutive draws differ (none copied twice)
    assert ((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1)).all()
    # thinning averages two steps' probabilities: values strictly between draws' extremes exist
    assert ((stats["acceptance_rate"] > 0) & (stats["acceptance_rate"] < 1)).any()


def test_a_missing_step_size_is_searched_and_ula_aims_higher():
    _, stats = sample_langevin(std_normal, torch.randn(32, 5, dtype=torch.float64), 200,
                               num_warmup=0, progress=False)  # fmt: skip
    h = stats["step_size"][:, 0]
    assert (h != 1.0).all() and (h == stats["step_size"][:, -1]).all()  # searched, then fixed
    assert 0.3 < stats["acceptance_rate"].mean() < 0.85  # near the 0.574 the search aims for
    _, ula = sample_langevin(std_normal, torch.randn(32, 5, dtype=torch.float64), 200,
                             num_warmup=300, adjusted=False, progress=False)  # fmt: skip
    assert abs(ula["acceptance_rate"].mean().item() - 0.9) < 0.06  # ULA's default target


def test_float32_noise_samples_a_float64_target_correctly():
    variances = torch.logspace(-1, 1, 6, dtype=torch.float64)
    samples, _ = sample_langevin(
        gaussian_potential(variances), torch.randn(32, 6, dtype=torch.float64), 800,
        num_warmup=400, noise_dtype=torch.float32, progress=False,
    )  # fmt: skip
    assert samples.dtype == torch.float64
    _check_moments(samples, torch.zeros(6), variances)


@pytest.mark.slow  # compiling takes 5-20 s on 2 cores
def test_a_compiled_step_equals_the_eager_one():
    potential = gaussian_potential(torch.tensor([0.5, 2.0], dtype=torch.float64))
    init = torch.randn(16, 2, dtype=torch.float64)
    runs = []
    for compile in (False, True):
        torch.manual_seed(3)
        runs.append(sample_langevin(potential, init, 2, step_size=0.7, compile=compile,
                                    progress=False))  # fmt: skip
    (eager, eager_stats), (compiled, compiled_stats) = runs
    torch.testing.assert_close(compiled, eager, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(compiled_stats["acceptance_rate"], eager_stats["acceptance_rate"])
