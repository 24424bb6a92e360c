"""``python -m pyro_flowkit`` / ``flowkit``: the demo and single-model fits from the shell."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from pyro_flowkit.demo import DATASETS, MODELS

    parser = argparse.ArgumentParser(
        prog="flowkit", description="pyro-flowkit: the demo, and single-model fits."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="the main job: flows on a 2-D density and digits, an EBM, a MALA posterior"
    )
    demo.add_argument("--out", type=Path, default=Path("flowkit-out"), help="output directory")
    demo.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    demo.add_argument("--toy", default="moons", choices=DATASETS[1:], help="the 2-D density")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    fit = sub.add_parser("fit", help="fit one flow to one dataset")
    fit.add_argument("model", choices=MODELS)
    fit.add_argument("--data", default="digits", choices=DATASETS)
    fit.add_argument("--steps", type=int, default=2000)
    fit.add_argument("--batch-size", type=int, default=128)
    fit.add_argument("--lr", type=float, default=1e-3)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", type=Path, default=Path("flowkit-out"))
    fit.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    from pyro_flowkit import demo as jobs

    if args.command == "demo":
        jobs.demo(args.out, quick=args.quick, progress=not args.no_progress, toy=args.toy)
        return 0
    result = jobs.fit(
        args.model,
        args.data,
        args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(f"{args.model} on {args.data}: {result.metrics}")
    for path in jobs.save_fit_outputs(result, args.out):
        print(f"wrote {path}")
    return 0
