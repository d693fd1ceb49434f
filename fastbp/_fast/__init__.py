"""The fast kernels (layer L2b): what ``backend="numba"`` runs for the built-in activations.

One module per strategy, each computing the same epoch as the plain kernel
:func:`fastbp._plain.loops._train_epoch` (same visiting order, same per-example or
per-batch updates, same returned cost, same divergence contract) faster:

=================  =====================================  ====================================
module             kernel                                 strategy
=================  =====================================  ====================================
``sgd``            ``_sgd_epoch``                         per-example SGD, backward and update
                                                          fused into one pass over each W[l]
``blocked_tiles``  ``_sgd_epoch_blocked_tiles``           per-example SGD, W[1]'s updates
                                                          deferred over blocks of 8 examples, its
                                                          products as register tiles
``tiny``           ``_tiny_epoch``, ``_tiny4_epoch``,     per-example SGD and short mini-batches,
                   ``_tiny_batch_epoch``,                 one small hidden layer in registers
                   ``_tiny4_batch_epoch``                 (latency chain; examples overlapped)
``batch``          ``_batch_epoch``                       mini-batches, four examples per pass
                                                          over W[1]
``deferred_tiles`` ``_deferred_tiles_epoch``              short mini-batches, each batch's W[1]
                                                          update applied at the next batch's
                                                          start; W[1]'s products as register
                                                          tiles over a packed copy of W[1]ᵀ
``optimizer``      ``_batch_epoch_opt``                   mini-batches with momentum, Adam, L2
``columns``        ``_columns_epoch``,                    mini-batches as column matrices (SIMD
                   ``_columns_epoch_opt``,                across the examples; loops, BLAS for
                   ``_columns_epoch_threads``,            wide layers), without and with
                   ``_columns_epoch_opt_threads``;        optimizers; each batch whole or in
                   each with a ``_tiles`` twin            two halves, the ``_threads`` twins on
                                                          two threads; the ``_tiles`` twins run
                                                          every product as register tiles
``fullbatch``      ``_loss_and_gradient_fast[_tiles]``    scikit-learn's full-batch objective
                                                          (``solver="lbfgs"``), by the columns
``forward``        ``_predict_fast``, ``_forward_fast``,  the forward pass of the columns for
                   ``_loss_fast``, each with a            ``predict``/``forward``/``loss``
                   ``_tiles`` twin
``packed_forward`` ``_predict_packed``,                   the same with the examples as rows:
                   ``_forward_packed``, ``_loss_packed``  tiles of examples by strips of units
                                                          on packed copies of W[l]ᵀ (no
                                                          transpose of X, no copy of Z, A out)
``rows``           ``_predict_rows``, ``_forward_rows``,  the same on fewer rows: blocks of 32
                   ``_loss_rows``                         examples on the training kernels'
                                                          tiles and loops (less to compile)
``backward``       ``_backward_fast``,                    ``backward`` from a stored forward
                   ``_backward_fast_rows``                pass: every layer units-major (or, for
                                                          a pass not Fortran-ordered, the
                                                          examples as rows), its products one
                                                          BLAS call each
=================  =====================================  ====================================

Which one runs is decided in one place, :mod:`fastbp._dispatch` (its registry of fast
epochs, with each kernel's preconditions, and the pure :func:`fastbp._dispatch.select_epoch`).
Strategy modules import only the shared building blocks (:mod:`._common`, :mod:`._passes`,
:mod:`._columns`, :mod:`._tiles`, and :mod:`._bounds`, the bounds checks of their intrinsics
under ``NUMBA_BOUNDSCHECK``), never each other, and never :mod:`fastbp._plain`.

**The argument vocabulary** (every kernel takes its arguments in this order, under these names):

``params``
    the flat parameter buffer ``[W[1] | b[1] | W[2] | b[2] | …]`` (:mod:`fastbp.params`),
    C-contiguous, float32 or float64; updated in place.
``sizes``
    int64 layer sizes ``[n_0, n_1, …, n_L]``.
``w_off``, ``b_off``, ``u_off``
    offsets of W[l], b[l] in ``params`` and of layer l's units in a units workspace
    (:func:`fastbp.params.offsets`).
``X``, ``Y``
    examples (m × n_0) and targets (m × n_L), one per row, ``params``' dtype, C-contiguous.
``order``
    int64 positions of the examples to visit, in visiting order.
``batch_size``, ``lr``
    examples per step (1 for per-example SGD, whose kernels take no ``batch_size``), α.
``act``, ``out``
    ``ACT_*`` code of the hidden activation, ``OUT_*`` code of the output layer.
``limit``
    the divergence bound's ceiling: a quarter of the dtype's largest number.
``z``, ``a``, ``dz``, ``sa``, ``sd``, ``wb``, ``bb``
    workspaces: Z[l], A[l], dZ[l] of one example (n_units), Σ|A[l]|, Σ|dZ[l]| per layer,
    and the per-layer bounds on max|W[l]|, max|b[l]|.
``sw``
    per-example weights (scikit-learn's ``sample_weight``), one per row of X, ``params``'
    dtype, indexed like X (``sw[order[t]]``); an empty array means none.  Always the *last*
    argument of a kernel that takes it.  Each batch's gradient and cost are then means
    weighted by w_i / Σ_batch w instead of 1/n (:func:`fastbp._plain.loops._mean_gradient`).
    Which kernels take weights is stated in each registry row's ``requires``
    (:mod:`fastbp._dispatch`); the per-example and deferred kernels take none.

**The divergence contract.**  A step whose loss or new parameters would not be finite is
never applied.  Instead of the plain kernel's extra pass over all parameters per step, a
fast kernel keeps, per layer, an upper bound on max|W[l]| and max|b[l]| (exact at the
start of the epoch, then raised by α·Σ|dZ|·Σ|A| per step, which assumes |g′| ≤ 1: an
activation without that trait never runs here), which proves the new parameters finite
while it stays below ``limit``.  If a step's loss is not finite or the bound cannot prove
the step safe, the kernel stops *before* that step and returns ``(total cost, resume)``
with ``resume`` its position in ``order``; :func:`fastbp._dispatch.run_epoch` then runs
the rest of the epoch in the plain kernel, which checks that step exactly.

Measurements: ``docs/performance-kernels.md``.
"""
