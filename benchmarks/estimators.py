"""Gradient estimators for categorical latents, measured against the exact gradient, and a
categorical VAE trained on binarised digits with each of them.

``--suite gradients``: a small ``models.CategoricalVAE`` (2 latents of 4 classes, MLPs of 64
units, binarised digits) is first trained for 300 steps by enumeration, so that its gradients
are those of a model in training; then, on one batch of 100 training digits,
``inference.gradient_error`` takes 1000 draws of every estimator's ELBO gradient and compares
them with the exact gradient (``TraceEnum_ELBO``): the squared bias and the variance (trace of
the covariance), relative to the exact gradient's squared norm, for the encoder's and the
decoder's parameters. Estimators: REINFORCE with the leave-one-out baseline (2, 4 and 8 draws),
Gumbel-softmax and straight-through Gumbel at temperatures 2 to 0.05 (1 draw, and 4 at
tau = 0.5), all with the exact KL.

``--suite training``: the categorical VAE trained on the 1497 binarised training digits with
each estimator (Adam 1e-3, batch 100, Su's schedule tau = 0.01 + 0.99 * 0.999^step for the
Gumbel estimators, 4 draws for REINFORCE), in two sizes: 3 latents of 4 classes (64
configurations: test ELBO and log-likelihood exact, enumeration trains too) and Jang et al.'s
20 latents of 10 classes (test ELBO from 200 draws with the exact KL, log-likelihood by IWAE
with 200 samples). Test figures (nats per image, 300 test digits) at checkpoints, with the
training time spent to reach them: equal steps, and equal wall time.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/estimators.py [--suite gradients|training|all]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import torch
from digits_flows import footer, run_suites

import pyro_flowkit as fk
from pyro_flowkit.inference.estimators import gradient_error
from pyro_flowkit.inference.training import StepInfo
from pyro_flowkit.models.categorical_vae import ESTIMATORS, CategoricalVAE


def binary(split: str) -> torch.Tensor:
    return (fk.data.load_digits(split, flatten=True) > 7).double()


GRADIENT_ROWS = [
    ("reinforce", None, 2),
    ("reinforce", None, 4),
    ("reinforce", None, 8),
    *[("gumbel_softmax", t, 1) for t in (2.0, 1.0, 0.5, 0.25, 0.1, 0.05)],
    ("gumbel_softmax", 0.5, 4),
    *[("straight_through", t, 1) for t in (2.0, 1.0, 0.5, 0.25, 0.1, 0.05)],
    ("straight_through", 0.5, 4),
]


def _cell(err: object) -> str:
    rel_se = err.bias_squared_se / err.exact_norm_squared
    return f"{err.relative_bias_squared:.3f} ± {rel_se:.3f} | {err.relative_variance:.3g}"


def gradients_suite(args: argparse.Namespace) -> str:
    start = time.time()
    draws = args.draws or (200 if args.quick else 1000)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = CategoricalVAE(64, 2, 4, estimator="enumerate", hidden_dims=(64,), name="grad").double()
    x = binary("train")
    vae.fit(x, 300, lr=3e-3, progress=False, seed=0)
    batch = x[:100]
    exact = vae.objective("enumerate")
    lines = [
        "| estimator | tau | draws | encoder bias² (± se) | encoder variance | "
        "decoder bias² (± se) | decoder variance |",
        "|---|---|---|---|---|---|---|",
    ]
    for estimator, tau, k in GRADIENT_ROWS:
        model, guide, elbo = vae.objective(estimator, temperature=tau, num_particles=k)
        errs = gradient_error(model, guide, elbo, draws, batch, exact=exact,
                              params={"encoder": vae.encoder, "decoder": vae.decoder})  # fmt: skip
        lines.append(f"| {estimator} | {tau or ''} | {k} | {_cell(errs['encoder'])} | "
                     f"{_cell(errs['decoder'])} |")  # fmt: skip
    lines.append("")
    lines.append(
        "Bias² and variance are relative to the exact gradient's squared norm "
        "(encoder and decoder separately); a bias² within about two standard errors of 0 is "
        "no measurable bias."
    )
    cmd = f"python benchmarks/estimators.py --suite gradients --draws {draws}"
    return "\n".join(lines) + footer(cmd, start)


SIZES = {"3 x 4 (exact)": (3, 4), "20 x 10 (IWAE)": (20, 10)}


def _train_curve(
    estimator: str,
    latents: int,
    classes: int,
    steps: int,
    every: int,
    test: torch.Tensor,
    samples: int,
) -> list[tuple[int, float, float, float]]:
    """(step, training seconds, test ELBO, test log-likelihood) at every checkpoint of one run
    (the evaluations' time and random numbers are kept out of the training's)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = CategoricalVAE(64, latents, classes, estimator=estimator, hidden_dims=(256,),
                         name=f"{estimator}{latents}").double()  # fmt: skip
    curve: list[tuple[int, float, float, float]] = []
    clock = {"start": time.perf_counter(), "evaluating": 0.0}

    def checkpoint(info: StepInfo) -> None:
        if info.step % every and info.step != steps:  # and always the last step
            return
        begin = time.perf_counter()
        with torch.random.fork_rng():
            pyro.set_rng_seed(1)
            elbo = float(vae.elbo(test, num_samples=samples).mean())
            log_p = float(vae.log_likelihood(test, num_samples=samples).mean())
        end = time.perf_counter()
        seconds = end - clock["start"] - clock["evaluating"]
        clock["evaluating"] += end - begin
        curve.append((info.step, seconds, elbo, log_p))

    vae.fit(binary("train"), steps, batch_size=100, lr=1e-3, progress=False, seed=0,
            callbacks=[checkpoint])  # fmt: skip
    return curve


