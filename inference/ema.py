r"""An exponential moving average of the trainable parameters, swapped in place for evaluation.

After every optimiser step, :meth:`EMA.update` moves each tracked average towards the live value,

.. math:: \bar\theta_n = \alpha\,\bar\theta_{n-1} + (1 - \alpha)\,\theta_n,
   \qquad \bar\theta_0 = \theta_0,

so that after :math:`n` updates

.. math:: \bar\theta_n = \alpha^n \theta_0 + (1 - \alpha) \sum_{k=1}^{n} \alpha^{n-k} \theta_k,

with :math:`\alpha` = ``decay``, :math:`\theta_0` the value when the parameter was first seen and
:math:`\theta_k` its value at the :math:`k`-th update after that. The weights sum to one and the
average forgets with a time constant of about :math:`1 / (1 - \alpha)` steps. It is the
constant-weight cousin of Polyak-Ruppert averaging (the uniform mean of the iterates, whose
asymptotic optimality Polyak & Juditsky prove); like Keras' and TensorFlow's it has no bias
correction and no warm-up, so :math:`\theta_0` keeps the weight :math:`\alpha^n` (choose
``decay`` so that :math:`\alpha^n` is small by the end of training, or create the EMA after a
few steps).

Pyro keeps the parameters of a model/guide pair in three places at once: ``nn.Module``
attributes, ``PyroModule`` attributes and the global ``ParamStore``, which all refer to the
same tensors (a ``PyroModule`` run under Pyro reads its ``PyroParam``\s from the store by name).
So the averages are swapped in by copying them *into* those very tensors, and every holder
(the modules, the store, ``Predictive``, ``SVI.evaluate_loss``, a flow's
``flow_distribution``) evaluates with them. A copy of the model, as
``torch.optim.swa_utils.AveragedModel`` makes, does not work with Pyro: the copy's
``PyroParam``\s are looked up in the store under the original's names, so it silently evaluates
(and from then on holds) the live values.

References:
    | Acceleration of Stochastic Approximation by Averaging (Polyak & Juditsky, 1992),
    | SIAM Journal on Control and Optimization 30(4), https://doi.org/10.1137/0330046
    | Su Jianlin (2019), "Making Keras cooler: intermediate variables, weight moving averages
    | and safe generators", https://kexue.fm (the weight moving average, swapped in for
    | evaluation and back for training)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pyro
import torch
from torch import Tensor, nn
from torch.nn.parameter import is_lazy

from pyro_flowkit.validation import check_count, check_interval

__all__ = ["EMA"]

Source = nn.Module | Tensor
Params = Source | Mapping[str, Source] | Iterable[Source] | None
_KIND = "None, a module, a tensor, or an iterable (or a dict) of modules and tensors"
_STATE_KEYS = ("averages", "decay", "num_updates")


def _trackable(t: Tensor) -> bool:
    return t.is_floating_point() and t.requires_grad and not is_lazy(t)


def _check_tensor(name: str, t: Tensor) -> Tensor:
    if not _trackable(t):
        got = f"a {t.dtype} tensor" + ("" if t.requires_grad else " without requires_grad")
        raise ValueError(f"{name}: expected a floating tensor that requires grad, got {got}")
    return t


def _sources(params: Params) -> list[tuple[str, Source]] | None:
    """``params`` as ``(prefix, module or tensor)`` pairs; ``None`` for the param store."""
    if params is None:
        return None
    if isinstance(params, nn.Module):
        return [("", params)]
    if isinstance(params, Tensor):
        named = [("0", params)]
    elif isinstance(params, Mapping):
        named = [(str(k), v) for k, v in params.items()]
    elif isinstance(params, Iterable) and not isinstance(params, str | bytes):
        named = [(str(i), v) for i, v in enumerate(params)]
    else:
        raise TypeError(f"params: expected {_KIND}, got {type(params).__name__}")
    for prefix, source in named:
        label = f"params[{prefix!r}]" if isinstance(params, Mapping) else f"params[{prefix}]"
        if not isinstance(source, nn.Module | Tensor):
            kind = type(source).__name__
            raise TypeError(f"{label}: expected a module or a tensor, got {kind}")
        if isinstance(source, Tensor):
            _check_tensor(label, source)
    return named


class EMA:
    r"""An exponential moving average of trainable parameters (Polyak averaging with a constant
    weight), for Pyro's model/guide pairs and plain modules alike.

    :meth:`update` after each optimiser step sets :math:`\bar\theta \leftarrow \alpha \bar\theta
    + (1 - \alpha)\theta` in every tracked tensor's own dtype and device, without a graph (see
    the module's docstring for the closed form). ``with ema.swapped():`` copies the averages into
    the live tensors in place and, on exit (also on an exception), copies the saved live values
    back bit for bit; training is unchanged by an EMA whatever its use, as it only reads the
    live values between steps. The in-place copies bump the tensors' version counters, so the
    flows' cached passes are recomputed on both sides of the swap.

    Arguments:
        decay: :math:`\alpha \in [0, 1)`; 0 tracks the last value, values near 1 average over
            about :math:`1 / (1 - \alpha)` steps (1 would never move, so it is refused).
        params: what to track (only floating tensors that require grad; lazy ones once
            materialised):

            - ``None`` (default): every parameter of Pyro's global param store, by store name,
              as its *unconstrained* tensor (constrained parameters are averaged on the
              unconstrained scale); looked up again at each :meth:`update`, so parameters
              created later (at the first ``svi.step``, say) are picked up;
            - a module: its parameters (``PyroModule``\s included), by their names in
              ``named_parameters()``, also looked up again at each update;
            - a tensor, or an iterable of modules and tensors: named ``"0"`` and
              ``"0.layer.weight"`` by position; a dict ``{"model": m, "guide": g}`` names them
              ``"model.layer.weight"`` instead.

            A tensor seen under two names (a module's parameter that is also in the store) is
            tracked once, under the first. A newly seen parameter starts its average at its
            current value. Averages are kept by name, so a name whose tensor is replaced (a
            reloaded store) continues its average in the new tensor: after
            ``pyro.clear_param_store()`` for a new model, start a new EMA. In Pyro's
            module-local mode (``pyro.settings.set(module_local_params=True)``) the store
            holds no ``PyroModule`` parameters: pass the modules.

    Attributes:
        decay: :math:`\alpha`.
        num_updates: the number of :meth:`update` calls.

    Example:
        >>> from pyro.infer import SVI, Trace_ELBO
        >>> def model(y):
        ...     loc = pyro.param("loc", torch.tensor(0.0))
        ...     scale = pyro.param("scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        ...     with pyro.plate("data", len(y)):
        ...         pyro.sample("y", dist.Normal(loc, scale), obs=y)
        >>> def guide(y):
        ...     pass
        >>> pyro.clear_param_store()
        >>> y = 3 + torch.randn(200)
        >>> svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
        >>> ema = EMA(decay=0.9)  # the store is empty: its params are found at the first update
        >>> for step in range(150):
        ...     loss = svi.step(y)
        ...     ema.update()
        >>> live = pyro.param("loc").clone()
        >>> with ema.swapped():  # pyro.param, Predictive, SVI.evaluate_loss see the averages
        ...     averaged = pyro.param("loc").item()
        >>> torch.equal(pyro.param("loc"), live), abs(averaged - 3) < 0.5
        (True, True)
        >>> sorted(ema.averages()), ema.num_updates
        (['loc', 'scale'], 150)
        >>> pyro.clear_param_store()
    """

    def __init__(self, decay: float = 0.999, params: Params = None) -> None:
        self.decay = check_interval("decay", decay, 0, 1, open_high=True)
        self._sources = _sources(params)
        self._averages: dict[str, Tensor] = {}
        self._swapped = False
        self.num_updates = 0
        with torch.no_grad():
            for name, live in self._named_live():
                self._averages[name] = live.detach().clone()

    def __repr__(self) -> str:
        return (
            f"EMA(decay={self.decay}, num_updates={self.num_updates}, "
            f"tracked={len(self._averages)})"
        )

    # ---------------------------------------------------------------- the live tensors
    def _named_live(self) -> list[tuple[str, Tensor]]:
        """``(name, live tensor)`` for every tracked tensor now, each tensor once."""
        if self._sources is None:
            named = list(pyro.get_param_store().named_parameters())
        else:
            named = [pair for prefix, source in self._sources for pair in _named(prefix, source)]
        seen: set[int] = set()
        out = []
        for name, t in named:
            if _trackable(t) and id(t) not in seen:
                seen.add(id(t))
                out.append((name, t))
        return out

    def _average_for(self, name: str, live: Tensor) -> Tensor:
        """The average of ``name``, moved to ``live``'s device and dtype if they changed."""
        avg = self._averages[name]
        if avg.shape != live.shape:
            raise ValueError(
                f"{name}: expected shape {tuple(avg.shape)} (that of its average), got "
                f"{tuple(live.shape)}; the parameter was replaced by one of another shape, so "
                "start a new EMA"
            )
        if avg.device != live.device or avg.dtype != live.dtype:
            avg = self._averages[name] = avg.to(device=live.device, dtype=live.dtype)
        return avg

    # ---------------------------------------------------------------- the public interface
    @torch.no_grad()
    def update(self) -> None:
        r"""One step of the average: :math:`\bar\theta \leftarrow \bar\theta + (1 - \alpha)
        (\theta - \bar\theta)` for every tracked tensor (``lerp_``, in place); a tensor seen
        for the first time starts at its current value. Call it after ``optimizer.step()`` /
        ``svi.step()``, never inside :meth:`swapped`."""
        if self._swapped:
            raise RuntimeError(
                "EMA.update: called inside `with ema.swapped():`, where the live tensors hold "
                "the averages; update after the block"
            )
        weight = 1.0 - self.decay
        for name, live in self._named_live():
            if name in self._averages:
                self._average_for(name, live).lerp_(live, weight)
            else:
                self._averages[name] = live.detach().clone()
        self.num_updates += 1

    @contextmanager
    def swapped(self) -> Iterator[EMA]:
        """Evaluate with the averages: inside the block every tracked tensor holds its average
        (copied in place, so every holder of the tensor sees it); on exit, even on an exception,
        the live values are copied back bit for bit. Tensors without an average yet (created
        after the last update) keep their live values. Use the block to evaluate (no optimiser
        step, and no backward through a graph built before it)."""
        if self._swapped:
            raise RuntimeError("EMA.swapped: the averages are already swapped in")
        pairs = [
            (live, self._average_for(name, live))
            for name, live in self._named_live()
            if name in self._averages
        ]
        saved = [live.detach().clone() for live, _ in pairs]
        self._swapped = True
        try:
            with torch.no_grad():
                for live, avg in pairs:
                    live.copy_(avg)
            yield self
        finally:
            with torch.no_grad():
                for (live, _), value in zip(pairs, saved, strict=True):
                    live.copy_(value)
            self._swapped = False

    def averages(self) -> dict[str, Tensor]:
        """The averages by name (store names, or the module's parameter names; not copies: read
        them, do not modify them). With ``params=module``,
        ``module.load_state_dict(ema.averages(), strict=False)`` loads them into a module."""
        return dict(self._averages)

    def state_dict(self) -> dict[str, Any]:
        """``{"averages": {name: tensor}, "decay": float, "num_updates": int}``: tensors and plain
        values only, so ``torch.load(..., weights_only=True)`` reads it back."""
        return {
            "averages": dict(self._averages),
            "decay": self.decay,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s averages (copied), decay and update count. An average
        whose parameter does not exist yet is kept for it: a lazily created parameter of that
        name continues from it. The averages move to their parameters' device at the next use."""
        if not isinstance(state, Mapping) or sorted(state) != list(_STATE_KEYS):
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"state: expected a mapping with keys {_STATE_KEYS}, got {got}")
        averages = state["averages"]
        if not isinstance(averages, Mapping) or not all(
            isinstance(t, Tensor) and t.is_floating_point() for t in averages.values()
        ):
            raise TypeError("state['averages']: expected a mapping of names to floating tensors")
        decay = check_interval("state['decay']", state["decay"], 0, 1, open_high=True)
        num_updates = check_count("state['num_updates']", state["num_updates"], minimum=0)
        self._averages = {str(k): t.detach().clone() for k, t in averages.items()}
        self.decay, self.num_updates = decay, num_updates


def _named(prefix: str, source: Source) -> Iterator[tuple[str, Tensor]]:
    """``(name, tensor)`` pairs of one source: a module's parameters, or the tensor itself."""
    if isinstance(source, Tensor):
        yield prefix, source
    else:
        yield from source.named_parameters(prefix=prefix)
