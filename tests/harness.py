"""Helpers of the shared transform harness: uncached maps, autograd log-dets, perturbation."""

from __future__ import annotations

import importlib.util
import io
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pyro
import pytest
import torch
from pyro import poutine
from pyro.distributions.conditional import ConstantConditionalTransform
from pyro.infer import Trace_ELBO
from torch.distributions import ComposeTransform, Transform
from torch.distributions.utils import _sum_rightmost

from pyro_flowkit.nn import refresh_spectral_norms


def parts(t: Transform) -> list[Transform]:
    """The leaf transforms of ``t`` in application order."""
    if isinstance(t, ComposeTransform):
        return [leaf for p in t.parts for leaf in parts(p)]
    if isinstance(t, ConstantConditionalTransform):
        return [t.transform]
    return [t]


def call_uncached(t: Transform, x: torch.Tensor) -> torch.Tensor:
    """``t(x)`` through every leaf's ``_call``, bypassing the caches."""
    for leaf in parts(t):
        x = leaf._call(x)
    return x


def inverse_uncached(t: Transform, y: torch.Tensor) -> torch.Tensor:
    """``t.inv(y)`` through every leaf's ``_inverse``, bypassing the caches."""
    for leaf in reversed(parts(t)):
        y = leaf._inverse(y)
    return y


def clear_caches(t: Transform) -> None:
    for leaf in parts(t):
        if hasattr(leaf, "clear_cache"):
            leaf.clear_cache()
        leaf._cached_x_y = None, None


def event_log_det(t: Transform, x: torch.Tensor, y: torch.Tensor, event_dim: int) -> torch.Tensor:
    """``t.log_abs_det_jacobian`` summed over the whole event of ``event_dim`` dimensions."""
    return _sum_rightmost(t.log_abs_det_jacobian(x, y), event_dim - t.event_dim)


def autograd_log_det(t: Transform, x: torch.Tensor, event_shape: torch.Size) -> torch.Tensor:
    """``log|det J|`` of the uncached forward map at one event ``x``, by ``slogdet``."""

    def flat_map(v: torch.Tensor) -> torch.Tensor:
        return call_uncached(t, v.reshape(event_shape)).reshape(-1)

    jac = torch.autograd.functional.jacobian(flat_map, x.reshape(-1))
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign.abs() > 0, "the Jacobian is singular"
    return logabsdet


@torch.no_grad()
def perturb(module: torch.nn.Module, scale: float = 0.3) -> None:
    """Move every floating parameter away from its (identity) initial value.

    Spectral norms are then re-converged, as after any edit of the weights by hand (their power
    iteration tracks gradual training, not a jump)."""
    for p in module.parameters():
        if p.is_floating_point():
            p.add_(scale * torch.randn_like(p))
    refresh_spectral_norms(module, max_iter=2000, rtol=1e-12)


def state_dict_round_trip(module: torch.nn.Module) -> dict:
    """The module's ``state_dict`` after ``torch.save`` / ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def guide_and_model_traces(model, guide, *args, **kwargs) -> tuple:  # noqa: ANN001
    """The guide's trace and the model's trace replayed on it (what ``Trace_ELBO`` scores)."""
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return guide_trace, model_trace


def check_subsampled_elbo(model, guide, x, subsample_size: int, name: str, seed: int = 0) -> tuple:  # noqa: ANN001
    """Assert that ``model`` and ``guide`` (sites ``f"{name}.z"``, ``f"{name}.x"`` in the plate
    ``f"{name}.data"``) share one subsample of the rows of ``x``, observe exactly those rows, and
    that ``Trace_ELBO``'s loss is ``N / n`` times the unscaled loss of the subsample; returns the
    latent and the observed sites."""
    pyro.set_rng_seed(seed)
    loss = Trace_ELBO().loss(model, guide, x, subsample_size=subsample_size)
    pyro.set_rng_seed(seed)
    guide_trace, model_trace = guide_and_model_traces(
        model, guide, x, subsample_size=subsample_size
    )
    idx = guide_trace.nodes[f"{name}.data"]["value"]
    assert idx.shape == (subsample_size,)
    assert torch.equal(model_trace.nodes[f"{name}.data"]["value"], idx)
    z, obs = guide_trace.nodes[f"{name}.z"], model_trace.nodes[f"{name}.x"]
    scale = len(x) / subsample_size
    assert torch.equal(obs["value"], x[idx]) and obs["scale"] == scale == z["scale"]
    sites = (f"{name}.z", f"{name}.x")
    log_p = sum(model_trace.nodes[s]["fn"].log_prob(model_trace.nodes[s]["value"]) for s in sites)
    log_q = z["fn"].log_prob(z["value"])
    assert log_p.shape == log_q.shape == (subsample_size,)
    assert loss == pytest.approx(-scale * (log_p - log_q).sum().item(), rel=1e-12)
    return z, obs


def run_gloo_workers(worker: Path, out: Path, world_size: int = 2) -> ModuleType:
    """Run ``python worker rank world_size port out`` once per rank (gloo on a free local port),
    assert that every process exits cleanly, and return ``worker`` imported in this process (for
    the one-process reference run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(r), str(world_size), port, str(out)],
            env=env,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for r in range(world_size)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    spec = importlib.util.spec_from_file_location(worker.stem, worker)
    module = importlib.util.module_from_spec(spec)
    sys.modules[worker.stem] = module  # as `import worker` would (dataclasses look it up)
    spec.loader.exec_module(module)
    return module
