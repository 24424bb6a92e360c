"""One process of the two-process EM test (tests/inference/test_em.py): fits on its shard of the
rows under a gloo process group and saves what it found.

    python em_worker.py RANK WORLD_SIZE PORT OUT_DIR
"""

import sys
from pathlib import Path

import torch
import torch.distributed as tdist

from pyro_flowkit.models import GaussianMixture, KMeans


def data() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The rows both the workers and the single-process reference use, and fixed initial
    parameters."""
    g = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn(3, 2, generator=g, dtype=torch.float64)
    x = centres[torch.arange(900) % 3] + torch.randn(900, 2, generator=g, dtype=torch.float64)
    init = {
        "weights_init": torch.full((3,), 1 / 3, dtype=torch.float64),
        "means_init": x[:3].clone(),
        "precisions_init": torch.eye(2, dtype=torch.float64).expand(3, 2, 2).clone(),
    }
    return x, init


def fit_all(x: torch.Tensor, init: dict[str, torch.Tensor]) -> dict[str, object]:
    gmm = GaussianMixture(3, tol=1e-10, max_iter=500, chunk_size=100, **init).fit(x)
    seeded = GaussianMixture(3, seed=0, tol=1e-10, max_iter=500).fit(x)
    km = KMeans(3, init=init["means_init"], chunk_size=100).fit(x)
    return {
        "means": gmm.means_, "covariances": gmm.covariances_, "lower_bound": gmm.lower_bound_,
        "n_iter": gmm.n_iter_, "seeded_means": seeded.means_,
        "centres": km.cluster_centers_, "inertia": km.inertia_, "km_iter": km.n_iter_,
    }  # fmt: skip


def main() -> None:
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    tdist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        x, init = data()
        torch.save(fit_all(x[rank::world], init), out / f"rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


if __name__ == "__main__":
    main()
