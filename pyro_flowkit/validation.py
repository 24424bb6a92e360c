"""Argument checks shared by every part of the library, with one message style.

Each check raises ``ValueError`` (``TypeError`` for a value of the wrong kind) whose message
names the argument, says what was expected and shows what was given::

    num_layers: expected a positive integer, got 0

and returns the value in its canonical type, so a caller writes
``self.rate = check_rate("dropout", dropout)``. Booleans are refused wherever a number is
expected (``True`` is an ``int`` in Python, never a meaningful count or scale), and infinity and
NaN are refused wherever a finite number is expected: a check written as ``not x > 0`` lets
``inf`` through, and a bound of ``inf`` turns every later output into NaN.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = [
    "check_choice",
    "check_count",
    "check_finite",
    "check_finite_tensor",
    "check_interval",
    "check_positive",
    "check_probability",
    "check_rate",
]


def _fail(name: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{name}: expected {expected}, got {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_count(name: str, value: int, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum`` (1: a positive, 0: a non-negative
    integer); floats such as ``3.0`` and booleans are refused."""
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer of at least {minimum}"
    )
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise _fail(name, kind, value)
    return int(value)


def check_finite(name: str, value: float) -> float:
    """``value`` as a finite ``float`` (any sign)."""
    if not _is_real(value) or not math.isfinite(value):
        raise _fail(name, "a finite number", value)
    return float(value)


def check_positive(
    name: str, value: float, *, allow_zero: bool = False, allow_inf: bool = False
) -> float:
    """``value`` as a ``float`` above 0 (at least 0 with ``allow_zero``), finite unless
    ``allow_inf``; NaN is always refused."""
    kind = "a non-negative" if allow_zero else "a positive"
    kind += " number" if allow_inf else " finite number"
    ok = _is_real(value) and not math.isnan(value) and (allow_inf or math.isfinite(value))
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise _fail(name, kind, value)
    return float(value)


def check_interval(
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
    what: str = "a number",
) -> float:
    """``value`` as a ``float`` between ``low`` and ``high``, either end excluded on request."""
    interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    ok = _is_real(value) and not math.isnan(value)
    if ok:
        above = value > low if open_low else value >= low
        ok = above and (value < high if open_high else value <= high)
    if not ok:
        raise _fail(name, f"{what} in {interval}", value)
    return float(value)


def check_probability(
    name: str, value: float, *, open_low: bool = False, open_high: bool = False
) -> float:
    """``value`` as a ``float`` in ``[0, 1]``, either end excluded on request."""
    return check_interval(
        name, value, 0, 1, open_low=open_low, open_high=open_high, what="a probability"
    )


def check_rate(name: str, value: float) -> float:
    """A rate such as dropout's: a probability in ``[0, 1)``."""
    return check_probability(name, value, open_high=True)


def check_choice(name: str, value: object, choices: Iterable[object]) -> object:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # an unhashable value compared with strings
        ok = False
    if not ok:
        raise _fail(name, f"one of {choices}", value)
    return value


def check_finite_tensor(name: str, value: Tensor) -> Tensor:
    """``value`` if it is a tensor whose every entry is finite (else ``ValueError`` saying how
    many entries are NaN or infinite)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(value).__name__}")
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{name}: expected finite values, got {bad} NaN or infinite entries of "
            f"{value.numel()} (shape {tuple(value.shape)})"
        )
    return value
