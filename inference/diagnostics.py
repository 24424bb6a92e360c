"""ArviZ conversion of vectorised chains: ``az.summary``, ``az.rhat``, ``az.plot_trace`` apply."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from pyro_flowkit._optional import import_arviz

if TYPE_CHECKING:
    import arviz

__all__ = ["import_arviz", "to_inference_data"]

_STAT_DTYPES = {"diverging": bool}


def _to_numpy(value: Tensor) -> Any:  # noqa: ANN401 - numpy array
    return value.detach().cpu().numpy()


def to_inference_data(
    samples: Tensor | Mapping[str, Tensor],
    stats: Mapping[str, Tensor] | None = None,
    *,
    var_name: str = "x",
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str]] | None = None,
) -> arviz.InferenceData:
    """Build an ArviZ ``InferenceData`` from :func:`~pyro_flowkit.inference.sample_langevin` output.

    Arguments:
        samples: a ``(chains, draws, *event)`` tensor (stored as ``var_name``) or a dict of them.
        stats: ``(chains, draws)`` statistics. ArviZ's reserved names (``lp``,
            ``acceptance_rate``, ``step_size``, ``diverging``, ...) keep their meaning, so
            ``az.plot_trace(idata, divergences=True)`` and the divergence count of
            ``az.summary`` work.
        var_name: the posterior variable's name when ``samples`` is a tensor.
        coords, dims: passed to ``az.from_dict``.

    Example:
        >>> import torch
        >>> from pyro_flowkit.inference import sample_langevin, to_inference_data
        >>> samples, stats = sample_langevin(
        ...     lambda x: 0.5 * x.square().sum(-1), torch.zeros(2, 1), 50, step_size=1.0,
        ...     progress=False,
        ... )
        >>> idata = to_inference_data(samples, stats)
        >>> dict(idata.posterior.sizes)
        {'chain': 2, 'draw': 50, 'x_dim_0': 1}
    """
    if isinstance(samples, Tensor):
        samples = {var_name: samples}
    shapes = {name: tuple(value.shape[:2]) for name, value in samples.items()}
    if len(set(shapes.values())) != 1 or any(len(s) != 2 for s in shapes.values()):
        raise ValueError(
            f"samples: expected tensors sharing leading (chains, draws) dims, got shapes {shapes}"
        )
    (lead,) = set(shapes.values())
    posterior = {name: _to_numpy(value) for name, value in samples.items()}
    sample_stats = {}
    for name, value in (stats or {}).items():
        if tuple(value.shape[:2]) != lead:
            raise ValueError(
                f"stats[{name!r}]: expected leading shape {lead} (chains, draws), "
                f"got {tuple(value.shape)}"
            )
        array = _to_numpy(value)
        sample_stats[name] = array.astype(_STAT_DTYPES.get(name, array.dtype))
    az = import_arviz()
    return az.from_dict(
        posterior=posterior, sample_stats=sample_stats or None, coords=coords, dims=dims
    )
