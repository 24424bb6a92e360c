r"""Record the outputs of named submodules while a model runs, as Pyro users need for hidden units.

:func:`capture` hangs a forward hook on each named submodule for the duration of a ``with``
block. Hooks see every call, wherever it comes from: a plain forward, a Pyro model or guide run
under ``poutine.trace``, ``SVI``, ``Predictive``, a flow's ``log_prob``. (``torch.fx`` would need
to trace the model symbolically, which a ``PyroModule`` with its ``pyro.sample`` statements does
not allow.)

Pyro's own way to expose an intermediate value is a deterministic site: write
``h = pyro.deterministic("h", value)`` in the model and ask for it with
``Predictive(model, ..., return_sites=["h"])``, which stacks one value per posterior draw. That
needs the model's code to name the value; :func:`capture` needs only the submodule's name, also
for networks the model does not own (the conditioners inside a flow). Example of Pyro's way:

    >>> from pyro.infer import Predictive
    >>> def model(x):
    ...     w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    ...     with pyro.plate("data", len(x)):
    ...         h = pyro.deterministic("h", torch.tanh(x @ w))
    ...         pyro.sample("y", dist.Normal(h, 0.1))
    >>> draws = Predictive(model, num_samples=4, return_sites=["h"])(torch.randn(5, 3))
    >>> draws["h"].shape
    torch.Size([4, 5])

References:
    | Su Jianlin (2019), "Making Keras cooler: intermediate variables, weight moving averages
    | and safe generators", https://kexue.fm (reading intermediate variables of a model)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.distributions import Transform

__all__ = ["capture"]

_SHOWN = 8  # valid names listed in an error message


@contextmanager
def capture(
    module: nn.Module, names: str | Iterable[str], *, detach: bool = True
) -> Iterator[dict[str, list[Any]]]:
    """Record the output of every call of the submodules ``names`` of ``module`` in the block.

    Arguments:
        module: the model (an ``nn.Module``, ``PyroModule`` or a flow).
        names: a name or names as in ``module.named_modules()`` (``""`` is ``module`` itself).
        detach: record a snapshot, detached from the graph and copied, so that a later in-place
            change (e.g. ``nn.ReLU(inplace=True)``) does not alter it; ``False`` records the
            outputs themselves, graph included (to differentiate through them).

    Yields:
        ``{name: [output of call 1, output of call 2, ...]}`` in the order of ``names``; tensors
        inside tuples, lists and dicts are detached too. ``Predictive`` also runs the model
        to inspect it, so expect records from those runs as well.

    Raises:
        ValueError: for an unknown name (listing valid ones), or for a transform of a flow:
            torch ``Transform``\\s are called through ``Transform.__call__``, which bypasses
            ``nn.Module`` hooks, so capture their networks (e.g. ``"1.conditioner"``).

    The hooks are removed on leaving the block, also on an exception; the records stay.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> x = torch.randn(5, 3)
        >>> with capture(net, ["0", "1"]) as seen:
        ...     y = net(x)
        ...     y = net(x)
        >>> len(seen["0"]), torch.allclose(seen["1"][0], torch.tanh(net[0](x)))
        (2, True)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected an nn.Module, got {type(module).__name__}")
    targets = _resolve(module, names)
    records: dict[str, list[Any]] = {name: [] for name in targets}
    handles = []
    try:
        for name, sub in targets.items():
            handles.append(sub.register_forward_hook(_recorder(records[name], detach)))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _resolve(module: nn.Module, names: str | Iterable[str]) -> dict[str, nn.Module]:
    """The submodules called ``names``, checked: known, and not torch transforms."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("names: expected at least one submodule name, got none")
    modules = dict(module.named_modules(remove_duplicate=False))
    targets = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"names: expected strings, got {type(name).__name__}")
        if name not in modules:
            raise ValueError(f"names: no submodule {name!r} in {_listing(module, modules)}")
        if isinstance(modules[name], Transform):
            raise ValueError(_transform_message(name, modules))
        targets[name] = modules[name]
    return targets


def _listing(module: nn.Module, modules: dict[str, nn.Module]) -> str:
    valid = list(modules)
    shown = ", ".join(map(repr, valid[:_SHOWN])) + (", ..." if len(valid) > _SHOWN else "")
    return f"{type(module).__name__}; valid names ({len(valid)}) include {shown}"


def _transform_message(name: str, modules: dict[str, nn.Module]) -> str:
    inside = [
        n
        for n, m in modules.items()
        if (not name or n.startswith(name + ".")) and not isinstance(m, Transform)
    ]
    advice = ", ".join(map(repr, inside[:_SHOWN])) or "none"
    return (
        f"names: {name!r} is a {type(modules[name]).__name__}, a torch Transform, whose calls "
        f"bypass nn.Module hooks; capture a network inside it instead ({advice})"
    )


def _recorder(record: list[Any], detach: bool) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        record.append(_snapshot(output) if detach else output)

    return hook


def _snapshot(value: Any) -> Any:
    """``value`` with every tensor (also inside tuples, lists and dicts) detached and copied."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*map(_snapshot, value))
    if isinstance(value, list | tuple):
        return type(value)(map(_snapshot, value))
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value
