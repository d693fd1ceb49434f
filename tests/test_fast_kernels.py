"""The fast training kernels (fastbp._fast, through fastbp._dispatch.run_epoch) against the plain
kernel and the NumPy reference.  The registry-driven agreement tests are in test_dispatch.py."""

from __future__ import annotations

import numpy as np
import pytest

from fastbp import _dispatch, kernels, reference
from fastbp._dispatch import run_epoch
from fastbp._plain import BUILTIN
from fastbp.activations import NAMES as ACT_CODES
from fastbp.activations import get_activation
from fastbp.errors import DivergenceError
from fastbp.losses import NAMES as OUT_CODES
from fastbp.params import Layout
from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS, assert_agree, make_problem

# depth 1-4, widths incl. 1; [9, 130, 2] and [33, 37, 1] are large enough for the blocked
# per-example kernel (_dispatch.BLOCKED_MIN_WEIGHTS), with an odd number of rows of W[1];
# one hidden layer of ≤ TINY_MAX_HIDDEN units runs the tiny kernels (≤ 4 units and one output: [1, 1, 1],
# [2, 4, 1], [5, 3, 1], [40, 3, 1]; else [2, 4, 2], [6, 9, 3], [3, 16, 2]; lanes padded), [2, 17, 1] outside
SIZES = [
    [3, 1],
    [1, 1, 1],
    [2, 4, 1],
    [5, 3, 1],
    [40, 3, 1],
    [2, 4, 2],
    [6, 9, 3],
    [3, 16, 2],
    [2, 17, 1],
    [5, 7, 3, 2],
    [4, 1, 6, 1, 3],
    [9, 130, 2],
    [33, 37, 1],
]
DTYPES = [np.float32, np.float64]
M = 11  # not a multiple of any batch size below, nor of _dispatch.BLOCK


_ACT = {code: get_activation(name) for name, code in ACT_CODES.items()}


def fast_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, threads=None, epoch=None):
    """One epoch as ``MLP.fit`` runs it (the dispatcher's fast kernel, or a forced one), by codes."""
    return run_epoch(params, sizes, X, Y, order, batch_size, lr, _ACT[act], out, threads=threads, epoch=epoch)


def plain_epoch(params, sizes, X, Y, order, batch_size, lr, act, out):
    """The plain kernel's epoch, unweighted (its ``sw``, last, empty)."""
    return BUILTIN._train_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, np.empty(0, params.dtype))


def _flat(prob):
    lay = Layout([prob.X.shape[1]] + [w.shape[0] for w in prob.weights])
    return lay, lay.pack(prob.weights, prob.biases, prob.X.dtype)


def _run(kernel, prob, params, lay, bs, order=None):
    """One epoch of ``kernel`` over ``order`` (default: the problem's own) from ``params`` (updated)."""
    order = np.asarray(prob.order if order is None else order, dtype=np.int64)
    lr = prob.X.dtype.type(prob.learning_rate)
    return kernel(params, lay.sizes, prob.X, prob.Y, order, bs, lr, ACT_CODES[prob.activation], OUT_CODES[prob.output])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("batch_size", [1, 4, M])
@pytest.mark.parametrize("m", [M, 1])
def test_epoch_agrees_with_plain_and_reference(sizes, dtype, batch_size, m):
    for act in HIDDEN_ACTIVATIONS:
        for out in OUTPUTS:
            # wide nets with lr 0.1 blow up (identity output: |W| ~ 1e8), where no two
            # summation orders agree to float32's tolerance; 0.01 keeps them well-conditioned
            lr = 0.1 if max(sizes) <= 10 else 0.01
            if m == 1 and batch_size != 1:
                continue
            prob = make_problem(
                sizes, dtype=dtype, activation=act, output=out, m=m, batch_size=batch_size, seed=3, learning_rate=lr
            )
            lay, p0 = _flat(prob)
            p_fast, p_plain = p0.copy(), p0.copy()
            J_fast, f_fast = _run(fast_epoch, prob, p_fast, lay, batch_size)
            J_plain, f_plain = _run(plain_epoch, prob, p_plain, lay, batch_size)
            msg = f"{sizes} {np.dtype(dtype)} {act} {out} batch {batch_size}"
            assert f_fast == f_plain == -1, msg
            assert_agree((J_fast, p_fast), (J_plain, p_plain), dtype, msg)
            W, b = prob.copy_params()
            J_ref = reference.train_epoch(*prob.args("train_epoch", W, b))
            assert_agree((J_fast, p_fast), (J_ref, lay.pack(W, b, dtype)), dtype, msg + " vs reference")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_public_train_epoch_runs_the_selected_fast_kernel(dtype, batch_size):
    """kernels.train_epoch (and so MLP.fit, backend="numba") runs the kernel select_epoch names:
    the same bits as that kernel forced, and the reference's result to the tolerance."""
    prob = make_problem([4, 6, 2], dtype=dtype, m=M, batch_size=batch_size)
    lay, p0 = _flat(prob)
    name = _dispatch.select_epoch(lay.sizes, batch_size, OUT_CODES[prob.output], ACT_CODES[prob.activation])
    assert name != _dispatch.PLAIN
    forced = p0.copy()
    J_forced, _ = _run(lambda *a: fast_epoch(*a, epoch=name), prob, forced, lay, batch_size)
    W, b = prob.copy_params()
    J = kernels.train_epoch(*prob.args("train_epoch", W, b))
    assert J == J_forced
    np.testing.assert_array_equal(lay.pack(W, b, dtype), forced)
    W2, b2 = prob.copy_params()
    J2 = reference.train_epoch(*prob.args("train_epoch", W2, b2))
    assert_agree((J, W, b), (J2, W2, b2), dtype)


