"""Output layers and their costs: the scalar loop and its vectorised twin, side by side.

The output layer fixes the cost (one example, summed over the output units):

=============  =================  ============================================
``output``     A[L]               cost per example
=============  =================  ============================================
``sigmoid``    σ(Z[L])            binary cross-entropy  −Y log A − (1−Y) log(1−A)
``softmax``    softmax(Z[L])      categorical cross-entropy  −Σ Y log A
``identity``   Z[L]               ½ Σ (A − Y)²
``exp``        e^Z[L]             half Poisson deviance  Σ Y log(Y/A) − Y + A  (Y ≥ 0)
=============  =================  ============================================

Each pair is matched so that ∂J/∂Z[L] = A[L] − Y (per example) for all four.
Costs are computed from the logit Z[L], never from A[L], so they stay finite for
logits of any size:

* BCE:      max(z, 0) − y z + log1p(e^(−|z|))
* softmax:  Σ_k y_k (logsumexp(z) − z_k), logsumexp with the max subtracted
* Poisson:  e^z − y z + (y log y − y), with 0 log 0 = 0 (scikit-learn's ``poisson_loss``,
  constant term included); finite while e^z is (z below about 709 in float64, 88 in float32)

**One home per formula**, as in :mod:`fastbp.activations`: the exact scalar forms
(:func:`output_activation`, :func:`example_cost`: the plain kernels), the loop forms
(:func:`output_loop`, :func:`cost_loop`, :func:`flush_costs`: the fast kernels, with
:mod:`fastbp.vmath`'s vectorisable exp and σ; σ's and softmax's exponentials and log1p in the
network's dtype, every sum in float64), the NumPy forms
(:func:`output_activation_array`, :func:`example_costs_array`: the reference).  Every
if-chain names each ``OUT_*`` code and ends in a failing path, never an implicit identity.
"""

from __future__ import annotations

import numpy as np

from ._jit import checked_from_python, jit, jit_exact, jit_inline, jit_inner
from .activations import sigmoid, sigmoid_array
from .vmath import vexp, vlog1p_unit, vsigmoid

OUT_SIGMOID, OUT_SOFTMAX, OUT_IDENTITY, OUT_EXP = range(4)

NAMES: dict[str, int] = {
    "sigmoid": OUT_SIGMOID,
    "logistic": OUT_SIGMOID,  # scikit-learn's name
    "softmax": OUT_SOFTMAX,
    "identity": OUT_IDENTITY,
    "exp": OUT_EXP,  # scikit-learn's out_activation_ for MLPRegressor(loss="poisson")
}


def get_output(output: str) -> int:
    """The integer code of an output layer name; ``ValueError`` if unknown."""
    if not isinstance(output, str):
        raise TypeError(f"output must be a string such as 'sigmoid', got {type(output).__name__}")
    key = output.lower()
    if key not in NAMES:
        raise ValueError(f"output must be one of {sorted(set(NAMES) - {'logistic'})}; got {output!r}")
    return NAMES[key]


# --------------------------------------------------------------------------- scalar


