"""One process of the two-process training test (tests/inference/test_training.py): trains on
its half of every global batch under a gloo process group and saves the parameters.

    python train_worker.py RANK WORLD_SIZE PORT OUT_DIR
"""

import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.distributed as tdist
from pyro.infer.autoguide import AutoDelta

from pyro_flowkit.flows import flow_distribution, realnvp
from pyro_flowkit.inference import train


def regression(x):
    """Bayesian linear regression: global weights, a plate over the rows."""
    w = pyro.sample("w", dist.Normal(torch.zeros(3, dtype=x.dtype), 1.0).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(x[:, :3] @ w, 0.5), obs=x[:, 3])


def run() -> dict[str, torch.Tensor]:
    """The same training in any number of processes: a MAP regression by SVI (Pyro params,
    plate scaled to the global size) and a flow by maximum likelihood (module parameters)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, generator=g, dtype=torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    y = x @ w + 0.5 * torch.randn(96, generator=g, dtype=torch.float64)
    rows = torch.cat([x, y[:, None]], 1)
    guide = AutoDelta(regression)
    train((regression, guide), rows, steps=12, batch_size=16, lr=0.05, plate="data",
          progress=False)  # fmt: skip
    flow = realnvp(4, num_layers=2, hidden_dims=(8,)).double()
    d = flow_distribution(flow, 4)
    train(lambda b: -d.log_prob(b).mean(), rows, params=flow, steps=12, batch_size=16,
          lr=0.01, progress=False)  # fmt: skip
    out = {f"flow.{k}": v.detach().clone() for k, v in flow.state_dict().items()}
    out["w"] = guide.median()["w"].detach().clone()
    return out


def main() -> None:
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    tdist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.save(run(), out / f"rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


if __name__ == "__main__":
    main()
