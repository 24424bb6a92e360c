r"""Exact optimal transport between small weighted point sets, for checking estimators.

Between :math:`\mu = \sum_i a_i \delta_{x_i}` and :math:`\nu = \sum_j b_j \delta_{y_j}` with the
cost :math:`C_{ij} = \|x_i - y_j\|_2^p`, the Kantorovich problem is the linear program

.. math:: W_p^p(\mu, \nu) = \min_{P \ge 0,\ P\mathbf 1 = a,\ P^\top \mathbf 1 = b}
   \sum_{ij} C_{ij} P_{ij}
   \;=\; \max_{f_i + g_j \le C_{ij}} \sum_i a_i f_i + \sum_j b_j g_j ,

the two sides being the primal and the dual LP (strong duality: equal optima). For
:math:`p = 1` the dual reduces to the Kantorovich-Rubinstein form

.. math:: W_1(\mu, \nu) = \max_{\|f\|_L \le 1} \mathbb E_\mu f - \mathbb E_\nu f,

an LP over the values of :math:`f` on the union of the supports, constrained by
:math:`f(z_k) - f(z_l) \le \|z_k - z_l\|` (any such values extend to a 1-Lipschitz function on
the whole space, McShane's extension): the objective a WGAN critic approximates. On the line
the quantile functions give the closed form

.. math:: W_p^p = \int_0^1 |F^{-1}(u) - G^{-1}(u)|^p\,du, \qquad
   W_1 = \int_{\mathbb R} |F(t) - G(t)|\,dt .

The LPs are solved by HiGHS through ``scipy.optimize.linprog`` (scipy is imported when an LP is
solved; scikit-learn, a dependency of this package, already installs it). They have :math:`nm`
variables (primal) or :math:`nm` constraints (dual): meant for a few hundred points per side.
Between two *unweighted* sets of equal size an optimal plan is a permutation (the vertices of
the Birkhoff polytope), so the LP is an assignment problem, solved exactly by
``scipy.optimize.linear_sum_assignment`` in milliseconds for a few hundred points (the default
there); for thousands of weighted points, use POT's network simplex (``ot.emd2``).

References:
    | Optimal Transport: Old and New (C. Villani, 2009), chapters 5-6 (Kantorovich duality,
    | Kantorovich-Rubinstein), https://doi.org/10.1007/978-3-540-71050-9
    | Computational Optimal Transport (G. Peyre, M. Cuturi, 2019), chapters 2-3,
    | https://arxiv.org/abs/1803.00567
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pyro_flowkit.validation import check_choice, check_finite_tensor, check_interval

__all__ = [
    "TransportResult",
    "lipschitz_dual",
    "transport_assignment",
    "transport_dual",
    "transport_primal",
    "wasserstein_1d",
    "wasserstein_exact",
]

METHODS = ("auto", "primal", "dual", "lipschitz", "assignment", "1d")


@dataclass
class TransportResult:
    r"""The optimum of one transport LP.

    Attributes:
        cost: the optimal value, :math:`W_p^p` (:math:`W_1` for the Lipschitz dual).
        plan: the optimal coupling :math:`P` ``(n, m)`` (primal), else ``None``.
        f: the optimal dual potential on the first support ``(n,)`` (dual LPs), else ``None``.
        g: the optimal potential on the second support ``(m,)`` (dual LPs), else ``None``;
            for the Lipschitz dual :math:`g = -f` on the second support.
    """

    cost: float
    plan: Tensor | None = None
    f: Tensor | None = None
    g: Tensor | None = None


def _points(name: str, x: Tensor) -> Tensor:
    """``x`` as finite ``(n, d)`` points (a vector is ``n`` points on the line)."""
    check_finite_tensor(name, x)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or len(x) == 0:
        raise ValueError(f"{name}: expected (n, d) points with n >= 1, got {tuple(x.shape)}")
    return x


def _weights(name: str, w: Tensor | None, n: int, like: Tensor) -> Tensor:
    """``w`` normalised to sum 1 (uniform when ``None``), as a float64 tensor on ``like``'s
    device."""
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=like.device)
    check_finite_tensor(name, w)
    w = w.to(torch.float64)
    if w.shape != (n,) or bool((w < 0).any()) or not w.sum() > 0:
        raise ValueError(
            f"{name}: expected {n} non-negative weights with a positive sum, got "
            f"{w.tolist() if w.numel() <= 8 else tuple(w.shape)}"
        )
    return w / w.sum()


def _check_p(p: float) -> float:
    return check_interval("p", p, 1, math.inf, open_high=True, what="an exponent")


def _scipy() -> tuple:
    """``scipy.optimize.linprog``, ``scipy.sparse`` and ``linear_sum_assignment``, imported when
    an LP is solved."""
    try:
        from scipy import sparse
        from scipy.optimize import linear_sum_assignment, linprog
    except ImportError as e:  # pragma: no cover - scikit-learn depends on scipy
        raise ImportError("exact transport LPs need scipy: pip install scipy") from e
    return linprog, sparse, linear_sum_assignment


def _solve(c: np.ndarray, **constraints: object) -> object:
    """``linprog(c, **constraints)`` by HiGHS; raises ``RuntimeError`` unless it is optimal."""
    result = _scipy()[0](c, method="highs", **constraints)
    if result.status != 0:
        raise RuntimeError(f"transport LP: HiGHS did not find an optimum ({result.message})")
    return result


def _check_cost(cost: Tensor, a: Tensor | None, b: Tensor | None) -> tuple:
    check_finite_tensor("cost", cost)
    if cost.dim() != 2 or 0 in cost.shape:
        raise ValueError(f"cost: expected an (n, m) matrix, got shape {tuple(cost.shape)}")
    n, m = cost.shape
    a, b = _weights("a", a, n, cost), _weights("b", b, m, cost)
    return cost.detach().double().cpu().numpy(), a.cpu().numpy(), b.cpu().numpy()


def transport_primal(
    cost: Tensor, a: Tensor | None = None, b: Tensor | None = None
) -> TransportResult:
    r"""The primal Kantorovich LP: the cheapest coupling of the weights ``a`` and ``b``.

    .. math:: \min_{P \ge 0} \sum_{ij} C_{ij} P_{ij}
       \quad\text{s.t.}\quad \sum_j P_{ij} = a_i,\ \sum_i P_{ij} = b_j .

    Arguments:
        cost: the cost matrix :math:`C` ``(n, m)``.
        a, b: non-negative weights ``(n,)`` and ``(m,)``, normalised to sum 1 (default uniform).

    Returns:
        A :class:`TransportResult` with ``cost`` and ``plan`` (float64, on ``cost``'s device).

    Example:
        >>> cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> transport_primal(cost).cost
        0.0
    """
    c, a, b = _check_cost(cost, a, b)
    n, m = c.shape
    sparse = _scipy()[1]
    rows = sparse.kron(sparse.eye(n), np.ones((1, m)))  # sum_j P_ij = a_i
    cols = sparse.kron(np.ones((1, n)), sparse.eye(m)).tocsr()[:-1]  # sum_i P_ij = b_j, one implied
    result = _solve(c.ravel(), A_eq=sparse.vstack([rows, cols]).tocsr(),
                    b_eq=np.concatenate([a, b[:-1]]), bounds=(0, None))  # fmt: skip
    plan = torch.as_tensor(result.x.reshape(n, m), device=cost.device)
    return TransportResult(float(result.fun), plan=plan)


def transport_dual(
    cost: Tensor, a: Tensor | None = None, b: Tensor | None = None
) -> TransportResult:
    r"""The dual Kantorovich LP: the best potentials under the cost.

    .. math:: \max_{f, g} \sum_i a_i f_i + \sum_j b_j g_j
       \quad\text{s.t.}\quad f_i + g_j \le C_{ij} ,

    whose optimum equals :func:`transport_primal`'s (strong LP duality).

    Arguments:
        cost: the cost matrix :math:`C` ``(n, m)``.
        a, b: non-negative weights ``(n,)`` and ``(m,)``, normalised to sum 1 (default uniform).

    Returns:
        A :class:`TransportResult` with ``cost``, ``f`` and ``g``.

    Example:
        >>> cost = torch.tensor([[0.0, 2.0], [1.0, 3.0]])
        >>> round(transport_dual(cost).cost, 6), round(transport_primal(cost).cost, 6)
        (1.5, 1.5)
    """
    c, a, b = _check_cost(cost, a, b)
    n, m = c.shape
    sparse = _scipy()[1]
    pair = sparse.hstack([sparse.kron(sparse.eye(n), np.ones((m, 1))),
                          sparse.kron(np.ones((n, 1)), sparse.eye(m))]).tocsr()  # fmt: skip
    result = _solve(-np.concatenate([a, b]), A_ub=pair, b_ub=c.ravel(), bounds=(None, None))
    potentials = torch.as_tensor(result.x, device=cost.device)
    return TransportResult(-float(result.fun), f=potentials[:n], g=potentials[n:])


def transport_assignment(cost: Tensor) -> TransportResult:
    r"""The Kantorovich LP between two uniform sets of :math:`n` points each, as an assignment.

    With :math:`a = b = \mathbf 1 / n` the transport polytope is the Birkhoff polytope scaled by
    :math:`1/n`, whose vertices are the permutation matrices, and an LP attains its optimum at
    a vertex:

    .. math:: \min_{P \in \Pi(\mathbf 1/n, \mathbf 1/n)} \sum_{ij} C_{ij} P_{ij}
       = \min_{\sigma \in S_n} \frac1n \sum_i C_{i\sigma(i)},

    solved exactly by the Hungarian-type algorithm of ``scipy.optimize.linear_sum_assignment``
    (:math:`O(n^3)`: milliseconds for hundreds of points, seconds for a few thousand).

    Arguments:
        cost: the square cost matrix :math:`C` ``(n, n)``.

    Returns:
        A :class:`TransportResult` with ``cost`` and ``plan`` (a permutation matrix over
        :math:`n`, float64, on ``cost``'s device).

    Example:
        >>> cost = torch.tensor([[4.0, 1.0], [2.0, 8.0]])
        >>> transport_assignment(cost).cost, transport_primal(cost).cost
        (1.5, 1.5)
    """
    c = _check_cost(cost, None, None)[0]
    if c.shape[0] != c.shape[1]:
        raise ValueError(f"cost: expected a square (n, n) matrix, got shape {c.shape}")
    n = len(c)
    rows, cols = _scipy()[2](c)
    plan = torch.zeros(n, n, dtype=torch.float64)
    plan[rows, cols] = 1.0 / n
    return TransportResult(float(c[rows, cols].sum() / n), plan=plan.to(cost.device))


def lipschitz_dual(
    x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None
) -> TransportResult:
    r"""The Kantorovich-Rubinstein LP: :math:`W_1` as the best 1-Lipschitz critic.

    With :math:`z = (x_1, \dots, x_n, y_1, \dots, y_m)` and :math:`w = (a, -b)`,

    .. math:: W_1 = \max_{f \in \mathbb R^{n+m}} \sum_k w_k f_k
       \quad\text{s.t.}\quad f_k - f_l \le \|z_k - z_l\|_2 ,\ f_1 = 0

    (:math:`f` is defined up to a constant). Its optimum is the best critic's values on the data.

    Arguments:
        x, y: points ``(n, d)`` and ``(m, d)``.
        a, b: non-negative weights ``(n,)`` and ``(m,)``, normalised to sum 1 (default uniform).

    Returns:
        A :class:`TransportResult` with ``cost`` :math:`= W_1`, ``f`` (values on ``x``) and
        ``g`` (minus the values on ``y``, as in the Kantorovich dual).

    Example:
        >>> round(lipschitz_dual(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]])).cost, 6)
        5.0
    """
    x, y = _points("x", x), _points("y", y)
    _check_same_dimension(x, y)
    w = torch.cat([_weights("a", a, len(x), x), -_weights("b", b, len(y), y)]).cpu().numpy()
    z = torch.cat([x, y]).detach().double().cpu()
    k = len(z)
    distance = torch.cdist(z, z).numpy()
    first, second = np.nonzero(~np.eye(k, dtype=bool))  # every ordered pair k != l
    rows = np.repeat(np.arange(len(first)), 2)
    entries = np.tile([1.0, -1.0], len(first))
    difference = _scipy()[1].csr_array((entries, (rows, np.stack([first, second], 1).ravel())),
                                       shape=(len(first), k))  # fmt: skip
    bounds = [(0, 0)] + [(None, None)] * (k - 1)
    result = _solve(-w, A_ub=difference, b_ub=distance[first, second], bounds=bounds)
    f = torch.as_tensor(result.x, device=x.device)
    return TransportResult(-float(result.fun), f=f[: len(x)], g=-f[len(x) :])


def _check_same_dimension(x: Tensor, y: Tensor) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x, y: expected points of one dimension, got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def wasserstein_1d(
    x: Tensor, y: Tensor, p: float = 1, a: Tensor | None = None, b: Tensor | None = None
) -> float:
    r""":math:`W_p` between weighted point sets on the line, in closed form.

    .. math:: W_1 = \int_{\mathbb R} |F(t) - G(t)|\,dt, \qquad
       W_p^p = \int_0^1 |F^{-1}(u) - G^{-1}(u)|^p\,du

    with :math:`F, G` the distribution functions (step functions; the integrals are finite
    sums after sorting, :math:`O((n + m) \log(n + m))`).

    Arguments:
        x, y: points ``(n,)`` or ``(n, 1)``, and ``(m,)`` or ``(m, 1)``.
        p: the exponent :math:`p \ge 1`.
        a, b: non-negative weights, normalised to sum 1 (default uniform).

    Example:
        >>> wasserstein_1d(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0]))
        2.0
    """
    x, y, p = _points("x", x), _points("y", y), _check_p(p)
    if x.shape[1] != 1 or y.shape[1] != 1:
        raise ValueError(
            f"x, y: expected points on the line, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    a, b = _weights("a", a, len(x), x), _weights("b", b, len(y), y)
    x, y = x[:, 0].double(), y[:, 0].double().to(x.device)
    if p == 1:
        return _cdf_gap(x, a, y, b.to(x.device))
    return _quantile_gap(x, a, y, b.to(x.device), p) ** (1 / p)


def _cdf_gap(x: Tensor, a: Tensor, y: Tensor, b: Tensor) -> float:
    r""":math:`\int |F - G|`: both step functions evaluated on the merged, sorted support."""
    t, order = torch.cat([x, y]).sort()
    step = torch.cat([a, -b])[order].cumsum(0)  # F - G right after each point
    return (step[:-1].abs() * t.diff()).sum().item()


def _quantile_gap(x: Tensor, a: Tensor, y: Tensor, b: Tensor, p: float) -> float:
    r""":math:`\int_0^1 |F^{-1} - G^{-1}|^p`: constant on the intervals between the levels
    where either quantile function jumps."""
    x, ix = x.sort()
    y, iy = y.sort()
    ca, cb = a[ix].cumsum(0), b[iy].cumsum(0)
    levels = torch.cat([ca, cb]).sort().values.clamp(max=1.0)
    width = levels.diff(prepend=levels.new_zeros(1))
    qx = x[torch.searchsorted(ca, levels, right=False).clamp(max=len(x) - 1)]
    qy = y[torch.searchsorted(cb, levels, right=False).clamp(max=len(y) - 1)]
    return (width * (qx - qy).abs() ** p).sum().item()


def wasserstein_exact(
    x: Tensor,
    y: Tensor,
    p: float = 1,
    *,
    a: Tensor | None = None,
    b: Tensor | None = None,
    method: str = "auto",
) -> float:
    r"""The exact :math:`W_p` between two weighted point sets (Euclidean ground distance).

    .. math:: W_p(\mu, \nu) = \Bigl(\min_{P \in \Pi(a, b)} \sum_{ij} \|x_i - y_j\|_2^p
       P_{ij}\Bigr)^{1/p}

    ``method`` picks how: ``"primal"`` (:func:`transport_primal`), ``"dual"``
    (:func:`transport_dual`), ``"lipschitz"`` (:func:`lipschitz_dual`, :math:`p = 1` only),
    ``"assignment"`` (:func:`transport_assignment`: unweighted sets of equal size), ``"1d"``
    (:func:`wasserstein_1d`, points on the line) or ``"auto"`` (the closed form on the line,
    else the assignment when it applies, else the primal LP). All give the same number up to
    the LP solver's tolerance (about 1e-9). These are distances between the *given* point
    sets: as estimates of the distance between the laws the points were drawn from they are
    biased upwards, by a term that decays like :math:`n^{-1/d}` in dimension :math:`d > 2`
    (slowly: see ``benchmarks/wasserstein.py``).

    Arguments:
        x, y: points ``(n, d)`` and ``(m, d)`` (or vectors: points on the line).
        p: the exponent :math:`p \ge 1`.
        a, b: non-negative weights ``(n,)`` and ``(m,)``, normalised to sum 1 (default uniform).
        method: ``"auto"``, ``"primal"``, ``"dual"``, ``"lipschitz"``, ``"assignment"`` or
            ``"1d"``.

    References:
        | Optimal Transport: Old and New (C. Villani, 2009), https://doi.org/10.1007/978-3-540-71050-9
        | Computational Optimal Transport (Peyre & Cuturi, 2019), https://arxiv.org/abs/1803.00567

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        >>> y = x + torch.tensor([0.0, 2.0])
        >>> methods = ("primal", "dual", "lipschitz", "assignment")
        >>> [round(wasserstein_exact(x, y, method=m), 6) for m in methods]
        [2.0, 2.0, 2.0, 2.0]
    """
    x, y, p = _points("x", x), _points("y", y), _check_p(p)
    _check_same_dimension(x, y)
    method = check_choice("method", method, METHODS)
    uniform = a is None and b is None and len(x) == len(y)
    if method == "auto":
        method = "1d" if x.shape[1] == 1 else "assignment" if uniform else "primal"
    if method == "assignment" and not uniform:
        raise ValueError(
            f"method: 'assignment' needs unweighted sets of equal size (a = b = None), got "
            f"{len(x)} and {len(y)} points{'' if a is None and b is None else ' with weights'}"
        )
    if method == "1d":
        return wasserstein_1d(x, y, p, a, b)
    if method == "lipschitz":
        if p != 1:
            raise ValueError(f"method: 'lipschitz' computes W_1, got p={p}")
        return lipschitz_dual(x, y, a, b).cost
    cost = torch.cdist(x.double(), y.double().to(x.device)) ** p
    if method == "assignment":
        return max(transport_assignment(cost).cost, 0.0) ** (1 / p)
    solve = transport_primal if method == "primal" else transport_dual
    return max(solve(cost, a, b).cost, 0.0) ** (1 / p)
