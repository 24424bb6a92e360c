"""The one training loop: data loading, objectives, callbacks, checkpoints that resume exactly,
Pyro's params (global and module-local), plate scaling, and two processes equal to one."""

from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from harness import run_gloo_workers
from pyro.infer.autoguide import AutoDelta
from pyro.nn import PyroModule, PyroParam
from torch.utils.data import Dataset

from pyro_flowkit.inference import EMA, Trainer, minibatches, train

HERE = Path(__file__).resolve().parent


def test_minibatches_visit_every_example_once_per_epoch():
    data = torch.arange(10.0)
    batches = minibatches(data, 3, torch.Generator().manual_seed(0))
    seen = torch.cat([next(batches) for _ in range(3)])  # one epoch: 3 full batches of 3
    assert len(seen.unique()) == 9
    with pytest.raises(ValueError, match="batch_size"):
        next(minibatches(data, 0))


def test_train_minimises_the_loss():
    target = torch.tensor([1.0, -2.0])
    w = torch.nn.Parameter(torch.zeros(2))
    losses = train(
        lambda b: ((w - target - b.mean(0)) ** 2).sum(),
        torch.zeros(64, 2),
        params=[w],
        steps=300,
        batch_size=16,
        lr=0.05,
        progress=False,
    )
    assert len(losses) == 300 and losses[-1] < 1e-4 < losses[0]
    torch.testing.assert_close(w.detach(), target, atol=1e-2, rtol=0)


def test_train_raises_on_a_non_finite_loss():
    w = torch.nn.Parameter(torch.ones(1))
    calls = iter(range(100))

    def loss_fn(batch):
        return w.sum() * (float("nan") if next(calls) == 4 else 1.0)

    with pytest.raises(FloatingPointError, match="the loss became nan at step 5"):
        train(loss_fn, torch.zeros(8, 1), params=[w], steps=10, batch_size=4, progress=False)


def test_the_old_signature_still_works_with_a_deprecation_warning():
    w = torch.nn.Parameter(torch.zeros(1))
    with pytest.warns(DeprecationWarning, match=r"train\(loss_fn, data, params=params"):
        losses = train(lambda b: (w - 1).square().sum(), [w], torch.zeros(8, 1), steps=3,
                       batch_size=4, progress=False)  # fmt: skip
    assert len(losses) == 3


class _Indexed(Dataset):
    """A map-style dataset that records which indices were fetched."""

    def __init__(self, n):
        self.n, self.fetched = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.fetched.append(i)
        return torch.tensor([float(i)])


def test_every_index_once_per_epoch_and_epochs_or_steps():
    data = _Indexed(20)
    w = torch.nn.Parameter(torch.zeros(1))
    seen = []

    def loss_fn(batch):
        seen.append(batch.flatten().long().tolist())
        return (w - batch.mean()).square().sum()

    history = train(loss_fn, data, params=[w], epochs=2, batch_size=6, progress=False)
    assert len(history) == 6  # 3 full batches of 6 per epoch; the last 2 rows are dropped
    for epoch in (seen[:3], seen[3:]):
        flat = [i for b in epoch for i in b]
        assert len(flat) == len(set(flat)) == 18 and all(len(b) == 6 for b in epoch)
    assert sorted(sum(seen[:3], [])) != sorted(sum(seen[3:], [])) or seen[:3] != seen[3:]
    with pytest.raises(ValueError, match="steps, epochs: expected exactly one"):
        train(loss_fn, data, params=[w], steps=1, epochs=1, progress=False)


def test_metrics_and_callbacks_and_stopping():
    w = torch.nn.Parameter(torch.zeros(1))
    infos = []

    def loss_fn(batch):
        loss = (w - 3).square().sum()
        return loss, {"w": w.item()}

    def stop_at_5(info):
        infos.append(info)
        return info.step == 5

    history = train(loss_fn, torch.zeros(16, 1), params=[w], steps=50, batch_size=4,
                    callbacks=[stop_at_5], progress=False)  # fmt: skip
    assert len(history) == 5 and len(history.metrics["w"]) == 5
    assert [i.step for i in infos] == [1, 2, 3, 4, 5]
    assert [i.metrics["w"] for i in infos] == history.metrics["w"] and history.metrics["w"][0] == 0
    assert history.as_dict()["loss"] == list(history)


def gaussian_model(x):
    loc = pyro.param("loc", torch.zeros(2))
    scale = pyro.param("scale", torch.ones(2), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=x)


