r"""The one training loop: minibatches from a map-style dataset, an optimiser, weight EMA,
callbacks, checkpoints that resume exactly, and data-parallel training under ``torchrun``.

:func:`train` minimises an objective over minibatches: a ``loss_fn(batch)`` returning a scalar
tensor (optionally with a dict of metrics), or a Pyro ``(model, guide[, elbo])`` triple whose
loss is ``elbo.differentiable_loss(model, guide, batch)``. The parameters are given (tensors or
modules) or discovered the way ``SVI`` does: every ``pyro.param`` site the objective touches
(unconstrained values, so constrained params work) and the parameters of the modules that own
``model`` and ``guide`` (Pyro's ``module_local_params`` mode too). :class:`Trainer` is the step
the loop runs, for callers that interleave several models.

Under an initialised ``torch.distributed`` process group each process reads its own shard of
every global batch (``DistributedSampler``), the initial parameters are broadcast from rank 0,
and after each backward the gradients of all trained tensors (Pyro params included) are averaged
over the processes. With ``plate="data"`` the sites in the model's plate of that name are scaled
by :math:`N / n` with :math:`N` the *global* number of rows and :math:`n` the local batch, so the
averaged gradient is that of one process on the whole global batch (scaling by the local size
would halve the likelihood's weight against the prior: a wrong posterior). Rank 0 shows the
progress bar and writes checkpoints.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
import torch.distributed as tdist
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.messenger import Messenger
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate
from tqdm.auto import tqdm

from pyro_flowkit.inference.distributed import (
    all_reduce_mean,
    average_gradients,
    broadcast_tensors,
    distributed,
    rank,
    world_size,
)
from pyro_flowkit.validation import check_count, check_positive

__all__ = ["History", "StepInfo", "Trainer", "minibatches", "train"]

Objective = Callable[[Any], Tensor | tuple[Tensor, Mapping[str, float]]]


def minibatches(
    data: Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[Tensor]:
    """Endless minibatches of ``data`` (first dimension), reshuffled every epoch."""
    n = len(data)
    check_count("batch_size", batch_size)
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator).to(data.device)
        for start in range(0, n - batch_size + 1, batch_size):
            yield data[order[start : start + batch_size]]


class History(list):
    """The loss of every step (a list, as before), with the other metrics in :attr:`metrics`
    (name -> one value per step) and the number of steps run in :attr:`steps`."""

    def __init__(self, losses: Iterable[float] = (), metrics: dict | None = None) -> None:
        super().__init__(losses)
        self.metrics: dict[str, list[float]] = metrics or {}

    @property
    def steps(self) -> int:
        return len(self)

    def as_dict(self) -> dict[str, list[float]]:
        """``{"loss": [...], **metrics}``."""
        return {"loss": list(self), **self.metrics}


@dataclass
class StepInfo:
    """What a callback sees after every step (``step`` counts from 1)."""

    step: int
    epoch: int
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


class _ScalePlate(Messenger):
    """Scales the sites inside the plate ``name`` by ``size / full_size``: a plate over a batch
    then counts as a plate over ``size`` rows (a plate that already subsamples from ``size``
    rows is left as it is)."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__()
        self.name, self.size = name, size

    def _process_message(self, msg: dict) -> None:
        for frame in msg["cond_indep_stack"]:
            if frame.name == self.name:
                msg["scale"] = msg["scale"] * (self.size / (frame.full_size or frame.size))


class _SVIObjective:
    """``elbo.differentiable_loss(model, guide, batch)``, the plate ``plate`` scaled to
    ``data_size`` rows."""

    def __init__(self, model: Callable, guide: Callable, elbo: object, plate: str | None) -> None:
        if not hasattr(elbo, "differentiable_loss"):
            raise TypeError(
                f"objective: expected an ELBO with differentiable_loss (Trace_ELBO, "
                f"TraceEnum_ELBO, ...), got {type(elbo).__name__}"
            )
        self.model, self.guide, self.elbo, self.plate = model, guide, elbo, plate
        self.data_size: int | None = None

    def __call__(self, batch: object) -> Tensor:
        model, guide = self.model, self.guide
        if self.plate is not None and self.data_size is not None:
            model = _ScalePlate(self.plate, self.data_size)(model)
            guide = _ScalePlate(self.plate, self.data_size)(guide)
        return self.elbo.differentiable_loss(model, guide, batch)

    def modules(self) -> list[nn.Module]:
        return [m for m in map(_owner, (self.model, self.guide)) if m is not None]


