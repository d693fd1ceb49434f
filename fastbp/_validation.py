"""Input checks at the boundary: settled once, in Python, before any kernel runs.

Every check raises ``ValueError`` or ``TypeError`` with a message that starts with
the argument's name, and none of them changes anything, so a call that fails
leaves the network exactly as it was.  Kernels trust what passes through here:
C-contiguous arrays of the network's dtype, finite values, consistent shapes.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BACKENDS = ("numba", "numpy")

#: The widest layer accepted (units per layer).  Offsets into the flat buffer are int64: with
#: every width below 2**31 no offset or count can overflow before NumPy refuses the allocation.
MAX_UNITS = 2**31 - 1

#: Tolerance on the row sums of softmax targets, per dtype.
ROW_SUM_TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-8}


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """float32 or float64, as a ``numpy.dtype``."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {dt}")
    return dt


def check_layer_sizes(layer_sizes: Any) -> tuple[int, ...]:
    """At least two positive integers: ``[n_x, n_1, ..., n_L]``."""
    if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, (Sequence, np.ndarray)):
        raise TypeError(
            f"layer_sizes must be a sequence of positive integers such as [64, 32, 10], "
            f"got {type(layer_sizes).__name__}"
        )
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least two entries (inputs and outputs), got {sizes}")
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"layer_sizes must hold integers, got {s!r} in {sizes}")
        if s < 1:
            raise ValueError(f"layer_sizes must be positive, got {s} in {sizes}")
        if s > MAX_UNITS:
            raise ValueError(f"layer_sizes: {s} units in one layer is more than this package supports ({MAX_UNITS})")
    sizes = [int(s) for s in sizes]
    n_params = sum(sizes[l + 1] * (sizes[l] + 1) for l in range(len(sizes) - 1))
    if n_params >= 2**62:
        raise ValueError(f"layer_sizes {sizes} would need {n_params} parameters; far more than any memory holds")
    return tuple(sizes)


def check_backend(backend: Any) -> str:
    """``"numba"`` or ``"numpy"``."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be one of {list(BACKENDS)}, got {type(backend).__name__} {backend!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    return backend


def check_seed(seed: Any) -> int | None:
    """``None`` (fresh entropy) or an integer ≥ 0 (``numpy.random.default_rng``'s seeds)."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative integer or None, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed}")
    return int(seed)


def check_bool(value: Any, name: str) -> bool:
    """``True`` or ``False`` (also NumPy's bools); not 0/1 or strings."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_callback(callback: Any) -> Any:
    """``None`` or a callable."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    return callback


def check_positive_float(value: Any, name: str, dtype: Any = None) -> float:
    """A finite number > 0 (learning rates); with ``dtype``, also finite and > 0 once rounded to it.

    An integer too large for a float (``10**400``) is a ``ValueError``, not an ``OverflowError``;
    1e39 overflows float32 and 1e-46 rounds to 0 in it, so both are refused for a float32 network.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    try:
        v = float(value)
    except (OverflowError, ValueError):
        raise ValueError(f"{name} must be a finite positive number, got an integer too large for a float") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    if dtype is not None:
        dt = np.dtype(dtype)
        with np.errstate(over="ignore", under="ignore"):
            r = dt.type(v)
        if not np.isfinite(r):
            raise ValueError(f"{name} = {value!r} overflows the network's dtype {dt}")
        if r <= 0:
            raise ValueError(f"{name} = {value!r} rounds to 0 in the network's dtype {dt}")
    return v


def check_int(value: Any, name: str, minimum: int) -> int:
    """An integer ≥ ``minimum`` (epochs, batch sizes)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r:.80}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_batch_size(batch_size: Any, m: int) -> int:
    """``None`` is the full batch of ``m`` examples (an epoch's visits); otherwise an integer ≥ 1
    (capped at m)."""
    if batch_size is None:
        return m
    return min(check_int(batch_size, "batch_size", 1), m)


