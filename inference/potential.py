r"""A Pyro model as the batched potential that :func:`~pyro_flowkit.inference.sample_langevin`
samples: :class:`ModelPotential`.

For a model with latent sites :math:`z_s` (continuous, each with its support) and data :math:`y`,
the sampler works on one unconstrained vector :math:`x = (u_s)_s`, :math:`z_s = T_s(u_s)` with
:math:`T_s` = ``biject_to(support)`` (Pyro's ``initialize_model`` picks them, as for ``HMC``), and

.. math:: U(x) = -\log p(y, T(x)) - \sum_s \log\bigl|\det J_{T_s}(u_s)\bigr|,

so that :math:`e^{-U}` is the posterior density of :math:`x`. ``ModelPotential`` maps a
``(chains, D)`` batch of such vectors to ``(chains,)`` potentials in one pass, by
``torch.func.vmap`` of one chain's log density: the model runs once, on batched tensors, under
``poutine.trace`` and ``poutine.condition``, whatever its own shapes (a matrix product
``design @ w`` stays one; no extra plate is needed, so models need not be written for
vectorisation). Pyro's ``initialize_model`` gives a potential of one point (a dict of sites); a
loop of it over chains is the fallback, for models that cannot be vmapped (Python control flow
on sampled values, ``.item()``, enumerated discrete sites).

Inside the vmapped pass Pyro's argument validation is off (its checks branch on values, which
vmap cannot do); an invalid value makes the potential NaN, which the Langevin steps treat as a
divergence (rejected and flagged), never as a number.

References:
    Stan Reference Manual, "Constraint transforms" (the unconstrained parametrisation and its
    Jacobian).

    torch.func.vmap: https://pytorch.org/docs/stable/generated/torch.func.vmap.html
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide.initialization import init_to_uniform
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor

from pyro_flowkit.diagnostics import from_chains
from pyro_flowkit.validation import check_choice, check_count

__all__ = ["ModelPotential"]


class ModelPotential:
    r"""The potential of a Pyro model's posterior over its unconstrained latent vector, batched.

    :math:`U(x) = -\log p(y, T(x)) - \log|\det J_T(x)|` for ``x`` of shape ``(chains, D)`` (see the
    module docstring), so ``sample_langevin(pot, pot.initial_points(16), 1000)`` samples the
    posterior; :meth:`constrain` maps the draws back to the sites, and :meth:`from_chains`
    names them for ArviZ (:func:`pyro_flowkit.diagnostics.from_chains` with one variable per
    site).

    Arguments:
        model: a Pyro model with continuous latent sites.
        model_args, model_kwargs: what the model is called with.
        vectorize: ``"vmap"`` (one ``torch.func.vmap`` pass over the chains; an error if the model
            cannot be vmapped), ``"loop"`` (Pyro's one-point potential, one chain at a time) or
            ``"auto"`` (``"vmap"`` if it agrees with Pyro's potential at two points, else
            ``"loop"`` with a ``UserWarning``).
        transforms: site name to a transform from the constrained to the unconstrained space, as
            for Pyro's ``HMC`` (default: ``biject_to(support).inv``).
        max_plate_nesting: as for Pyro's ``HMC`` (found by tracing when ``None``).
        init_strategy: Pyro's initialisation strategy for :meth:`initial_points`.

    Attributes:
        sites: the latent sites in the order of the vector's blocks.
        shapes: each site's unconstrained shape; ``dim``: the vector's length :math:`D`.
        vectorized: whether the potential runs as one vmapped pass.

    Example:
        >>> from pyro_flowkit.inference import sample_langevin
        >>> def model(y):
        ...     rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Poisson(rate), obs=y)
        >>> pot = ModelPotential(model, (torch.tensor([2.0, 4.0, 3.0]),))
        >>> x, stats = sample_langevin(pot, pot.initial_points(8), 100, num_warmup=100,
        ...                            progress=False)
        >>> posterior = pot.constrain(x)  # {"rate": (8, 100)}, rate > 0
        >>> posterior["rate"].shape, bool((posterior["rate"] > 0).all())
        (torch.Size([8, 100]), True)
    """

    def __init__(
        self,
        model: Callable,
        model_args: tuple = (),
        model_kwargs: Mapping[str, Any] | None = None,
        *,
        vectorize: str = "auto",
        transforms: Mapping[str, Any] | None = None,
        max_plate_nesting: int | None = None,
        init_strategy: Callable = init_to_uniform,
    ) -> None:
        check_choice("vectorize", vectorize, ("auto", "vmap", "loop"))
        self.model = model
        self.model_args = tuple(model_args)
        self.model_kwargs = dict(model_kwargs or {})
        self._init_options = {
            "max_plate_nesting": max_plate_nesting,
            "init_strategy": init_strategy,
        }
        params, self._point_potential, self.transforms, _ = initialize_model(
            model, self.model_args, self.model_kwargs, transforms=transforms,
            **self._init_options,
        )  # fmt: skip
        self._init_options["transforms"] = self.transforms
        self.sites = list(params)
        self.shapes = {name: tuple(params[name].shape) for name in self.sites}
        self._sizes = [math.prod(self.shapes[name]) for name in self.sites]
        self.dim = sum(self._sizes)
        first = params[self.sites[0]]
        self._like = first.new_empty(0)  # dtype and device of the latent vector
        self._start = self._flatten(params)
        self._batched = torch.func.vmap(self._log_density_of_point)
        self.vectorized = self._choose(vectorize)

    # ---------------------------------------------------------------- the vector and the sites
    def _flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        return torch.cat([params[name].reshape(-1) for name in self.sites])

    def unflatten(self, x: Tensor) -> dict[str, Tensor]:
        """``(..., D)`` vectors as a dict of unconstrained site values ``(..., *shape)``."""
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x: expected a tensor of shape (..., {self.dim}), got {got}")
        parts = x.split(self._sizes, dim=-1)
        lead = x.shape[:-1]
        return {
            name: part.reshape(lead + self.shapes[name])
            for name, part in zip(self.sites, parts, strict=True)
        }

    def constrain(self, x: Tensor) -> dict[str, Tensor]:
        """The sites' constrained values for ``(..., D)`` vectors: ``{site: (..., *site shape)}``
        (``(chains, draws, ...)`` for ``sample_langevin``'s draws)."""
        with torch.no_grad():
            return {
                name: self.transforms[name].inv(value) for name, value in self.unflatten(x).items()
            }

    # ---------------------------------------------------------------- the potential
    def _log_density_of_point(self, unconstrained: dict[str, Tensor]) -> Tensor:
        """:math:`\\log p(y, T(u)) + \\log|\\det J_T(u)|` of one point (vmapped over chains)."""
        log_density = 0.0
        constrained = {}
        for name, value in unconstrained.items():
            to_site = self.transforms[name].inv
            constrained[name] = to_site(value)
            log_density = log_density + to_site.log_abs_det_jacobian(value, constrained[name]).sum()
        conditioned = poutine.condition(self.model, data=constrained)
        trace = poutine.trace(conditioned).get_trace(*self.model_args, **self.model_kwargs)
        return log_density + trace.log_prob_sum()

    def _vmapped(self, x: Tensor) -> Tensor:
        with pyro.validation_enabled(False):
            return -self._batched(self.unflatten(x))

    def _looped(self, x: Tensor) -> Tensor:
        points = [self.unflatten(row) for row in x]
        return torch.stack([self._point_potential(point) for point in points])

    def __call__(self, x: Tensor) -> Tensor:
        """:math:`U` of ``(chains, D)`` unconstrained vectors: ``(chains,)``."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x: expected a tensor of shape (chains, {self.dim}), got {got}")
        return self._vmapped(x) if self.vectorized else self._looped(x)

    def _choose(self, vectorize: str) -> bool:
        """Whether to vmap: checked against Pyro's potential at the start and a nearby point."""
        if vectorize == "loop":
            return False
        latent = self._latent_sites()
        missing = sorted(latent - set(self.sites))
        problem: str | None = None
        if missing:
            problem = f"latent sites {missing} are not continuous (enumerated or discrete)"
        else:
            probe = torch.stack([self._start, self._start + 0.01 * torch.randn_like(self._start)])
            try:
                batched = self._vmapped(probe)
                looped = self._looped(probe).detach()
                tol = math.sqrt(torch.finfo(looped.dtype).eps)  # two orders of summation
                if not torch.allclose(batched.detach(), looped, rtol=tol, atol=tol):
                    values = f"{batched.tolist()} against {looped.tolist()}"
                    problem = f"its vmapped potential differs from Pyro's ({values})"
            except Exception as error:  # noqa: BLE001 - any failure to vmap means: loop
                first_line = (str(error).strip().splitlines() or [""])[0]
                problem = f"vmap failed ({type(error).__name__}: {first_line})"
        if problem is None:
            return True
        message = f"ModelPotential: the model cannot be vmapped over chains: {problem}"
        if vectorize == "vmap":
            raise ValueError(f"vectorize: {message}")
        warnings.warn(message + "; looping over chains instead (slow)", UserWarning, stacklevel=3)
        return False

    def _latent_sites(self) -> set[str]:
        trace = poutine.trace(self.model).get_trace(*self.model_args, **self.model_kwargs)
        trace = prune_subsample_sites(trace)  # plates are sample sites of the trace too
        return {
            name
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]
        }

    # ---------------------------------------------------------------- starts and results
    def initial_points(self, num_chains: int) -> Tensor:
        """``(num_chains, D)`` starting points, one draw of ``init_strategy`` each (Pyro's
        ``initialize_model``, which retries until the potential and its gradient are finite)."""
        check_count("num_chains", num_chains)
        params, *_ = initialize_model(
            self.model, self.model_args, self.model_kwargs, num_chains=num_chains,
            **self._init_options,
        )  # fmt: skip
        if num_chains == 1:
            params = {name: value.unsqueeze(0) for name, value in params.items()}
        return torch.cat(
            [params[name].reshape(num_chains, -1) for name in self.sites], dim=1
        ).detach()

    def from_chains(self, samples: Tensor, stats: Mapping[str, Tensor] | None = None) -> Any:
        """ArviZ ``InferenceData`` of ``(chains, draws, D)`` draws, one variable per site
        (constrained values), with ``sample_langevin``'s statistics: what
        :func:`pyro_flowkit.diagnostics.from_chains` makes of :meth:`constrain`'s dict."""
        if not isinstance(samples, Tensor) or samples.dim() != 3:
            got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
            raise ValueError(
                f"samples: expected a tensor of shape (chains, draws, {self.dim}), got {got}"
            )
        return from_chains(self.constrain(samples), stats)
