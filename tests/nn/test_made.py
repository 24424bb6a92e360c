"""CategoricalMADE: each position's logits depend exactly on the positions before it."""

import pytest
import torch

from pyro_flowkit.nn.made import CategoricalMADE


@pytest.mark.parametrize("hidden_dims", [(), (16,), (12, 12)])
def test_logits_depend_on_the_earlier_positions_only(hidden_dims):
    m, k = 4, 3
    made = CategoricalMADE(m, k, hidden_dims).double()
    x = torch.rand(m, k, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(made, x).reshape(m, k, m, k)
    depends = jac.abs().sum((1, 3)) > 0  # (output position, input position)
    allowed = torch.tril(torch.ones(m, m, dtype=torch.bool), diagonal=-1)
    assert not (depends & ~allowed).any()
    if hidden_dims != ():  # ReLU units may be inactive at x; the direct connection is not
        return
    assert torch.equal(depends, allowed)


def test_shapes_and_bad_input():
    made = CategoricalMADE(3, 5, (8,))
    assert made(torch.rand(2, 7, 3, 5)).shape == (2, 7, 3, 5)
    with pytest.raises(ValueError, match=r"onehot: expected shape \(\.\.\., 3, 5\)"):
        made(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="num_classes: expected a positive integer"):
        CategoricalMADE(3, 0)
