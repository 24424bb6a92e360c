"""gradient_error: recovers a known bias and variance, finds no bias or variance in the exact
gradient, reports per parameter group, and checks its arguments."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyro_flowkit.inference.estimators import gradient_error


def model():
    z = pyro.sample("z", dist.Categorical(logits=torch.zeros(4, dtype=torch.float64)))
    pyro.sample("x", dist.Normal(z.double(), 1.0), obs=torch.tensor(2.2, dtype=torch.float64))


def guide():
    a = pyro.param("a", torch.tensor([0.1, 0.2, -0.3, 0.0], dtype=torch.float64))
    b = pyro.param("b", torch.tensor([0.5], dtype=torch.float64))
    pyro.sample("z", dist.Categorical(logits=a * b))


class NoisyExact:
    """A loss whose gradient is the exact one plus noise drawn from N(shift, sd^2) in every
    coordinate: (theta * (exact gradient + noise)).sum()."""

    def __init__(self, shift, sd):
        self.shift, self.sd, self.exact = shift, sd, None

    def differentiable_loss(self, model, guide, *args):
        theta = [pyro.param("a").unconstrained(), pyro.param("b").unconstrained()]
        if self.exact is None:
            loss = TraceEnum_ELBO().differentiable_loss(model, config_enumerate(guide), *args)
            self.exact = torch.cat(torch.autograd.grad(loss, theta))
        noise = self.shift + self.sd * torch.randn(5, dtype=torch.float64)
        return (torch.cat(theta) * (self.exact + noise)).sum()


def test_a_known_bias_and_variance_are_recovered():
    err = gradient_error(model, guide, NoisyExact(0.3, 2.0), 4000)
    assert err.bias_squared == pytest.approx(5 * 0.3**2, abs=4 * err.bias_squared_se)
    assert err.bias_squared_se < 0.1
    assert err.variance == pytest.approx(5 * 4.0, rel=0.05)
    assert err.mse == pytest.approx(err.bias_squared + err.variance)


def test_the_exact_gradient_has_no_bias_and_no_variance():
    err = gradient_error(model, config_enumerate(guide), TraceEnum_ELBO(), 3)
    assert err.exact_norm_squared > 0
    assert err.variance < 1e-20 * err.exact_norm_squared  # the same draw, up to rounding
    assert abs(err.bias_squared) < 1e-20 * err.exact_norm_squared


def test_groups_come_from_the_same_draws():
    pyro.param("a", torch.tensor([0.1, 0.2, -0.3, 0.0], dtype=torch.float64))
    pyro.param("b", torch.tensor([0.5], dtype=torch.float64))
    a, b = pyro.param("a").unconstrained(), pyro.param("b").unconstrained()
    pyro.set_rng_seed(3)
    groups = gradient_error(model, guide, NoisyExact(0.0, 1.0), 50, params={"a": a, "b": [b]})
    pyro.set_rng_seed(3)
    whole = gradient_error(model, guide, NoisyExact(0.0, 1.0), 50, params=[a, b])
    assert set(groups) == {"a", "b"}
    total = groups["a"].variance + groups["b"].variance
    assert total == pytest.approx(whole.variance, rel=1e-12)


def test_arguments():
    with pytest.raises(ValueError, match="num_draws: expected an integer of at least 2"):
        gradient_error(model, guide, TraceEnum_ELBO(), 1)
    with pytest.raises(TypeError, match="estimator: expected an ELBO"):
        gradient_error(model, guide, object(), 10)


def test_the_estimators_of_a_categorical_vae_against_its_exact_gradient():
    """The article's claims on a small categorical VAE: REINFORCE (leave-one-out) has no bias;
    the Gumbel-softmax gradient is biased, its bias falling and its variance rising as the
    temperature falls; straight-through hands the decoder the exact one-hot draw, so the
    decoder's gradient is unbiased while the encoder's is not."""
    from pyro_flowkit.data import load_digits
    from pyro_flowkit.models.categorical_vae import CategoricalVAE

    x = (load_digits("train", flatten=True)[:50] > 7).double()
    vae = CategoricalVAE(64, 2, 3, hidden_dims=(16,), estimator="enumerate").double()
    exact = vae.objective("enumerate")
    groups = {"encoder": vae.encoder, "decoder": vae.decoder}

    def measure(estimator, tau=None, k=None):
        model, guide, elbo = vae.objective(estimator, temperature=tau, num_particles=k)
        return gradient_error(model, guide, elbo, 80, x, exact=exact, params=groups)

    reinforce = measure("reinforce", k=4)
    for err in reinforce.values():
        assert abs(err.bias_squared) < 4 * err.bias_squared_se
    hot, cold = measure("gumbel_softmax", 2.0), measure("gumbel_softmax", 0.1)
    for err in (hot["decoder"], hot["encoder"]):
        assert err.bias_squared > 4 * err.bias_squared_se  # a measurable bias
    assert cold["decoder"].bias_squared < hot["decoder"].bias_squared / 4
    assert cold["encoder"].variance > 4 * hot["encoder"].variance
    straight = measure("straight_through", 1.0)
    assert abs(straight["decoder"].bias_squared) < 4 * straight["decoder"].bias_squared_se
    assert straight["encoder"].bias_squared > 4 * straight["encoder"].bias_squared_se