def _owner(fn: object) -> nn.Module | None:
    """The module behind ``fn``: itself, or the module a bound method belongs to."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def _as_objective(objective: object, plate: str | None) -> Objective:
    if isinstance(objective, tuple):
        if len(objective) not in (2, 3):
            raise ValueError(
                f"objective: expected loss_fn or (model, guide[, elbo]), got a tuple of "
                f"{len(objective)}"
            )
        model, guide, *elbo = objective
        return _SVIObjective(model, guide, elbo[0] if elbo else Trace_ELBO(), plate)
    if not callable(objective):
        raise TypeError(
            f"objective: expected a callable or (model, guide[, elbo]), got {objective!r}"
        )
    if plate is not None:
        raise ValueError("plate: only applies to a (model, guide[, elbo]) objective")
    return objective


def _split_params(params: object) -> tuple[list[Tensor], list[nn.Module]]:
    """Explicit tensors to train and the modules among ``params`` (whose state is saved)."""
    if isinstance(params, nn.Module):
        return [p for p in params.parameters() if p.requires_grad], [params]
    tensors, modules = [], []
    for item in params:
        if isinstance(item, nn.Module):
            modules.append(item)
            tensors += [p for p in item.parameters() if p.requires_grad]
        elif isinstance(item, Tensor):
            tensors.append(item)
        else:
            raise TypeError(f"params: expected tensors or modules, got {type(item).__name__}")
    return _unique(tensors), modules


def _unique(tensors: Iterable[Tensor]) -> list[Tensor]:
    seen: dict[int, Tensor] = {}
    for t in tensors:
        seen.setdefault(id(t), t)
    return list(seen.values())


def _unconstrained(value: Tensor) -> Tensor:
    return value.unconstrained() if hasattr(value, "unconstrained") else value


class Trainer:
    """One training step at a time: loss, backward, gradient averaging over processes, clipping,
    optimiser step, EMA update, history. :func:`train` drives it over a data loader; call
    :meth:`step` directly to interleave several models on the same batches.

    Arguments:
        objective: ``loss_fn(batch)`` returning a scalar tensor (or ``(tensor, metrics)``), or a
            ``(model, guide[, elbo])`` tuple (default ``Trace_ELBO()``).
        params: the tensors and/or modules to train; ``None`` discovers them at the first step
            (``pyro.param`` sites of the objective, and the modules owning ``model``/``guide``).
        optimizer: a ``torch.optim.Optimizer`` over ``params``, or a factory
            ``params -> Optimizer`` (default: Adam with ``lr``); new parameters found later are
            added to it as a parameter group.
        lr: the default Adam's learning rate.
        clip_grad_norm: clip the gradients' global norm to this value.
        ema: an :class:`~pyro_flowkit.inference.EMA` updated after every step.
        plate: for a ``(model, guide)`` objective, the model's plate over data rows, scaled to
            the data's (global) size; set ``data_size`` (done by :func:`train`).
    """

    def __init__(
        self,
        objective: object,
        *,
        params: object = None,
        optimizer: torch.optim.Optimizer | Callable | None = None,
        lr: float = 1e-3,
        clip_grad_norm: float | None = None,
        ema: object = None,
        plate: str | None = None,
    ) -> None:
        self.objective = _as_objective(objective, plate)
        self.lr = check_positive("lr", lr)
        self.clip_grad_norm = (
            None if clip_grad_norm is None else check_positive("clip_grad_norm", clip_grad_norm)
        )
        self.ema = ema
        self.params: list[Tensor] = []
        self.modules: list[nn.Module] = []
        self._discover = params is None
        if params is not None:
            self.params, self.modules = _split_params(params)
            if not self.params:
                raise ValueError("params: expected at least one trainable tensor, got none")
        if isinstance(self.objective, _SVIObjective):
            self.modules = _unique_modules([*self.modules, *self.objective.modules()])
        self._optimizer_spec = optimizer
        self.optimizer: torch.optim.Optimizer | None = (
            optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
        )
        self.history = History()
        self.step_count = 0

    @property
    def data_size(self) -> int | None:
        return getattr(self.objective, "data_size", None)

    @data_size.setter
    def data_size(self, n: int) -> None:
        if isinstance(self.objective, _SVIObjective):
            self.objective.data_size = n

    # ---------------------------------------------------------------- parameters
    def _loss(self, batch: object) -> tuple[Tensor, dict[str, float]]:
        """The objective at ``batch``; discovers new ``pyro.param`` tensors on the way."""
        if not self._discover:
            out = self.objective(batch)
        else:
            with poutine.trace(param_only=True) as capture:
                out = self.objective(batch)
            found = [_unconstrained(site["value"]) for site in capture.trace.nodes.values()]
            for module in self.modules:
                found += [p for p in module.parameters() if p.requires_grad]
            self._add_params([p for p in _unique(found) if p.requires_grad])
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError(f"objective: expected a scalar tensor loss, got {loss!r}")
        return loss, dict(metrics)

    def _add_params(self, found: list[Tensor]) -> None:
        known = {id(p) for p in self.params}
        new = [p for p in found if id(p) not in known]
        if not new:
            return
        if self.optimizer is not None and distributed():
            raise RuntimeError(
                "params: the objective created new parameters after the first step; under "
                "torch.distributed every parameter must exist at the first step (so that rank "
                "0's initial values can be broadcast)"
            )
        self.params += new
        if self.optimizer is not None:
            in_optimizer = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
            extra = [p for p in new if id(p) not in in_optimizer]
            if extra:
                self.optimizer.add_param_group({"params": extra})

    def _build_optimizer(self) -> None:
        spec = self._optimizer_spec
        if spec is None:
            self.optimizer = torch.optim.Adam(self.params, lr=self.lr)
        elif callable(spec):
            self.optimizer = spec(self.params)
        if not isinstance(self.optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer: expected a torch.optim.Optimizer or a factory of one, got {spec!r}"
            )

    def setup(self, batch: object = None) -> None:
        """Create the parameters (when discovered: one evaluation of the objective on ``batch``,
        without gradients, as ``SVI`` creates params lazily), build the optimiser, and give every
        process rank 0's parameters and buffers. :meth:`step` calls it first if needed."""
        if self._discover and not self.params:
            if batch is None:
                raise ValueError("batch: discovering the parameters needs a first batch")
            with torch.no_grad():
                self._loss(batch)
            if not self.params:
                raise ValueError(
                    "params: the objective touched no pyro.param and no module owns model or "
                    "guide; pass params= (tensors or modules)"
                )
        if self.optimizer is None:
            self._build_optimizer()
        broadcast_tensors([*self.params, *(b for m in self.modules for b in m.buffers())])

    # ---------------------------------------------------------------- the step
    def step(self, batch: object) -> float:
        """One optimisation step on ``batch``; returns the loss (averaged over processes).

        Raises ``FloatingPointError`` naming the step if the loss is NaN or infinite.
        """
        if self.optimizer is None:
            self.setup(batch)
        loss, metrics = self._loss(batch)
        value = float(all_reduce_mean(loss.detach()))
        step = self.step_count + 1
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss became {value} at step {step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.params)
        if self.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.params, self.clip_grad_norm)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update()
        self.step_count = step
        self.history.append(value)
        for name, v in metrics.items():
            self.history.metrics.setdefault(name, []).append(float(v))
        return value

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Parameters, module states, optimiser, EMA, step and history (tensors and plain
        values: loadable with ``torch.load(..., weights_only=True)``)."""
        store = pyro.get_param_store()
        return {
            "step": self.step_count,
            "params": [p.detach().clone() for p in self.params],
            "param_store": {k: v.detach().clone() for k, v in store._params.items()},
            "modules": [m.state_dict() for m in self.modules],
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "history": self.history.as_dict(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict` (after the parameters exist: see :func:`train`)."""
        if len(state["params"]) != len(self.params):
            raise ValueError(
                f"checkpoint: expected {len(self.params)} trained tensors as in this run, got "
                f"{len(state['params'])}"
            )
        for module, module_state in zip(self.modules, state["modules"], strict=True):
            module.load_state_dict(module_state)
        for p, saved in zip(self.params, state["params"], strict=True):
            p.copy_(saved)
        store = pyro.get_param_store()
        for name, value in state["param_store"].items():
            if name in store._params:
                store._params[name].copy_(value)
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if state["ema"] is not None and self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.step_count = state["step"]
        saved = dict(state["history"])
        self.history = History(saved.pop("loss"), saved)