def training_suite(args: argparse.Namespace) -> str:
    start = time.time()
    steps = args.steps or (300 if args.quick else 3000)
    every = max(steps // 6, 1)
    test = binary("test")
    lines = [
        "| latents x classes | estimator | step | train s | test ELBO | test log p(x) |",
        "|---|---|---|---|---|---|",
    ]
    at_time: list[str] = []
    for label, (latents, classes) in SIZES.items():
        curves = {}
        for estimator in ESTIMATORS:
            if estimator == "enumerate" and classes**latents > 4096:
                continue
            curves[estimator] = _train_curve(
                estimator, latents, classes, steps, every, test, args.samples
            )
            for step, seconds, elbo, log_p in curves[estimator]:
                lines.append(f"| {label} | {estimator} | {step} | {seconds:.1f} | {elbo:.2f} | "
                             f"{log_p:.2f} |")  # fmt: skip
        budget = min(curve[-1][1] for curve in curves.values())
        for estimator, curve in curves.items():
            reached = [c for c in curve if c[1] <= budget * 1.0001]
            step, seconds, elbo, log_p = reached[-1] if reached else (0, 0.0, float("nan"),
                                                                       float("nan"))  # fmt: skip
            at_time.append(f"| {label} | {estimator} | {budget:.1f} | {step} | {elbo:.2f} | "
                           f"{log_p:.2f} |")  # fmt: skip
    lines += [
        "",
        "At equal wall time (the fastest estimator's whole run; the last checkpoint each "
        "reached within it):",
        "",
        "| latents x classes | estimator | budget s | step reached | test ELBO | test log p(x) |",
        "|---|---|---|---|---|---|",
        *at_time,
    ]
    cmd = f"python benchmarks/estimators.py --suite training --steps {steps}"
    if args.samples != 200:
        cmd += f" --samples {args.samples}"
    return "\n".join(lines) + footer(cmd, start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["gradients", "training", "all"], default="all")
    parser.add_argument("--steps", type=int, help="training steps (3000; 300 with --quick)")
    parser.add_argument("--draws", type=int, help="gradient draws (1000; 200 with --quick)")
    parser.add_argument("--samples", type=int, default=200, help="test ELBO/IWAE samples")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run_suites(args, {"gradients": gradients_suite, "training": training_suite}, "estimators")


if __name__ == "__main__":
    main()
