"""One process of the two-process vector-quantiser test (tests/nn/test_vq.py): quantises its
own half of every global batch in training mode under a gloo process group and saves the
codebooks.

    python vq_worker.py RANK WORLD_SIZE PORT OUT_DIR
"""

import sys
from pathlib import Path

import torch
import torch.distributed as tdist

from pyro_flowkit.nn.vq import VectorQuantizer

STEPS, BATCH = 30, 64


def batches(rank: int, world: int):
    """The same global batches in any number of processes; each rank gets its rows of them,
    drawn from clusters whose mix differs between the halves (so the ranks' statistics differ)."""
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    for _ in range(STEPS):
        which = torch.cat([torch.randint(0, 3, (BATCH // 2,), generator=g),
                           torch.randint(3, 6, (BATCH // 2,), generator=g)])  # fmt: skip
        x = centres[which] + 0.3 * torch.randn(BATCH, 4, generator=g, dtype=torch.float64)
        share = BATCH // world
        yield x[rank * share : (rank + 1) * share]


def run(rank: int, world: int, **options) -> tuple[torch.Tensor, int]:
    """Train-mode passes of a quantiser from one initial codebook; returns the final codebook
    and the number of codes restarted (each rank draws its own random numbers: only what is
    broadcast from rank 0 can agree)."""
    torch.manual_seed(1 + rank)
    vq = VectorQuantizer(8, 4, decay=0.9, **options).double()
    vq.codebook.copy_(torch.randn(8, 4, generator=torch.Generator().manual_seed(0),
                                  dtype=torch.float64))  # fmt: skip
    restarted = [0]
    restart = vq._restart

    def counting(dead: torch.Tensor, flat: torch.Tensor) -> None:
        restarted[0] += int(dead.sum())
        restart(dead, flat)

    vq._restart = counting
    for x in batches(rank, world):
        vq(x)
    return vq.codebook.clone(), restarted[0]


def main() -> None:
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    tdist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        plain, _ = run(rank, world, data_init=False, restart_dead=False)
        initialised, _ = run(rank, world, data_init=True, restart_dead=False)
        restarts, count = run(rank, world, data_init=False, restart_after=2)
        result = {"plain": plain, "initialised": initialised, "restarts": restarts,
                  "count": torch.tensor(count)}  # fmt: skip
        torch.save(result, out / f"rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


if __name__ == "__main__":
    main()
