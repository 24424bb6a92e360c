"""The one validation module: every check names the argument, the expectation and the value."""

import math
import re

import numpy as np
import pytest
import torch

from pyro_flowkit.validation import (
    check_choice,
    check_count,
    check_finite,
    check_finite_tensor,
    check_interval,
    check_positive,
    check_probability,
    check_rate,
)

BAD_NUMBERS = [math.inf, -math.inf, math.nan, True, "1", None, [1.0]]


@pytest.mark.parametrize(
    "check, good, bad, message",
    [
        (
            lambda v: check_count("n", v),
            [1, 7, np.int64(3)],
            [0, -1, 2.0, True, "3", None],
            "n: expected a positive integer",
        ),
        (
            lambda v: check_count("n", v, minimum=0),
            [0, 5],
            [-1, 1.5, False],
            "n: expected a non-negative integer",
        ),
        (
            lambda v: check_count("f", v, minimum=2),
            [2, 9],
            [1, 0],
            "f: expected an integer of at least 2",
        ),
        (
            lambda v: check_positive("lr", v),
            [0.1, 3, np.float32(2.0)],
            [0, -1.0, *BAD_NUMBERS],
            "lr: expected a positive finite number",
        ),
        (
            lambda v: check_positive("tol", v, allow_zero=True),
            [0, 0.5],
            [-0.5, math.inf, math.nan, True],
            "tol: expected a non-negative finite number",
        ),
        (
            lambda v: check_positive("b", v, allow_inf=True),
            [1.0, math.inf],
            [0, math.nan, -math.inf],
            "b: expected a positive number",
        ),
        (lambda v: check_finite("x", v), [-3.0, 0, 2], BAD_NUMBERS, "x: expected a finite number"),
        (
            lambda v: check_probability("p", v),
            [0, 0.5, 1],
            [-0.1, 1.1, math.nan, True, "0.5"],
            r"p: expected a probability in \[0, 1\]",
        ),
        (
            lambda v: check_probability("p", v, open_low=True, open_high=True),
            [0.5],
            [0, 1],
            r"p: expected a probability in \(0, 1\)",
        ),
        (
            lambda v: check_rate("dropout", v),
            [0, 0.3],
            [1, -0.2, math.nan],
            r"dropout: expected a probability in \[0, 1\)",
        ),
        (
            lambda v: check_interval("g", v, 0.5, 1, open_low=True),
            [0.75, 1],
            [0.5, 1.01],
            r"g: expected a number in \(0.5, 1\]",
        ),
        (
            lambda v: check_choice("mode", v, ("a", "b")),
            ["a", "b"],
            ["c", None, ["a"]],
            r"mode: expected one of \('a', 'b'\)",
        ),
    ],
)
def test_checks_accept_good_values_and_name_bad_ones(check, good, bad, message):
    for value in good:
        check(value)
    for value in bad:
        with pytest.raises(ValueError, match=f"{message}, got {re.escape(repr(value))}"):
            check(value)


def test_checks_return_canonical_types():
    assert type(check_count("n", np.int64(3))) is int
    assert type(check_positive("lr", 1)) is float
    assert check_probability("p", 1) == 1.0


def test_finite_tensor_check_counts_the_bad_entries():
    x = torch.tensor([1.0, math.nan, math.inf, 2.0])
    with pytest.raises(
        ValueError, match=r"data: expected finite values, got 2 NaN or infinite entries of 4"
    ):
        check_finite_tensor("data", x)
    assert check_finite_tensor("data", x[[0, 3]]) is not None
    with pytest.raises(TypeError, match="data: expected a tensor, got list"):
        check_finite_tensor("data", [1.0])
