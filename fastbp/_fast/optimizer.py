"""The fast optimizer epoch: what the estimators and ``MLP.fit(optimizer=...)`` run.

:func:`fastbp._plain.loops._train_epoch_opt` stays the readable scalar-loop reference
(tested against the NumPy :func:`fastbp.optimizers.train_epoch_reference`);
:func:`_batch_epoch_opt` computes the same epoch (same batches in the same order, same
gradient, same optimizer steps, same returned loss, same divergence contract) faster,
for the built-in activations:

* each batch's mean gradient is :func:`fastbp._fast._passes._batch_gradient`, the
  building block of the fast mini-batch kernel (W[1] x and dW[1] four examples per pass
  over W[1], vectorised activations, one pass per layer ≥ 2 for dW[l] and dA[l−1]);
* then the L2 term (:func:`fastbp.steps._add_l2`) and the optimizer step
  (:func:`fastbp.steps._optimizer_step`: momentum/Nesterov SGD or Adam), the very
  kernels the plain epoch calls;
* the workspaces are allocated once per epoch (none per batch), and the kernel
  releases the GIL (the project's jit options).

Divergence: the step kernels check, read-only, that the new parameters and optimizer
state would be finite before writing anything, so a batch whose loss or step is not
finite is never applied; the epoch stops there and reports the batch, exactly as the
plain kernel does (no hand-over needed).
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_vec
from ..losses import batch_weight
from ..steps import _add_l2, _optimizer_step
from ._common import _alive, _borrow_epoch, _borrowed
from ._passes import _batch_gradient, _batch_workspace


@jit_vec
def _batch_epoch_opt(
    params, sizes, X, Y, order, batch_size, act, out, kind, hyper, state, counter, alpha, cost_scale, blocked, sw
):
    """One epoch of mini-batches with an optimizer and L2; the arguments and result of
    :func:`fastbp._plain.loops._train_epoch_opt` (``act`` a built-in activation's code),
    plus ``blocked`` (see :func:`fastbp._fast._passes._batch_gradient`); ``sw`` per-example
    weights (empty: none), as there.

    Returns ``(J, failed)``: scikit-learn's epoch loss, and −1 or the index of the
    first batch whose loss, new parameters or new optimizer state would not be
    finite (that step is not applied; the epoch stops there).
    """
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    T = params.dtype.type
    ws = _batch_workspace(params, sizes, u_off)
    z, a, dz, grad, sa = _borrowed(ws[0]), _borrowed(ws[1]), _borrowed(ws[2]), _borrowed(ws[3]), _borrowed(ws[4])
    P, Q, C, Zp = _borrowed(ws[5]), _borrowed(ws[6]), _borrowed(ws[7]), _borrowed(ws[8])
    m = order.shape[0]
    total = 0.0
    failed = -1
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        batch_loss = cost_scale * _batch_gradient(
            params,
            grad,
            sizes,
            w_off,
            b_off,
            u_off,
            X,
            Y,
            order,
            start,
            stop,
            act,
            out,
            blocked,
            z,
            a,
            dz,
            sa,
            P,
            Q,
            C,
            Zp,
            sw,
        )
        if alpha > 0.0:
            D = batch_weight(sw, order, start, stop)  # Σ_batch w_i, or n
            if sw.shape[0] > 0:  # the batch counts n times in J (scikit-learn's accumulated loss)
                batch_loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / D) * ((stop - start) / D)
            else:
                batch_loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / D)
        if not np.isfinite(batch_loss) or not _optimizer_step(params, grad, state, counter, kind, hyper):
            failed = start // batch_size
            break
        total += batch_loss
        for p in range(grad.shape[0]):
            grad[p] = T(0)
    _alive(offs[0], offs[1], offs[2], ws)
    return total / m, failed