def _unique_modules(modules: Iterable[nn.Module]) -> list[nn.Module]:
    seen: dict[int, nn.Module] = {}
    for m in modules:
        seen.setdefault(id(m), m)
    return list(seen.values())


# ---------------------------------------------------------------- data
class _Rows(Dataset):
    """A tensor as a map-style dataset whose batches are fetched in one indexing operation."""

    def __init__(self, data: Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]

    def __getitems__(self, indices: list[int]) -> Tensor:
        return self.data[torch.as_tensor(indices, device=self.data.device)]


def _same(batch: Tensor) -> Tensor:
    return batch


class _Batches:
    """Batches of this process's share of an epoch's shuffled indices, from batch ``start`` on
    (so a resumed run skips what it already did without loading it)."""

    def __init__(self, sampler: DistributedSampler, batch_size: int) -> None:
        self.sampler, self.batch_size, self.start = sampler, batch_size, 0

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.sampler)
        for b in range(self.start, len(indices) // self.batch_size):
            yield indices[b * self.batch_size : (b + 1) * self.batch_size]


def _loader(
    data: Tensor | Dataset, batch_size: int, seed: int, num_workers: int
) -> tuple[DataLoader, _Batches, int]:
    """The loader of this process's batches, its batch sampler and the per-process batch size.

    The global batch is ``batch_size`` rows: ``batch_size / world_size`` per process (the same
    global batches, hence the same parameters, with any number of processes)."""
    dataset = _Rows(data) if isinstance(data, Tensor) else data
    n, world = len(dataset), world_size()
    if batch_size % world:
        raise ValueError(
            f"batch_size: expected a multiple of the {world} processes, got {batch_size}"
        )
    local = min(batch_size, n) // world
    if local < 1:
        raise ValueError(f"data: expected at least {world} rows for {world} processes, got {n}")
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank(), shuffle=True, seed=seed, drop_last=True
    )
    batches = _Batches(sampler, local)
    collate = _same if isinstance(dataset, _Rows) else default_collate
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),  # the global RNG is left to the model
    )
    return loader, batches, local