def _vector(value, name: str) -> np.ndarray:
    """``value`` if it is a 1-D NumPy array (what the per-example building blocks take), else TypeError."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a 1-D NumPy array, got {type(value).__name__}")
    if value.ndim != 1:
        raise TypeError(f"{name} must be a 1-D NumPy array, got a {value.ndim}-D one")
    return value


def _check_example(z, other, other_name: str) -> None:
    """A per-example call from Python: z and ``other`` (a or y) 1-D arrays of one length ≥ 1."""
    z, other = _vector(z, "z"), _vector(other, other_name)
    if z.shape[0] == 0:
        raise ValueError("z must hold at least one logit")
    if other.shape[0] != z.shape[0]:
        raise ValueError(f"{other_name} must have z's length {z.shape[0]}, got {other.shape[0]}")


def _check_output_activation(z, a, out):
    _check_example(z, a, "a")


def _check_example_cost(z, y, out):
    _check_example(z, y, "y")


def _check_batch_weight(sw, order, start, stop):
    sw, order = _vector(sw, "sw"), _vector(order, "order")
    if not 0 <= int(start) <= int(stop) <= order.shape[0]:
        raise ValueError(f"start, stop must satisfy 0 <= start <= stop <= len(order) = {order.shape[0]}")
    if sw.shape[0] and stop > start:
        picked = order[int(start) : int(stop)]
        if picked.min() < 0 or picked.max() >= sw.shape[0]:
            raise ValueError(f"order[start:stop] must index sw (length {sw.shape[0]})")


@checked_from_python(_check_output_activation)
@jit
def output_activation(z, a, out):
    """A[L] = σ(Z[L]), softmax(Z[L]), Z[L] or e^Z[L] for one example (vectors z → a)."""
    n = z.shape[0]
    if out == OUT_SIGMOID:
        for j in range(n):
            a[j] = sigmoid(z[j])
    elif out == OUT_SOFTMAX:
        zmax = z[0]
        for j in range(1, n):
            if z[j] > zmax:
                zmax = z[j]
        for j in range(n):
            a[j] = np.exp(z[j] - zmax)  # every exponent ≤ 0: no overflow
        # The sum in a loop of its own, which only reads: a loop that also stored into a
        # would be vectorised behind a run-time check that a and z are far apart in
        # memory, and the (reassociated) sum would then depend on where they were.
        total = z[0] - z[0]  # zero of z's dtype
        for j in range(n):
            total += a[j]
        for j in range(n):
            a[j] /= total
    elif out == OUT_IDENTITY:
        for j in range(n):
            a[j] = z[j]
    elif out == OUT_EXP:
        for j in range(n):
            a[j] = np.exp(z[j])
    else:
        raise ValueError("output_activation: unknown output code")


@checked_from_python(_check_example_cost)
@jit
def example_cost(z, y, out):
    """The cost of one example from its logits z = Z[L] and target y (returns float64)."""
    n = z.shape[0]
    cost = 0.0
    if out == OUT_SIGMOID:
        for j in range(n):
            zj = np.float64(z[j])
            # −y log σ(z) − (1−y) log(1−σ(z)) = max(z,0) − y z + log1p(e^(−|z|))
            cost += max(zj, 0.0) - np.float64(y[j]) * zj + np.log1p(np.exp(-abs(zj)))
    elif out == OUT_SOFTMAX:
        zmax = np.float64(z[0])
        for j in range(1, n):
            if z[j] > zmax:
                zmax = np.float64(z[j])
        total = 0.0
        for j in range(n):
            total += np.exp(np.float64(z[j]) - zmax)
        lse = zmax + np.log(total)
        for j in range(n):
            # −Σ y log softmax(z) = Σ y (logsumexp(z) − z)
            cost += np.float64(y[j]) * (lse - np.float64(z[j]))
    elif out == OUT_IDENTITY:
        for j in range(n):
            d = np.float64(z[j]) - np.float64(y[j])
            cost += 0.5 * d * d
    elif out == OUT_EXP:
        for j in range(n):
            zj = np.float64(z[j])
            yj = np.float64(y[j])
            # y log(y / e^z) − y + e^z = e^z − y z + (y log y − y), 0 log 0 = 0
            cost += np.exp(zj) - yj * zj + (yj * np.log(yj) - yj if yj > 0.0 else 0.0)
    else:
        raise ValueError("example_cost: unknown output code")
    return cost


@checked_from_python(_check_batch_weight)
@jit
def batch_weight(sw, order, start, stop):
    """The divisor of a batch's mean over the examples ``order[start:stop]`` (float64): n = stop − start,
    or with per-example weights ``sw`` (indexed like X's rows; empty: unweighted) Σ_batch w_i,
    scikit-learn's ``sw_sum``.  A weighted mean is then Σ_batch w_i c_i / Σ_batch w_i."""
    if sw.shape[0] == 0:
        return np.float64(stop - start)
    total = 0.0
    for t in range(start, stop):
        total += np.float64(sw[order[t]])
    return total


# ----------------------------------------------------------------------------- loop


@jit_inner
def output_loop(z, a, out):
    """A[L] from Z[L]: σ, softmax, identity or e^z (vectorised)."""
    n = z.shape[0]
    T = z.dtype.type
    if out == OUT_SIGMOID:
        for j in range(n):
            a[j] = vsigmoid(z[j])
    elif out == OUT_SOFTMAX:
        zmax = z[0]
        for j in range(1, n):
            zmax = z[j] if z[j] > zmax else zmax
        total = T(0)
        for j in range(n):
            e = vexp(z[j] - zmax)
            a[j] = e
            total += e
        inv = T(1) / total
        for j in range(n):
            a[j] *= inv
    elif out == OUT_IDENTITY:
        for j in range(n):
            a[j] = z[j]
    elif out == OUT_EXP:
        for j in range(n):
            a[j] = vexp(z[j])
    else:
        raise ValueError("output_loop: unknown output code")


@jit_inline
def _softplus_tail(z):
    """log1p(e^(−|z|)) ∈ (0, ln 2] as float64, computed in z's own dtype: a float32 network's costs
    take float32's exp and log1p (1/3 the time of float64's, and this term's rounding, under
    1e-7 absolute, is far below what a float32 network's logits carry); float64 as before."""
    return np.float64(vlog1p_unit(vexp(-abs(z))))


@jit_inner
def cost_loop(z, y, out):
    """One example's cost from its logits, as float64 (the formulas of example_cost; for σ and
    softmax e^x and log1p in the logits' dtype, :func:`_softplus_tail`, the sums in float64).  For
    the elementwise outputs (σ, identity, e^z) the cost is a sum over the values, so several
    examples' logits and targets laid end to end give the sum of their costs
    (:mod:`fastbp._fast.rows` passes a block's at once)."""
    n = z.shape[0]
    cost = 0.0
    if out == OUT_SIGMOID:
        for j in range(n):
            zj = np.float64(z[j])
            cost += (zj if zj > 0.0 else 0.0) - np.float64(y[j]) * zj + _softplus_tail(z[j])
    elif out == OUT_SOFTMAX:
        T = z.dtype.type
        zmax = np.float64(z[0])
        for j in range(1, n):
            zj = np.float64(z[j])
            zmax = zj if zj > zmax else zmax
        total = 0.0
        for j in range(n):  # e^(z − max) in z's dtype (as _softplus_tail), summed in float64
            total += np.float64(vexp(z[j] - T(zmax)))
        lse = zmax + np.log(total)
        for j in range(n):
            cost += np.float64(y[j]) * (lse - np.float64(z[j]))
    elif out == OUT_IDENTITY:
        for j in range(n):
            d = np.float64(z[j]) - np.float64(y[j])
            cost += 0.5 * d * d
    elif out == OUT_EXP:
        cost = _poisson_cost_sum(z, y)
    else:
        raise ValueError("cost_loop: unknown output code")
    return cost


@jit_inner
def _exp_float64(x):
    """e^x of a float64 by :func:`fastbp.vmath.vexp`, for :func:`_poisson_cost_sum`.  A function of
    its own, compiled with the kernels' options: Numba compiles an ``@overload`` once per set of
    its callers' options, and called from the exact loop below vexp's float64 body compiled a
    second time, 0.2 s of a first ``fastbp train`` (its Poisson branch is compiled though never
    taken).  The body's own options are fixed (:data:`fastbp._jit.OVERLOAD_OPTIONS`), so the
    bits are the same either way."""
    return vexp(x)


@jit_exact
def _poisson_cost_sum(z, y):
    """Σ_j e^z_j − y_j z_j + (y_j log y_j − y_j), in float64, in order: the loop calls log, so it
    never vectorises, and with fastmath's reassoc LLVM split the sum into interleaved partial
    sums or not depending on the function it was optimised into (a kernel compiled in this
    process against the same kernel loaded from the cache: 1 ulp apart on a Poisson epoch's cost,
    tests/test_reproducibility.py).  Without fastmath every copy adds in the order written."""
    cost = 0.0
    for j in range(z.shape[0]):
        zj = np.float64(z[j])
        yj = np.float64(y[j])
        cost += _exp_float64(zj) - yj * zj + (yj * np.log(yj) - yj if yj > 0.0 else 0.0)
    return cost


@jit_inner
def defer_cost(zL, y, Zc, Yc, cnt):
    """Queue one example's logits and targets for :func:`flush_costs`."""
    n = zL.shape[0]
    o = cnt[0] * n
    for j in range(n):
        Zc[o + j] = zL[j]
        Yc[o + j] = y[j]
    cnt[0] += 1


@jit_inner
def flush_costs(Zc, Yc, cnt, n_L, out):
    """Σ of the queued examples' costs (float64, the formulas of :func:`cost_loop`); empties the queue."""
    n = cnt[0] * n_L
    cnt[0] = 0
    total = 0.0
    if out == OUT_SIGMOID:
        for k in range(n):
            zk = np.float64(Zc[k])
            total += (zk if zk > 0.0 else 0.0) - np.float64(Yc[k]) * zk + _softplus_tail(Zc[k])
    elif out == OUT_SOFTMAX:
        for e in range(0, n, n_L):
            total += cost_loop(Zc[e : e + n_L], Yc[e : e + n_L], out)
    elif out == OUT_IDENTITY:
        for k in range(n):
            d = np.float64(Zc[k]) - np.float64(Yc[k])
            total += 0.5 * d * d
    elif out == OUT_EXP:  # a sum over elements, like identity's: cost_loop over the whole queue at once
        total += cost_loop(Zc[:n], Yc[:n], out)
    else:
        raise ValueError("flush_costs: unknown output code")
    return total


# ------------------------------------------------------------------------ vectorised


def output_activation_array(Z: np.ndarray, out: int) -> np.ndarray:
    """A[L] for a batch of logits Z[L] (m × n_L)."""
    if out == OUT_SIGMOID:
        return sigmoid_array(Z)
    if out == OUT_SOFTMAX:
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)
    if out == OUT_IDENTITY:
        return Z.copy()
    if out == OUT_EXP:
        return np.exp(Z)
    raise ValueError(f"output_activation_array: unknown output code {out!r}")


def example_costs_array(Z: np.ndarray, Y: np.ndarray, out: int) -> np.ndarray:
    """The cost of each example (a float64 vector of length m) from logits Z[L] and targets Y."""
    Z = Z.astype(np.float64)
    Y = Y.astype(np.float64)
    if out == OUT_SIGMOID:
        return (np.maximum(Z, 0) - Y * Z + np.log1p(np.exp(-np.abs(Z)))).sum(axis=1)
    if out == OUT_SOFTMAX:
        zmax = Z.max(axis=1, keepdims=True)
        lse = zmax + np.log(np.exp(Z - zmax).sum(axis=1, keepdims=True))
        return (Y * (lse - Z)).sum(axis=1)
    if out == OUT_IDENTITY:
        return 0.5 * ((Z - Y) ** 2).sum(axis=1)
    if out == OUT_EXP:
        ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
        return (np.exp(Z) - Y * Z + ylogy - Y).sum(axis=1)
    raise ValueError(f"example_costs_array: unknown output code {out!r}")