def as_float_array(
    a: Any, name: str, dtype: np.dtype, ndim: int = 2, n_cols: int | None = None, checked: bool = False
) -> np.ndarray:
    """``a`` as a finite, C-contiguous array of ``dtype`` with ``ndim`` dimensions.

    Integers, booleans, other float widths, lists, Fortran-ordered, strided and
    read-only arrays are converted; complex, object, string and datetime arrays,
    NaN and ±inf, the wrong number of dimensions or columns and empty arrays are
    refused (NaN and ±inf not looked for with ``checked``: :func:`finite_contiguous`).
    """
    arr = as_numeric(a, name)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got an array of shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no rows (zero examples)")
    if n_cols is not None and arr.shape[1] != n_cols:
        raise ValueError(f"{name} must have {n_cols} columns, got shape {arr.shape}")
    return finite_contiguous(arr, name, dtype, checked)


def as_numeric(a: Any, name: str) -> np.ndarray:
    """``a`` as a real numeric (bool, integer or float) NumPy array, not yet converted."""
    if isinstance(a, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a string")
    if isinstance(a, np.ma.MaskedArray):  # np.asarray would drop the mask: masked entries are missing values
        if np.ma.getmaskarray(a).any():
            raise ValueError(
                f"{name} is a masked array with masked entries; fill or drop them first (e.g. {name}.filled(...))"
            )
        a = a.data
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise ValueError(f"{name} could not be read as a numeric array: {exc}") from exc
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr


def refuse_non_finite(arr: np.ndarray, name: str) -> None:
    """A ValueError naming ``name`` if the float array ``arr`` holds NaN or ±inf."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise ValueError(f"{name} contains {bad}; remove or impute non-finite values first")


def finite_contiguous(arr: np.ndarray, name: str, dtype: np.dtype, checked: bool = False) -> np.ndarray:
    """A numeric ``arr`` as a finite, writeable, C-contiguous array of ``dtype`` (refusing NaN, ±inf, overflow).

    A copy only where needed: an array already C-contiguous, writeable and of
    ``dtype`` is returned as it is.  Read-only arrays are copied although the
    kernels only read them: Numba types a read-only array differently, so
    passing it through would compile every kernel a second time (seconds).
    ``checked=True``: the caller has already refused NaN and ±inf in ``arr``
    (scikit-learn's ``validate_data``), so only the conversion, and a float32
    overflow it makes, are checked (the pass over ``arr`` is not made twice).
    """
    if not checked:
        refuse_non_finite(arr, name)
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.writeable:
        return arr  # nothing to convert (the common call: skips the errstate below, microseconds a call)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported just below
        out = np.ascontiguousarray(arr, dtype=dtype)
    narrowed = arr.dtype.kind == "f" and arr.dtype.itemsize > np.dtype(dtype).itemsize
    if narrowed and not np.isfinite(out).all():  # e.g. float64 beyond float32's range
        raise ValueError(f"{name} overflows {np.dtype(dtype)} (values too large for the network's dtype)")
    if not out.flags.writeable:
        out = out.copy()
    return out


def check_shaped(a: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``a`` as a finite C-contiguous array of ``dtype`` with exactly ``shape`` (gradients, Z, A)."""
    arr = as_numeric(a, name)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    return finite_contiguous(arr, name, dtype)


def check_X(
    X: Any, n_x: int, dtype: np.dtype, kernel_refuses_non_finite: Callable[[int], bool] | None = None
) -> np.ndarray:
    """X (m × ``n_x``) as a finite C-contiguous array of ``dtype`` (:func:`as_float_array`).

    ``kernel_refuses_non_finite(m)``: whether the kernel that will read X's m rows looks for NaN and
    ±inf in them itself, as it reads them (``fastbp._dispatch.forward_refuses_non_finite``); an X that
    needs no conversion is then returned without this module's pass over it."""
    arr = as_numeric(X, "X")
    as_is = arr.dtype == dtype and arr.ndim == 2 and arr.flags.c_contiguous and arr.flags.writeable
    left = kernel_refuses_non_finite is not None and as_is and kernel_refuses_non_finite(arr.shape[0])
    return as_float_array(arr, "X", dtype, 2, n_x, checked=left)


def check_Y(Y: Any, m: int, n_y: int, output: int, dtype: np.dtype) -> np.ndarray:
    """Targets for ``m`` examples; a 1-D Y is accepted when there is one output unit."""
    from .losses import OUT_EXP as EXP
    from .losses import OUT_SIGMOID as SIGMOID
    from .losses import OUT_SOFTMAX as SOFTMAX

    arr = as_numeric(Y, "Y")
    if arr.ndim == 1 and n_y == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim == 1 and output == SOFTMAX:
        raise ValueError(
            f"Y is 1-D (class labels?) but a softmax output of {n_y} units needs one row per example with "
            f"{n_y} columns: one-hot encode class indices 0..{n_y - 1} with np.eye({n_y})[y], or use "
            "fastbp.MLPClassifier, which takes labels as they are"
        )
    Yc = as_float_array(arr, "Y", dtype, 2, n_y)
    if Yc.shape[0] != m:
        raise ValueError(f"X and Y must have the same number of rows, got {m} and {Yc.shape[0]}")
    if output == SIGMOID and ((Yc < 0).any() or (Yc > 1).any()):
        raise ValueError(
            "Y must lie in [0, 1] for a sigmoid output (binary cross-entropy): for class labels use "
            "output='softmax' with one-hot rows (np.eye(k)[y]) or fastbp.MLPClassifier; for real-valued "
            "targets use output='identity'"
        )
    if output == EXP and (Yc < 0).any():
        raise ValueError("Y must be non-negative for an exp output (Poisson deviance)")
    if output == SOFTMAX:
        if (Yc < 0).any():
            raise ValueError("Y must be non-negative for a softmax output")
        tol = ROW_SUM_TOL[np.dtype(dtype)]
        if not np.allclose(Yc.sum(axis=1), 1, rtol=0, atol=tol):
            raise ValueError(
                "Y rows must sum to 1 for a softmax output (one-hot or probabilities): one-hot encode "
                f"class indices with np.eye({n_y})[y]"
            )
    return Yc


#: The parameter arrays' accepted types (not subclasses such as np.matrix or masked arrays).
_PLAIN_ARRAYS = (np.ndarray, np.memmap)


def _transposed(l: int, W: np.ndarray) -> str:
    """The hint for a W[l] that fits its bias, or the layer below, the other way round (only formatted
    for an error: the wrappers check parameters on every call)."""
    return f"; weights[{l}] is {W.shape[0]} × {W.shape[1]} and W[l] is (n_l, n_(l-1)): transposed?"


def check_params(
    weights: Any, biases: Any, overlap: bool = True, finite: bool = True
) -> tuple[tuple[int, ...], np.dtype]:
    """Layer sizes and dtype of a list of W[l] (n_l × n_{l−1}) and b[l] (n_l).

    ``overlap=False`` leaves :func:`check_no_overlap` to the caller (the kernel wrappers skip it
    for a network's own views, which are disjoint by construction: ``Layout.buffer_of``, and for
    the operations that only read the parameters); ``finite=False`` leaves the check for NaN and
    inf to the caller (the kernel wrappers make it once over the packed buffer)."""
    if not isinstance(weights, (list, tuple)) or not isinstance(biases, (list, tuple)):
        raise TypeError("weights and biases must be lists of arrays")
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(
            f"weights and biases must be non-empty lists of equal length, got {len(weights)} and {len(biases)}"
        )
    sizes = []
    dtypes = set()
    for l, (W, b) in enumerate(zip(weights, biases)):
        for kind, P in (("weights", W), ("biases", b)):
            if type(P) in _PLAIN_ARRAYS:
                continue
            name = f"{kind}[{l}]"
            if not isinstance(P, np.ndarray):  # parameters are updated in place: arrays only
                raise TypeError(f"{name} must be a NumPy array (updated in place), got {type(P).__name__}")
            # np.matrix, masked arrays: other algebra, hidden masks
            raise TypeError(f"{name} must be a plain numpy.ndarray, got {type(P).__module__}.{type(P).__name__}")
        if W.ndim != 2:
            raise ValueError(f"weights[{l}] must be a 2-D array (n_out × n_in)")
        if 0 in W.shape:
            raise ValueError(f"weights[{l}] has shape {W.shape}: every layer needs at least one unit and one input")
        if b.shape != (W.shape[0],):
            hint = _transposed(l, W) if b.shape == (W.shape[1],) else ""
            raise ValueError(f"biases[{l}] must have shape ({W.shape[0]},) to match weights[{l}]{hint}")
        if l == 0:
            sizes.append(W.shape[1])
        elif W.shape[1] != sizes[-1]:
            hint = _transposed(l, W) if W.shape[0] == sizes[-1] else ""
            raise ValueError(f"weights[{l}] has {W.shape[1]} columns but layer {l} has {sizes[-1]} units{hint}")
        sizes.append(W.shape[0])
        dtypes.update({W.dtype, b.dtype})
    if len(dtypes) != 1 or next(iter(dtypes)) not in FLOAT_DTYPES:
        raise TypeError(f"weights and biases must all be float32 or all float64, got {sorted(map(str, dtypes))}")
    for name, arrays in (("weights", weights), ("biases", biases)) if finite else ():
        for l, P in enumerate(arrays):
            if not np.isfinite(P).all():
                raise ValueError(f"{name}[{l}] contains NaN or inf")
    if overlap:
        check_no_overlap(weights, biases)
    return tuple(sizes), next(iter(dtypes))


def _named(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> list[tuple[str, np.ndarray]]:
    return [(f"weights[{l}]", W) for l, W in enumerate(weights)] + [(f"biases[{l}]", b) for l, b in enumerate(biases)]


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10**6))
    except np.exceptions.TooHardError:  # pragma: no cover - exotic strides: assume the worst
        return True


def check_no_overlap(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> None:
    """No two parameter arrays share memory (one array passed twice, overlapping views):
    training would write each step through both names, and the result would depend on the backend."""
    named = _named(weights, biases)
    for i, (na, a) in enumerate(named):
        for nb, b in named[i + 1 :]:
            if _overlap(a, b):
                raise ValueError(f"{nb} shares memory with {na}; each parameter must be its own array (pass a copy)")


def unshared(arr: np.ndarray, params: Sequence[np.ndarray]) -> np.ndarray:
    """``arr`` itself, or a copy of it if it shares memory with any of ``params`` (which a call is about to
    write): an input that is a parameter, or a view of one, is read as it was when the call began."""
    if any(_overlap(arr, P) for P in params):
        return arr.copy()
    return arr


def check_writeable(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> None:
    """Functions that train in place need every W[l] and b[l] writeable (checked before any write)."""
    for name, arrays in (("weights", weights), ("biases", biases)):
        for l, P in enumerate(arrays):
            if not P.flags.writeable:
                raise ValueError(f"{name}[{l}] is read-only; training changes the parameters in place")


def check_grads(weights, biases, dW: Any, db: Any, dtype: np.dtype) -> list[np.ndarray]:
    """dW, db as flat C-contiguous finite arrays of ``dtype``, one per W[l] then b[l]."""
    for name, G in (("dW", dW), ("db", db)):
        if not isinstance(G, (list, tuple)):
            raise TypeError(f"{name} must be a list of arrays shaped like the parameters, got {type(G).__name__}")
    if len(dW) != len(weights):
        raise ValueError(f"dW must have one array per layer ({len(weights)}), got {len(dW)}")
    if len(db) != len(biases):
        raise ValueError(f"db must have one array per layer ({len(biases)}), got {len(db)}")
    out = []
    for name, Ps, Gs in (("dW", weights, dW), ("db", biases, db)):
        for l, (P, G) in enumerate(zip(Ps, Gs)):
            out.append(check_shaped(G, f"{name}[{l}]", P.shape, dtype).reshape(-1))
    return out


def check_units(
    blocks: Any, name: str, m: int, widths: Sequence[int], dtype: np.dtype, any_layout: bool = False
) -> list[np.ndarray]:
    """Z or A of a stored forward pass: a list of one (m × n_l) array per layer.  ``any_layout``:
    an array already of ``dtype`` is passed on in its own memory order, not copied to C order (for
    a caller that reads it in its own layout or copies it: ``kernels.forward`` returns
    Fortran-ordered views, which ``kernels.backward`` reads in place)."""
    if not isinstance(blocks, (list, tuple)) or len(blocks) != len(widths):
        raise ValueError(f"{name} must be a list of {len(widths)} arrays, as forward returns")
    out = []
    for l, (blk, n) in enumerate(zip(blocks, widths)):
        arr = as_numeric(blk, f"{name}[{l}]")
        if any_layout and arr.dtype == dtype and arr.shape == (m, n):
            refuse_non_finite(arr, f"{name}[{l}]")
            out.append(arr)
        else:
            out.append(check_shaped(arr, f"{name}[{l}]", (m, n), dtype))
    return out


def check_order(order: Any, m: int) -> np.ndarray:
    """``order`` as an int64 array of example indices in [0, m) (default ``arange(m)``).

    Any non-empty sequence of valid indices is allowed (a subset, repeats).  Always a copy, and
    the range is checked on the copy: the kernels index X and Y with it without holding the GIL,
    so the caller's own array, changed by another thread after the check, could send them
    outside their arrays.
    """
    if order is None:
        return np.arange(m, dtype=np.int64)
    idx = as_numeric(order, "order")
    if idx.size == 0 and idx.ndim == 1:  # before the dtype: an empty list reads as float64
        raise ValueError(f"order must be a non-empty 1-D array of example indices, got shape {idx.shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"order must hold integer example indices, got dtype {idx.dtype}")
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"order must be a non-empty 1-D array of example indices, got shape {idx.shape}")
    if idx.dtype.kind == "u" and idx.max() > np.iinfo(np.int64).max:  # would wrap to a negative int64
        raise ValueError(f"order holds indices outside [0, {m})")
    idx = np.array(idx, dtype=np.int64, order="C", copy=True)
    if idx.min() < 0 or idx.max() >= m:
        raise ValueError(f"order holds indices outside [0, {m})")
    return idx


def check_sample_weight(sample_weight: Any, m: int, dtype: np.dtype) -> np.ndarray | None:
    """``sample_weight`` (``None``, a number, or one weight per example) as a finite, C-contiguous
    array of ``dtype`` of length m, or ``None``; refused with a ValueError (TypeError for a
    non-numeric one) naming it, as scikit-learn's ``_check_sample_weight`` refuses: not 1-D,
    the wrong length, NaN or inf, all zero.  Negative weights are allowed, as scikit-learn's MLP
    allows them.  A copy, so that the caller's array is never written or read while it changes."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, (bool, np.bool_)):
        if isinstance(sample_weight, numbers.Complex) and not isinstance(sample_weight, numbers.Real):
            raise TypeError(f"sample_weight must be real, got {sample_weight!r}")
        try:  # a Decimal or Fraction too; NaN and inf are refused below, with the arrays'
            weight = float(sample_weight)
        except (OverflowError, ValueError, TypeError) as exc:  # (no repr: an int of 5,000 digits cannot have one)
            raise ValueError(
                f"sample_weight: this {type(sample_weight).__name__} is not a float64 number ({exc})"
            ) from None
        arr = np.full(m, weight)
    else:
        arr = as_numeric(sample_weight, "sample_weight")
    if arr.ndim != 1:
        raise ValueError(f"sample_weight must be a number or a 1-D array of length {m}, got shape {arr.shape}")
    if arr.shape[0] != m:
        raise ValueError(f"sample_weight has {arr.shape[0]} weights for {m} examples")
    arr = np.array(finite_contiguous(arr, "sample_weight", dtype), copy=True)
    if not arr.any():
        raise ValueError("sample_weight: all weights are zero; at least one must not be")
    return arr


def unit_weights_as_none(sw):
    """``None`` for weights that are all exactly 1 (every batch's weighted mean is then its plain
    mean, w_i / Σw = 1 / n_b exactly), else ``sw``: unit weights run the unweighted kernels,
    which include the column kernels that take no weights, and give the unweighted bits."""
    if sw is not None and bool(np.all(np.asarray(sw) == 1)):
        return None
    return sw


def check_batch_weights(sw: np.ndarray, order: np.ndarray, batch_size: int) -> None:
    """Refuse (ValueError naming ``sample_weight``) weights that sum to zero over a batch of ``order``:
    that batch's weighted mean, Σ w_i g_i / Σ w_i, is undefined (scikit-learn's MLP raises
    ZeroDivisionError from ``numpy.average`` there).  Per-example SGD (batch 1) with a zero weight
    is such a batch."""
    starts = np.arange(0, order.shape[0], batch_size)
    sums = np.add.reduceat(sw[order].astype(np.float64), starts) if starts.size else starts
    zero = np.flatnonzero(sums == 0)
    if zero.size:
        k = int(zero[0])
        raise ValueError(
            f"sample_weight: the weights of batch {k} (examples order[{k * batch_size}:"
            f"{min((k + 1) * batch_size, order.shape[0])}]) sum to zero, so its weighted mean gradient is "
            "undefined; use larger batches, or drop the examples of weight zero"
        )


def check_train_args(
    sizes: Sequence[int],
    dtype: np.dtype,
    out: int,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    X: Any,
    Y: Any,
    learning_rate: Any,
    batch_size: Any,
    order: Any,
) -> tuple[np.ndarray, np.ndarray, Any, int, np.ndarray]:
    """The arguments of a ``train_epoch`` (kernel or reference), all checked before any write.

    Returns ``(X, Y, learning_rate, batch_size, order)``: X and Y as the network's
    dtype, α as a scalar of that dtype, the batch size as an int, order as int64.
    """
    X = check_X(X, sizes[0], dtype)
    m = X.shape[0]
    Y = check_Y(Y, m, sizes[-1], out, dtype)
    lr = dtype.type(check_positive_float(learning_rate, "learning_rate", dtype))
    idx = check_order(order, m)
    bs = check_batch_size(batch_size, idx.shape[0])  # the epoch's visits: order may repeat rows
    check_writeable(weights, biases)
    return X, Y, lr, bs, idx


class ViewList(list):
    """What :attr:`fastbp.MLP.weights` and ``biases``, and the estimators' ``coefs_`` and
    ``intercepts_``, return: views into the network's parameter buffer.

    ``lst[l] = W`` writes W into the network (checked: shape, finite; converted to its dtype),
    rather than replacing an entry of a throw-away list; the list's length is fixed.
    """

    def __init__(self, views: list[np.ndarray], name: str):
        super().__init__(views)
        self._name = name

    def __setitem__(self, index, value) -> None:
        if not isinstance(index, (int, np.integer)) or isinstance(index, (bool, np.bool_)):
            raise TypeError(f"{self._name}: assign one layer at a time ({self._name}[l] = array)")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self._name}[{index}]: the network has {n} layers")
        view = list.__getitem__(self, index)
        view[...] = check_shaped(value, f"{self._name}[{index % n}]", view.shape, view.dtype)

    def __reduce_ex__(self, protocol):
        """Copies and pickles are plain lists of the arrays (``copy.deepcopy``: of copies of them,
        detached from the network), not lists of views that write into it."""
        return list, (list(self),)

    def _fixed(self, *args, **kwargs):
        raise TypeError(f"{self._name}: the network's list of layers has a fixed length; assign into its entries")

    append = extend = insert = pop = remove = clear = sort = reverse = __delitem__ = __iadd__ = __imul__ = _fixed