# ---------------------------------------------------------------- checkpoints
def _rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.frombuffer(np.random.get_state()[1], dtype=np.uint32).copy()),
        "numpy_pos": np.random.get_state()[2],
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(path: Path, trainer: Trainer, epoch: int, position: int, seed: int) -> None:
    if rank() == 0:
        state = trainer.state_dict()
        state.update(epoch=epoch, position=position, seed=seed, rng=_rng_state())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
    if distributed():
        tdist.barrier()


# ---------------------------------------------------------------- the loop
def _check_length(steps: int | None, epochs: int | None, batches_per_epoch: int) -> int:
    if (steps is None) == (epochs is None):
        raise ValueError(
            f"steps, epochs: expected exactly one of them, got steps={steps!r}, epochs={epochs!r}"
        )
    if steps is not None:
        return check_count("steps", steps, minimum=0)
    return check_count("epochs", epochs, minimum=0) * batches_per_epoch


def train(
    objective: object,
    data: Tensor | Dataset,
    *legacy: object,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 128,
    params: object = None,
    optimizer: torch.optim.Optimizer | Callable | None = None,
    lr: float = 1e-3,
    clip_grad_norm: float | None = None,
    ema: object = None,
    plate: str | None = None,
    callbacks: Sequence[Callable[[StepInfo], object]] = (),
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: str | Path | None = None,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "train",
) -> History:
    r"""Minimise ``objective`` over minibatches of ``data``: the library's one training loop.

    Each epoch shuffles the rows (``DistributedSampler`` seeded by ``seed`` and the epoch) and
    cuts them into batches of ``batch_size`` rows (the incomplete last one is dropped); a
    ``DataLoader`` with ``num_workers`` workers fetches them, each index once per epoch. A
    tensor is fetched a batch at a time in one indexing operation.

    Arguments:
        objective: ``loss_fn(batch)`` returning a scalar tensor, or ``(tensor, metrics)`` with a
            dict of floats to record; or a Pyro ``(model, guide[, elbo])`` tuple (default
            ``Trace_ELBO()``), called as ``model(batch)``/``guide(batch)``.
        data: a tensor (rows along the first dimension) or a map-style ``Dataset``.
        steps, epochs: how long to train (exactly one).
        batch_size: rows per step, over all processes together.
        params: tensors and/or modules to train (``None``: discovered as ``SVI`` does).
        optimizer: a ``torch.optim.Optimizer`` or a factory ``params -> Optimizer`` (default
            Adam with ``lr``).
        lr: the default Adam's learning rate.
        clip_grad_norm: clip the gradients' global norm.
        ema: an :class:`~pyro_flowkit.inference.EMA`, updated after every step.
        plate: the name of the model's plate over data rows (``(model, guide)`` objectives):
            its sites are scaled to the data's global size.
        callbacks: called with a :class:`StepInfo` after every step; one returning ``True``
            stops training.
        checkpoint: a file to save the state to (rank 0), every ``checkpoint_every`` steps and
            at the end: parameters, module states, optimiser, EMA, step, position in the epoch,
            history and random states (``torch.load(..., weights_only=True)`` reads it).
        resume: a checkpoint to resume from; the run continues exactly where it stopped (same
            batches, same random numbers: bit-identical to an uninterrupted run on the CPU).
        seed: seed of the shuffling.
        num_workers: ``DataLoader`` worker processes.
        progress: a tqdm progress bar (rank 0).
        desc: its label.

    Returns:
        The :class:`History`: the loss of every step (mean over processes) and the metrics.

    Raises:
        FloatingPointError: when the loss is NaN or infinite, naming the step.

    Example:
        >>> from pyro_flowkit.flows import flow_distribution, realnvp
        >>> flow = realnvp(2, num_layers=2, hidden_dims=(16,))
        >>> d = flow_distribution(flow, 2)
        >>> x = torch.randn(256, 2) * 0.5 + 1
        >>> history = train(lambda b: -d.log_prob(b).mean(), x, params=flow, steps=20,
        ...                 batch_size=64, lr=1e-2, progress=False)
        >>> len(history), history[-1] < history[0]
        (20, True)
    """
    data, params = _legacy_call(data, legacy, params)
    trainer = Trainer(
        objective, params=params, optimizer=optimizer, lr=lr, clip_grad_norm=clip_grad_norm,
        ema=ema, plate=plate,
    )  # fmt: skip
    loader, batches, _ = _loader(data, check_count("batch_size", batch_size), seed, num_workers)
    trainer.data_size = len(loader.dataset)
    per_epoch = len(batches)
    total = _check_length(steps, epochs, per_epoch)
    epoch, position = 0, 0
    if resume is not None:
        epoch, position = _resume(trainer, Path(resume), loader)
    bar = tqdm(
        total=total, initial=trainer.step_count, desc=desc, leave=False,
        disable=not progress or rank() != 0,
    )  # fmt: skip
    every = None if checkpoint_every is None else check_count("checkpoint_every", checkpoint_every)
    try:
        while trainer.step_count < total:
            batches.sampler.set_epoch(epoch)
            batches.start = position
            for batch in loader:
                trainer.step(batch)
                position += 1
                bar.update(1)
                if trainer.step_count % 50 == 1:
                    bar.set_postfix(loss=f"{trainer.history[-1]:.4g}")
                info = StepInfo(trainer.step_count, epoch, trainer.history[-1], _last(trainer))
                if any([callback(info) is True for callback in callbacks]):
                    total = trainer.step_count  # a callback asked to stop
                if checkpoint is not None and every and trainer.step_count % every == 0:
                    _save(Path(checkpoint), trainer, epoch, position, seed)
                if trainer.step_count >= total:
                    break
            else:  # the epoch is used up
                epoch, position = epoch + 1, 0
    finally:
        bar.close()
    if checkpoint is not None:
        _save(Path(checkpoint), trainer, epoch, position, seed)
    return trainer.history


def _last(trainer: Trainer) -> dict[str, float]:
    return {k: v[-1] for k, v in trainer.history.metrics.items() if v}


def _resume(trainer: Trainer, path: Path, loader: DataLoader) -> tuple[int, int]:
    """Create the parameters (one traced evaluation on the first batch when they are
    discovered), then restore every state; returns ``(epoch, position)``."""
    state = torch.load(path, weights_only=True, map_location="cpu")
    trainer.setup(next(iter(loader)))
    trainer.load_state_dict(state)
    _set_rng_state(state["rng"])
    return state["epoch"], state["position"]


def _legacy_call(data: object, legacy: tuple, params: object) -> tuple[object, object]:
    """``train(loss_fn, params, data, steps=...)``, the signature before the one loop: still
    accepted, with a ``DeprecationWarning``; returns ``(data, params)``."""
    if not legacy:
        return data, params
    if len(legacy) != 1 or params is not None:
        raise TypeError("train: expected train(objective, data, *, params=..., ...)")
    warnings.warn(
        "train(loss_fn, params, data, ...) is deprecated and will be removed in 0.3: use "
        "train(loss_fn, data, params=params, ...)",
        DeprecationWarning,
        stacklevel=3,
    )
    return legacy[0], list(data)