def test_mlp_fit_numba_agrees_with_numpy():
    from fastbp import MLP

    prob = make_problem([5, 8, 3, 1], dtype=np.float64, m=40)
    nets = [MLP([5, 8, 3, 1], seed=1) for _ in range(2)]
    h = [
        net.fit(prob.X, prob.Y, epochs=3, learning_rate=0.2, batch_size=bs, backend=be)
        for net, (be, bs) in zip(nets, [("numba", 1), ("numpy", 1)])
    ]
    assert_agree(h[0].loss, h[1].loss, np.float64)
    assert_agree(nets[0].weights, nets[1].weights, np.float64)


def test_custom_activation_keeps_plain_kernel():
    from numba import njit

    from fastbp import make_custom

    @njit
    def softsign(z):
        return z / (1 + abs(z))

    @njit
    def softsign_prime(z):
        return 1 / (1 + abs(z)) ** 2

    act = make_custom(softsign, softsign_prime)
    prob = make_problem([3, 4, 1], m=M, activation=act)
    W, b = prob.copy_params()
    J = kernels.train_epoch(*prob.args("train_epoch", W, b))
    W2, b2 = prob.copy_params()
    J2 = reference.train_epoch(*prob.args("train_epoch", W2, b2))
    assert_agree((J, W, b), (J2, W2, b2), np.float64)


