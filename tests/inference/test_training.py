import pytest
import torch

from pyro_flowkit.inference import minibatches, train


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
        [w],
        torch.zeros(64, 2),
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

    with pytest.raises(FloatingPointError, match="the loss became nan at step 4"):
        train(loss_fn, [w], torch.zeros(8, 1), steps=10, batch_size=4, progress=False)
