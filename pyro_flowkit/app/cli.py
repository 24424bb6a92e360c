"""``python -m pyro_flowkit`` / ``flowkit``: the demo and single-model fits from the shell.

Every value is checked while the command line is parsed (the library's checks from
:mod:`pyro_flowkit.validation`), so a bad one ends like any other usage error: the usage, one line
``flowkit: error: argument --lr: expected a positive finite number, got -1.0`` on stderr, and exit
status 2, never a traceback from deep inside a fit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from pyro_flowkit.validation import check_count, check_interval, check_positive

PROG = "flowkit"
MAX_SEED = 2**32 - 1  # numpy's seeds, which pyro.set_rng_seed sets too

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors, sub-commands' included, read ``flowkit: error: ...``
    (the usage printed above still names the sub-command)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {message}\n")


def _checked(parse: Callable[[str], T], check: Callable[[T], object]) -> Callable[[str], T]:
    """An argparse ``type``: ``parse`` the text (argparse reports ``invalid int value: 'x'``
    when it fails), then ``check`` the value; a check's ``ValueError`` becomes the message."""

    def convert(text: str) -> T:
        value = parse(text)
        try:
            check(value)
        except (TypeError, ValueError) as error:
            _, _, message = str(error).partition(": ")  # the option's name is argparse's to add
            raise argparse.ArgumentTypeError(message) from None
        return value

    convert.__name__ = parse.__name__  # what argparse calls the type in "invalid int value"
    return convert


def _seed(value: int) -> None:
    check_count("seed", value, minimum=0)
    check_interval("seed", value, 0, MAX_SEED, what="a seed")


def _directory(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a directory, got the file '{text}'")
    return path


_steps = _checked(int, lambda v: check_count("steps", v, minimum=0))
_batch_size = _checked(int, lambda v: check_count("batch_size", v))
_lr = _checked(float, lambda v: check_positive("lr", v))
_seed_arg = _checked(int, _seed)


def _parser() -> tuple[_Parser, dict[str, _Parser]]:
    """The parser, and its sub-command parsers by name (to report errors with their usage)."""
    from pyro_flowkit.app.demo import DATASETS, MODELS

    parser = _Parser(prog=PROG, description="pyro-flowkit: the demo, and single-model fits.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="the main job: flows on a 2-D density and digits, an EBM, a MALA posterior"
    )
    demo.add_argument(
        "--out", type=_directory, default=Path("flowkit-out"), help="output directory"
    )
    demo.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    demo.add_argument("--toy", default="moons", choices=DATASETS[1:], help="the 2-D density")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    fit = sub.add_parser("fit", help="fit one flow to one dataset")
    fit.add_argument("model", choices=MODELS)
    fit.add_argument("--data", default="digits", choices=DATASETS)
    fit.add_argument("--steps", type=_steps, default=2000, help="optimisation steps (>= 0)")
    fit.add_argument("--batch-size", type=_batch_size, default=128, help="examples per step")
    fit.add_argument("--lr", type=_lr, default=1e-3, help="Adam's learning rate (> 0)")
    fit.add_argument("--seed", type=_seed_arg, default=0, help=f"random seed (0..{MAX_SEED})")
    fit.add_argument("--out", type=_directory, default=Path("flowkit-out"))
    fit.add_argument("--no-progress", action="store_true")
    from pyro_flowkit.app import glove, sts

    commands = {"demo": demo, "fit": fit, "sts": sts.add_parser(sub)}
    return parser, {**commands, "glove": glove.add_parser(sub)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (a usage error exits with status 2)."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    from pyro_flowkit.app import demo as jobs

    if args.command == "demo":
        jobs.demo(args.out, quick=args.quick, progress=not args.no_progress, toy=args.toy)
        return 0
    if args.command == "sts":
        from pyro_flowkit.app import sts

        return sts.run(args)
    if args.command == "glove":
        from pyro_flowkit.app import glove

        return glove.run(args)
    if args.model == "glow" and args.data != "digits":  # as demo.build_flow refuses it
        commands["fit"].error(
            f"argument --data: glow models images, use it on digits, got {args.data!r}"
        )
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