# ------------------------------------------------------------------ divergence contract


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("out", OUTPUTS)
@pytest.mark.parametrize("sizes", [[4, 4, 1], [3, 5, 2], [3, 17, 2], [40, 30, 2]])  # tiny4, tiny, per-example, blocked
def test_divergence_at_the_first_step_changes_nothing(dtype, batch_size, out, sizes):
    """A step that overflows at once: batch 0 reported, the parameters untouched."""
    if out == "softmax" and sizes[-1] == 1:
        pytest.skip("softmax over one output is constant: nothing to overflow")
    prob = make_problem(
        sizes,
        dtype=dtype,
        activation="identity",
        output=out,
        m=40,
        batch_size=batch_size,
        learning_rate=1e30 if dtype is np.float32 else 1e300,
    )
    prob.X *= 1e10
    lay, p0 = _flat(prob)
    p_fast, p_plain = p0.copy(), p0.copy()
    assert _run(plain_epoch, prob, p_plain, lay, batch_size)[1] == 0
    assert _run(fast_epoch, prob, p_fast, lay, batch_size) == (0.0, 0)
    np.testing.assert_array_equal(p_fast, p0)
    W, b = prob.copy_params()
    with pytest.raises(DivergenceError):
        kernels.train_epoch(*prob.args("train_epoch", W, b))
    np.testing.assert_array_equal(lay.pack(W, b, dtype), p0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("act", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("sizes", [[3, 4, 1], [3, 5, 2], [3, 17, 2], [40, 30, 2]])  # tiny4, tiny, per-example, blocked
@pytest.mark.parametrize("after", [2, 11], ids=["early", "late"])  # per example: in the first block of 8, or later
def test_divergence_later_stops_at_the_same_step_as_plain(dtype, batch_size, act, sizes, after):
    """Ordinary steps, then one example whose step overflows: the same failing batch as
    the plain kernel, and the parameters (and J so far) from just before it."""
    prob = make_problem(
        sizes, dtype=dtype, activation=act, output="identity", m=40, batch_size=batch_size, learning_rate=0.05
    )
    k = after * batch_size + 1
    bad = prob.order[k]
    prob.X[bad] *= 100
    prob.Y[bad] = np.finfo(dtype).max * 0.9
    lay, p0 = _flat(prob)
    p_fast, p_plain = p0.copy(), p0.copy()
    J_fast, f_fast = _run(fast_epoch, prob, p_fast, lay, batch_size)
    J_plain, f_plain = _run(plain_epoch, prob, p_plain, lay, batch_size)
    assert f_plain >= k // batch_size  # there, or (tanh/σ bound A) the batch after it
    assert f_fast == f_plain
    assert np.isfinite(p_fast).all()
    # the parameters from just before the failing batch: bit for bit the fast kernel's own after
    # the batches before it
    p_before = p0.copy()
    _run(fast_epoch, prob, p_before, lay, batch_size, order=prob.order[: f_fast * batch_size])
    np.testing.assert_array_equal(p_fast, p_before)
    if f_plain == k // batch_size:  # the bad example's own batch failed: ordinary steps before it
        assert_agree((J_fast, p_fast), (J_plain, p_plain), dtype)
    else:
        # tanh or σ bounded A[1], so the bad example's step was applied and the next batch failed.
        # Its |Z[1]| is 100 times the others' and saturates every unit, where g′ = 1 − A² (σ:
        # A(1 − A)) keeps only A's last bits: two correct kernels differ there by more than the
        # dtype's tolerance (tanh float32, 40-30-2, batch 3: W[1] 2.6e-4 apart relative compiled
        # for Zen 4, 5.7e-4 for AVX2 or Intel's AVX-512 targets).  The cost so far still agrees, and
        # so do the two kernels' parameters after the ordinary batches before the bad example's.
        assert_agree(J_fast, J_plain, dtype)
        ordinary = prob.order[: (k // batch_size) * batch_size]
        p_fast_ord, p_plain_ord = p0.copy(), p0.copy()
        _run(fast_epoch, prob, p_fast_ord, lay, batch_size, order=ordinary)
        _run(plain_epoch, prob, p_plain_ord, lay, batch_size, order=ordinary)
        assert_agree(p_fast_ord, p_plain_ord, dtype)
    W, b = prob.copy_params()
    with pytest.raises(DivergenceError) as info:
        kernels.train_epoch(*prob.args("train_epoch", W, b))
    assert info.value.batch == f_plain
    np.testing.assert_array_equal(lay.pack(W, b, dtype), p_fast)  # the public kernel is the fast one


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 2])
@pytest.mark.parametrize("sizes", [[2, 3, 1], [2, 5, 2], [2, 20, 1], [40, 30, 1]])  # tiny4, tiny, per-example, blocked
def test_large_but_finite_parameters_use_the_exact_check(dtype, batch_size, sizes):
    """Parameters near the dtype's limit: the bound cannot prove a step safe, the exact check
    (reference kernel) takes over, and the epoch still matches the plain kernel."""
    prob = make_problem(sizes, dtype=dtype, activation="relu", output="identity", m=9, batch_size=batch_size)
    big = np.finfo(dtype).max / 3
    prob.weights[1][0, 0] = big
    prob.weights[0][:] = -np.abs(prob.weights[0])  # relu units mostly off: steps stay finite
    prob.X[:] = np.abs(prob.X)
    prob.biases[0][:] = -1
    lay, p0 = _flat(prob)
    p_fast, p_plain = p0.copy(), p0.copy()
    res_fast = _run(fast_epoch, prob, p_fast, lay, batch_size)
    res_plain = _run(plain_epoch, prob, p_plain, lay, batch_size)
    assert res_fast[1] == res_plain[1]
    assert_agree((res_fast[0], p_fast), (res_plain[0], p_plain), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_start_fails_first_step(dtype):
    prob = make_problem([2, 3, 1], dtype=dtype, m=5)
    lay, p0 = _flat(prob)
    p0[0] = np.nan
    p = p0.copy()
    J, failed = _run(fast_epoch, prob, p, lay, 1)
    assert failed == 0 and J == 0.0
    np.testing.assert_array_equal(p, p0)


# ---------------------------------------------------------------- saturated units, huge terms


def _one_case(sizes, dtype, W, b):
    lay = Layout(sizes)
    return lay, lay.pack([np.asarray(w, dtype) for w in W], [np.asarray(v, dtype) for v in b], np.dtype(dtype))


def _saturated_tanh(n1, z1):  # Z[1] = z1 on a raw-scale input: float32 tanh within a few ulp of 1
    X = np.zeros((8, 2), np.float32)
    X[:, 0] = 1e4
    W1 = np.zeros((n1, 2))
    W1[:, 0] = z1 * 1e-4
    return [2, n1, 1], "tanh", "identity", [W1, np.full((1, n1), 0.5)], [np.zeros(n1), np.zeros(1)], X


def _saturated_sigmoid_output():  # Z[2] = −17 on a raw-scale input: σ ≈ 4e-8, not 0
    X = np.zeros((8, 2), np.float32)
    X[:, 0] = 1e4
    W1 = np.zeros((4, 2))
    W1[:, 0] = 1e-4
    return [2, 4, 1], "identity", "sigmoid", [W1, np.ones((1, 4))], [np.zeros(4), np.full(1, -21.0)], X


SATURATED = {
    "tanh 2-5-1 at 8.5": _saturated_tanh(5, 8.5),
    "tanh 2-4-1 at 8.5": _saturated_tanh(4, 8.5),
    "tanh 2-5-1 at 6.5": _saturated_tanh(5, 6.5),
    "tanh 2-4-1 at 6.5": _saturated_tanh(4, 6.5),
    "sigmoid output 2-4-1": _saturated_sigmoid_output(),
}


@pytest.mark.parametrize("batch_size", [1, 4], ids=["per-example", "batch 4"])
@pytest.mark.parametrize("case", SATURATED, ids=str)
def test_saturated_units_on_raw_inputs_agree_with_plain(case, batch_size):
    """Units a hair from saturation times raw-scale inputs (1e4): the dispatcher's kernel (the tiny
    per-example and batch kernels) moves W[1] as the plain kernel does (float32's rational tanh and
    ½ tanh(x/2) + ½ were off there by up to 11x in g′)."""
    sizes, act, out, W, b, X = SATURATED[case]
    bs = batch_size
    lay, p0 = _one_case(sizes, np.float32, W, b)
    Y = np.zeros((X.shape[0], 1), np.float32)
    order = np.arange(X.shape[0], dtype=np.int64)
    p_fast, p_plain = p0.copy(), p0.copy()
    res = fast_epoch(p_fast, lay.sizes, X, Y, order, bs, np.float32(0.1), ACT_CODES[act], OUT_CODES[out])
    ref = plain_epoch(p_plain, lay.sizes, X, Y, order, bs, np.float32(0.1), ACT_CODES[act], OUT_CODES[out])
    assert res[1] == ref[1] == -1
    assert_agree((res[0], p_fast), (ref[0], p_plain), np.float32, case)


#: A unit with g′ = 0 (saturated tanh or σ, switched-off relu) and a target so large that
#: W[2]ᵀ dZ[2] overflows: the plain kernel's dZ[1] = inf · 0 = NaN, and it refuses the batch.
OVERFLOW_TIMES_ZERO = [
    (np.float32, "tanh", 100.0, 1e38),
    (np.float32, "sigmoid", 100.0, 1e38),
    (np.float32, "relu", -1.0, 1e38),
    (np.float64, "tanh", 100.0, 1e307),
    (np.float64, "sigmoid", 100.0, 1e307),
    (np.float64, "relu", -1.0, 1e307),
]
GRADIENT_DESCENT_BATCH_KERNELS = [
    "_tiny4_batch_epoch",
    "_tiny_batch_epoch",
    "_deferred_tiles_epoch",
    "_columns_epoch",
    "_batch_epoch",
]


@pytest.mark.parametrize("kernel", GRADIENT_DESCENT_BATCH_KERNELS)
@pytest.mark.parametrize("dtype, act, w1, y", OVERFLOW_TIMES_ZERO, ids=lambda v: getattr(v, "__name__", str(v)))
def test_an_overflow_times_a_zero_slope_fails_the_batch_as_plain(kernel, dtype, act, w1, y):
    lay, p0 = _one_case([1, 1, 1], dtype, [[[w1]], [[10.0]]], [[0.0], [0.0]])
    X = np.ones((2, 1), dtype)
    Y = np.array([[y], [0.0]], dtype)
    order = np.arange(2, dtype=np.int64)
    lr = dtype(0.1)
    p_fast, p_plain = p0.copy(), p0.copy()
    res = fast_epoch(p_fast, lay.sizes, X, Y, order, 2, lr, ACT_CODES[act], OUT_CODES["identity"], epoch=kernel)
    ref = plain_epoch(p_plain, lay.sizes, X, Y, order, 2, lr, ACT_CODES[act], OUT_CODES["identity"])
    assert res[1] == ref[1] == 0
    np.testing.assert_array_equal(p_fast, p0)


@pytest.mark.parametrize(
    "batch_size, gram",
    [(1, True), (8, False)],
    ids=["per-example (blocked)", "batch 8 (deferred)"],
)
def test_inputs_too_large_for_a_gram_term_run_a_kernel_without_one(batch_size, gram):
    """float32 inputs of 1e19: x_sᵀx_t overflows where the plain kernel's W[1] x does not; the
    dispatcher runs the row without Gram terms (and agrees with the plain kernel).  The deferred
    kernel on the register tiles forms no Gram terms: it runs, and agrees."""
    n0 = 8192  # W[1] of 16,384 weights: the blocked per-example and the deferred batch kernels
    W1 = np.zeros((2, n0))
    W1[:, 0] = 1e-19
    W1[:, 1] = -1e-10
    lay, p0 = _one_case([n0, 2, 1], np.float32, [W1, np.full((1, 2), 1e-30)], [np.zeros(2), np.zeros(1)])
    X = np.zeros((16, n0), np.float32)
    X[4, 0] = 1e19
    X[8, 0], X[8, 1] = 4e19, 1e18
    Y = np.full((16, 1), 0.5, np.float32)
    order = np.arange(16, dtype=np.int64)
    selected = _dispatch.select_epoch(lay.sizes, batch_size, OUT_CODES["identity"], ACT_CODES["tanh"])
    assert (selected in _dispatch._GRAM_ROWS) == gram
    p_fast, p_plain = p0.copy(), p0.copy()
    args = (order, batch_size, np.float32(0.1), ACT_CODES["tanh"], OUT_CODES["identity"])
    res = fast_epoch(p_fast, lay.sizes, X, Y, *args)
    ref = plain_epoch(p_plain, lay.sizes, X, Y, *args)
    assert res[1] == ref[1]
    assert_agree((res[0], p_fast), (ref[0], p_plain), np.float32)


# ------------------------------------------------------------------------------ memory


@pytest.mark.parametrize(
    "batch_size, kernel",
    [(1, None), (8, None), (8, "_deferred_tiles_epoch"), (8, "_columns_epoch_split")],
)
def test_no_allocation_per_example_or_batch(batch_size, kernel):
    """Numba's allocation count of an epoch does not grow with m (every mini-batch kernel).

    In float64: the count does not depend on the dtype, and the split case runs the threaded twin
    (``_columns_epoch_threads``), which ``tests/test_dispatch.py`` compiles in float64; in float32
    this test alone compiled a second one, 28 s of a cold CI run (docs/performance-kernels.md,
    "The threaded twins' compile")."""
    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    counts = []
    for m in (16, 800):
        prob = make_problem([6, 5, 3], dtype=np.float64, m=m, batch_size=batch_size)
        lay, p0 = _flat(prob)
        order = np.asarray(prob.order, dtype=np.int64)
        args = (lay.sizes, prob.X, prob.Y, order, batch_size, np.float64(prob.learning_rate), 1, 1)
        fast_epoch(p0.copy(), *args, epoch=kernel)  # compiled
        before = rtsys.get_allocation_stats().alloc
        fast_epoch(p0.copy(), *args, epoch=kernel)
        counts.append(rtsys.get_allocation_stats().alloc - before)
    # a fixed handful: the workspaces, and one each for the array arguments adapted from Python
    # (the empty weights array, sw, is one of them: 19 before it, 20 with it; the column
    # kernels' second workspace for a split batch, 9 arrays, empty when a batch runs whole: 26;
    # and the split step's partial sums, PARTS × 2L: 27)
    assert counts[0] == counts[1] and counts[0] <= 27


# ------------------------------------------------------------------ mini-batches as matrices

# the short-batch kernels: hidden layers of 1, 4 (the four-unit kernel), 5 and 16 units (the lanes),
# and 3, 9, 16, 37 around the register tiles' strips of 8 float64 or 16 float32 units (the deferred
# kernel's W[1]ᵀ padded to whole strips); depth 1-3
SHORT_BATCH_KERNELS = ["_deferred_tiles_epoch", "_tiny_batch_epoch", "_tiny4_batch_epoch"]
SHORT_BATCH_SIZES = [[1, 1, 1], [5, 3, 2], [6, 4, 1], [7, 9, 3], [3, 16, 2], [2, 37, 4, 2], [4, 5]]
# with m = M = 11: last batches of 1, 2, 3, 4 and 6 examples, shorter than the batch before them (the
# deferred update of a longer batch applied before a shorter one's products), batches of 3, 7 and 11
# (the deferred kernel's product of one row more: a tile of 4), and one batch of all 11 (a tile of 8
# examples and a remainder)
SHORT_BATCHES = [2, 3, 4, 5, 7, 8, M]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", SHORT_BATCH_KERNELS)
def test_short_batch_kernels_agree_with_plain_and_reference(kernel, dtype):
    """The short-batch kernels (forced on every small net they can run): the plain kernel's epoch
    and the reference's, for every activation and output, batch sizes around the register tiles'
    rows, and widths around the lanes and the tiles' strips."""
    row = _dispatch._ROWS[kernel]
    ran = 0
    for sizes in SHORT_BATCH_SIZES:
        for bs in SHORT_BATCHES:
            for act in HIDDEN_ACTIVATIONS:
                for out in OUTPUTS:
                    if not row.requires(_dispatch._case(sizes, bs, OUT_CODES[out], None)):
                        continue
                    ran += 1
                    prob = make_problem(
                        sizes, dtype=dtype, activation=act, output=out, m=M, batch_size=bs, seed=5, learning_rate=0.1
                    )
                    lay, p0 = _flat(prob)
                    p_fast, p_plain = p0.copy(), p0.copy()
                    order = np.asarray(prob.order, dtype=np.int64)
                    res = fast_epoch(
                        p_fast,
                        lay.sizes,
                        prob.X,
                        prob.Y,
                        order,
                        bs,
                        dtype(prob.learning_rate),
                        ACT_CODES[act],
                        OUT_CODES[out],
                        epoch=kernel,
                    )
                    J_plain, f_plain = _run(plain_epoch, prob, p_plain, lay, bs)
                    msg = f"{sizes} {np.dtype(dtype)} {act} {out} batch {bs}"
                    assert res[1] == f_plain == -1, msg
                    assert_agree((res[0], p_fast), (J_plain, p_plain), dtype, msg)
                    W, b = prob.copy_params()
                    J_ref = reference.train_epoch(*prob.args("train_epoch", W, b))
                    assert_agree((res[0], p_fast), (J_ref, lay.pack(W, b, dtype)), dtype, msg + " vs reference")
    assert ran, f"{kernel} runs no problem of the list"


# ------------------------------------------------------------------------------ threads

#: The split column kernels' batch (threads=True runs them on the threaded twin).
THREADED = _dispatch.SPLIT_MIN_BATCH_LARGE


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [[33, 37, 3], [9, 130, 4, 1]], ids=lambda s: "-".join(map(str, s)))
def test_threaded_kernel_agrees_with_plain(dtype, sizes):
    m = 2 * THREADED + 7  # a short last batch
    for act, out in (("tanh", "softmax"), ("relu", "sigmoid"), ("sigmoid", "identity")):
        prob = make_problem(
            sizes,
            dtype=dtype,
            activation=act,
            output=out if sizes[-1] > 1 or out != "softmax" else "sigmoid",
            m=m,
            batch_size=THREADED,
            learning_rate=0.05,
        )
        lay, p0 = _flat(prob)
        p_thr, p_plain = p0.copy(), p0.copy()
        order = np.asarray(prob.order, dtype=np.int64)
        lr = np.dtype(dtype).type(prob.learning_rate)
        res = fast_epoch(
            p_thr, lay.sizes, prob.X, prob.Y, order, THREADED, lr, ACT_CODES[act], OUT_CODES[prob.output], threads=True
        )
        ref = _run(plain_epoch, prob, p_plain, lay, THREADED)
        assert res[1] == ref[1] == -1
        assert_agree((res[0], p_thr), (ref[0], p_plain), dtype, f"{sizes} {act} {prob.output}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_threaded_kernel_divergence_matches_plain(dtype):
    prob = make_problem(
        [33, 37, 2],
        dtype=dtype,
        activation="tanh",
        output="identity",
        m=3 * THREADED,
        batch_size=THREADED,
        learning_rate=0.05,
    )
    bad = prob.order[THREADED + 5]
    # ×1e6: every hidden unit of the bad example far in tanh's saturation, where any tanh gives ±1
    # (×1000 left some units where tanh is within an ulp of 1: there 1 − A² is 0 or 6e-8 by the
    # last bit of tanh, times a residual of 3e38, and the two kernels' tanhs took different sides)
    prob.X[bad] *= 1e6
    prob.Y[bad] = np.finfo(dtype).max * 0.9
    lay, p0 = _flat(prob)
    p_thr, p_plain = p0.copy(), p0.copy()
    order = np.asarray(prob.order, dtype=np.int64)
    lr = np.dtype(dtype).type(prob.learning_rate)
    J, failed = fast_epoch(
        p_thr, lay.sizes, prob.X, prob.Y, order, THREADED, lr, ACT_CODES["tanh"], OUT_CODES["identity"], threads=True
    )
    J_plain, f_plain = _run(plain_epoch, prob, p_plain, lay, THREADED)
    assert f_plain >= 1 and failed == f_plain
    assert_agree((J, p_thr), (J_plain, p_plain), dtype)


#: Steps whose outcome hangs on the split step's partial sums: (optimizer, learning rate, alpha).
#: A step too large for the divergence bound (gradient descent) or not finite (the optimizers):
#: the epoch stops or hands over at the first batch; L2: the loss adds the two halves' ‖W‖².
SPLIT_STEP_CASES = {
    "descent-bound": ("descent", 1e37, 0.0),
    "adam-l2": ("adam", 1e-3, 1e-2),
    "adam-overflow": ("adam", 1e37, 0.0),
    "nesterov-l2": ("nesterov", 1e-2, 1e-2),
    "nesterov-overflow": ("nesterov", 1e37, 0.0),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SPLIT_STEP_CASES))
def test_the_split_step_reads_its_partial_sums_on_every_thread_count(dtype, case):
    """The threaded twin and the one-thread kernel: the same loss, the same failing batch, the same
    bits.  Regression: with the sums written inside a called part, the threaded twin read some back
    as zeros (half the L2 term in the loss; a bound or check that could never fail)."""
    from fastbp.optimizers import SGD, Adam

    kind, lr, alpha = SPLIT_STEP_CASES[case]
    big = lr * (1e270 if dtype == np.float64 else 1.0)  # overflows either dtype's step
    lr = big if lr > 1 else lr
    prob = make_problem([33, 37, 3], dtype=dtype, output="softmax", m=3 * THREADED + 5, seed=3)
    lay, p0 = _flat(prob)
    order = np.arange(prob.X.shape[0], dtype=np.int64)
    tanh = get_activation("tanh")
    results = []
    for threads in (False, True):
        p = p0.copy()
        if kind == "descent":
            J, failed = run_epoch(
                p,
                lay.sizes,
                prob.X,
                prob.Y,
                order,
                THREADED,
                dtype(lr),
                tanh,
                2,
                threads=threads,
                epoch="_columns_epoch_split",
            )
            state = np.zeros(0)
        else:
            opt = Adam(lr) if kind == "adam" else SGD(lr, momentum=0.9, nesterov=True)
            opt.bind(lay.sizes, np.dtype(dtype))
            tail = (opt.kind, opt.hyper(), opt.state, opt.counter, alpha, 1.0)
            J, failed = _dispatch.run_epoch_opt(
                p,
                lay.sizes,
                prob.X,
                prob.Y,
                order,
                THREADED,
                tanh,
                2,
                *tail,
                epoch="_columns_epoch_opt_split",
                threads=threads,
            )
            state = opt.state
        assert np.isfinite(p).all()  # a step that would not be finite is never applied
        results.append((J, failed, p.tobytes(), state.tobytes()))
    assert results[0][:2] == results[1][:2]
    assert results[0] == results[1]
    if lr > 1 and kind != "descent":
        assert results[0][1] >= 0  # a step was not finite: the epoch stopped there


_BITS_SCRIPT = """
import hashlib, numpy as np, numba
from fastbp._dispatch import run_epoch, run_epoch_opt
from fastbp.activations import get_activation
from fastbp.optimizers import Adam
from fastbp.params import Layout
from fastbp.testing import make_problem
tanh = get_activation("tanh")
for dt in (np.float32, np.float64):
    # asked for (threads=True) on a small net; 13: an odd batch, a last batch of one example
    for bs in (64, 13):
        prob = make_problem([33, 37, 3], dtype=dt, m=300, learning_rate=0.05, output="softmax")
        lay = Layout([33, 37, 3]); p = lay.pack(prob.weights, prob.biases, np.dtype(dt))
        J, f = run_epoch(p, lay.sizes, prob.X, prob.Y, np.asarray(prob.order), bs, dt(0.05), tanh, 1, threads=True)
        print(numba.get_num_threads(), repr(J), f, hashlib.sha256(p.tobytes()).hexdigest())
    # the defaults (threads=None) on a net the split kernels take by size, with BLAS on W[1]
    prob = make_problem([128, 128, 3], dtype=dt, m=200, learning_rate=0.05, output="softmax")
    lay = Layout([128, 128, 3]); p = lay.pack(prob.weights, prob.biases, np.dtype(dt)); q = p.copy()
    J, f = run_epoch(p, lay.sizes, prob.X, prob.Y, np.asarray(prob.order), 64, dt(0.05), tanh, 1)
    print(numba.get_num_threads(), repr(J), f, hashlib.sha256(p.tobytes()).hexdigest())
    adam = Adam(0.01, alpha=0.001); adam.bind(lay.sizes, np.dtype(dt))
    tail = (adam.kind, adam.hyper(), adam.state, adam.counter, adam.alpha, 1.0)
    J, f = run_epoch_opt(q, lay.sizes, prob.X, prob.Y, np.asarray(prob.order), 64, tanh, 1, *tail)
    print(numba.get_num_threads(), repr(J), f, hashlib.sha256(q.tobytes() + adam.state.tobytes()).hexdigest())
"""


def test_threaded_results_bit_identical_for_any_thread_count(tmp_path):
    """The same bits with NUMBA_NUM_THREADS=1 and 2 (fresh processes; the second hits the cache)."""
    import os
    import subprocess
    import sys

    outs = []
    for n in ("2", "1"):
        env = dict(os.environ, NUMBA_NUM_THREADS=n)
        res = subprocess.run(
            [sys.executable, "-c", _BITS_SCRIPT], env=env, capture_output=True, text=True, check=True, timeout=300
        )
        lines = res.stdout.strip().splitlines()
        assert [ln.split()[0] for ln in lines] == [n] * 8
        outs.append([ln.split(maxsplit=1)[1] for ln in lines])
    assert outs[0] == outs[1]


# ------------------------------------------------------------------------ float32 stays


@pytest.mark.parametrize(
    "name, args",
    [
        (
            "_first_layer_fused",
            lambda T: (np.zeros(40, T), 4, 8, 32, np.zeros(4, T), np.zeros(8, T), np.zeros(4, T), np.zeros(8, T)),
        ),
        (
            "_block_pass_grad",
            lambda T: (
                np.zeros(40, T),
                np.zeros(40, T),
                4,
                8,
                np.zeros((4, 8), T),
                np.zeros((4, 4), T),
                np.zeros((4, 4), T),
                np.zeros((4, 8), T),
            ),
        ),
        ("activate_loop", lambda T: (np.zeros(8, T), np.zeros(8, T), 8, 1)),
        ("output_loop", lambda T: (np.zeros(8, T), np.zeros(8, T), 1)),
    ],
)
def test_float32_loops_have_no_float64_arithmetic(name, args):
    """The hot loops compiled for float32 carry no stray float64 arithmetic (LLVM IR)."""
    import re

    from numba import njit

    from fastbp import activations, losses
    from fastbp._fast import _passes
    from fastbp._jit import JIT_VEC

    home = next(mod for mod in (_passes, activations, losses) if hasattr(mod, name))
    fn = njit(**{**JIT_VEC, "cache": False})(getattr(home, name).py_func)
    fn(*args(np.float32))
    text = fn.inspect_llvm(fn.signatures[0])
    body = text[text.index("define") :]
    assert re.search(r"= f(add|sub|mul|div)[a-z ]* (float|<\d+ x float>) ", body)
    assert not re.search(r"= f(add|sub|mul|div)[a-z ]* (double|<\d+ x double>) ", body), "stray float64"


# ------------------------------------------------------------------ random configurations


@pytest.mark.parametrize("seed", range(12))
def test_random_configurations_agree_with_plain(seed):
    """Seeded random depth, widths (some past the blocked thresholds), m, batch size,
    activation, output, dtype and threading: the fast kernels agree with the plain one."""
    rng = np.random.default_rng(1000 + seed)
    depth = int(rng.integers(1, 5))
    sizes = [int(rng.integers(1, 70))] + [int(rng.integers(1, 40)) for _ in range(depth)]
    if seed % 3 == 0:  # W[1] large enough for the blocked kernels
        sizes[0], sizes[1] = int(rng.integers(16, 80)), int(rng.integers(64, 140))
    dtype = DTYPES[seed % 2]
    act = HIDDEN_ACTIVATIONS[int(rng.integers(len(HIDDEN_ACTIVATIONS)))]
    out = OUTPUTS[int(rng.integers(len(OUTPUTS)))]
    m = int(rng.integers(1, 90))
    bs = int(rng.choice([1, 1, 2, 5, 64, m]))
    prob = make_problem(
        sizes, dtype=dtype, activation=act, output=out, m=m, batch_size=bs, seed=seed, learning_rate=0.01
    )
    lay, p0 = _flat(prob)
    order = np.asarray(prob.order, dtype=np.int64)
    lr = np.dtype(dtype).type(prob.learning_rate)
    p_plain = p0.copy()
    ref = _run(plain_epoch, prob, p_plain, lay, bs)
    for threads in (False, True):
        p = p0.copy()
        res = fast_epoch(p, lay.sizes, prob.X, prob.Y, order, bs, lr, ACT_CODES[act], OUT_CODES[out], threads=threads)
        msg = f"{sizes} {np.dtype(dtype)} {act} {out} m={m} batch {bs} threads={threads}"
        assert res[1] == ref[1] == -1, msg
        assert_agree((res[0], p), (ref[0], p_plain), dtype, msg)