def test_pyro_params_are_discovered_constrained_ones_included():
    x = torch.randn(500, 2) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, -1.0])
    train((gaussian_model, lambda x: None), x, steps=600, batch_size=100, lr=0.05,
          progress=False)  # fmt: skip
    store = pyro.get_param_store()
    torch.testing.assert_close(store["loc"], x.mean(0), atol=0.15, rtol=0)
    torch.testing.assert_close(store["scale"], x.std(0), atol=0.15, rtol=0)


def global_latent_model(x):
    """A global latent mu with a N(0, 10^2) prior and 2,000 rows: its MAP is near the mean."""
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def test_the_data_plate_is_scaled_to_the_global_size():
    """With plate="data" each batch counts as the whole data set: the ELBO's gradient in the
    global latent is that of all N rows (without it the prior would weigh N / n times more)."""
    x = torch.randn(2000) + 3.0
    guide = AutoDelta(global_latent_model)
    trainer = Trainer((global_latent_model, guide), plate="data")
    trainer.data_size = len(x)
    batch = x[:50]
    pyro.set_rng_seed(0)
    trainer.setup(batch)
    loss, _ = trainer._loss(batch)
    mu = guide.median()["mu"]
    log_lik = dist.Normal(mu, 1.0).log_prob(batch).sum()
    expected = -(dist.Normal(0.0, 10.0).log_prob(mu) + 40 * log_lik)  # N / n = 2000 / 50
    torch.testing.assert_close(loss, expected)


class _TinyVAE(PyroModule):
    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.zeros(2))
        self.log_s = PyroParam(torch.ones(2), constraint=dist.constraints.positive)
        self.decoder = torch.nn.Linear(2, 3)

    def model(self, x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 1.0).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(self.loc, self.log_s).to_event(1))


@pytest.mark.parametrize("local", [False, True], ids=["global-params", "module-local-params"])
def test_a_pyro_module_trains_in_both_param_modes(local):
    """Pyro 1.9.2's SVI.step fails with module_local_params=True ('Parameter' object has no
    attribute 'unconstrained'); the loop trains the module's own parameters in both modes."""
    x = torch.randn(64, 3) + 2.0
    with pyro.settings.context(module_local_params=local):
        vae = _TinyVAE()
        before = vae.decoder.bias.detach().clone()
        history = train((vae.model, vae.guide), x, steps=30, batch_size=32, lr=0.05,
                        progress=False)  # fmt: skip
    assert history[-1] < history[0]
    assert not torch.equal(vae.decoder.bias.detach(), before)


def _checkpointed_run(tmp_path, stop, resume_from=None):
    """A flow-free run that uses the global RNG (a reparametrised guide): 12 steps of SVI on a
    PyroModule and a guide with a weight EMA, interrupted after ``stop`` steps."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    x = torch.randn(40, 3) + 1.0
    vae = _TinyVAE()
    ema = EMA(0.9, vae)
    ckpt = tmp_path / "run.pt"
    history = train((vae.model, vae.guide), x, steps=stop, batch_size=8, ema=ema,
                    checkpoint=ckpt, checkpoint_every=4, resume=resume_from,
                    progress=False)  # fmt: skip
    return vae, ema, history


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    full, full_ema, full_history = _checkpointed_run(tmp_path / "a", 12)
    assert full_ema.num_updates == 12
    _checkpointed_run(tmp_path / "b", 7)  # crosses an epoch (5 batches) and stops mid-epoch
    state = torch.load(tmp_path / "b" / "run.pt", weights_only=True)
    assert state["step"] == 7 and (state["epoch"], state["position"]) == (1, 2)
    pyro.set_rng_seed(123)  # whatever happened since, the checkpoint's random state rules
    resumed, ema, history = _checkpointed_run(tmp_path / "c", 12, tmp_path / "b" / "run.pt")
    for (name, a), b in zip(full.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert list(history) == list(full_history) and ema.num_updates == 12
    for name, average in full_ema.averages().items():
        assert torch.equal(ema.averages()[name], average), name


def test_two_gloo_processes_equal_one_process(tmp_path):
    """Each process reads half of every global batch; gradients (module and Pyro params) are
    averaged; the plate is scaled to the global size: the parameters after k steps are those of
    one process on the same global batches."""
    train_worker = run_gloo_workers(HERE / "train_worker.py", tmp_path)
    one = train_worker.run()
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        assert got.keys() == one.keys()
        for key in one:
            torch.testing.assert_close(got[key], one[key], rtol=1e-10, atol=1e-10)
