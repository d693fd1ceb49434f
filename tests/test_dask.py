"""fastbp's estimators with Dask: Incremental, ParallelPostFit, GridSearchCV on joblib's Dask backend.

Runs on a ``LocalCluster`` of two worker *processes* on 127.0.0.1; skipped
cleanly when the ``fastbp[dask]`` extra (dask[array], distributed, dask-ml) is
not installed.

Numba's on-disk cache and worker processes (numba#4807: processes filling the
same cache at once can crash): the fixture fits and predicts once in this
process *before* the workers start, so every kernel the workers need is already
compiled and cached, and the workers only read the cache.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")
joblib = pytest.importorskip("joblib")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastbp.estimators import MLPClassifier, MLPRegressor  # noqa: E402
from fastbp.testing import tolerance  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = (X @ rng.normal(size=(6, 3))).argmax(axis=1)
    return X, y


def _warm_numba_cache():
    """Compile (or load) every kernel the workers will run, here, before they start."""
    X, y = _data(20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (
            MLPClassifier(hidden_layer_sizes=(3,), max_iter=1),
            MLPRegressor(hidden_layer_sizes=(3,), max_iter=1),
        ):
            est.fit(X, y.astype(float) if isinstance(est, MLPRegressor) else y).predict(X)
        MLPClassifier(hidden_layer_sizes=(3,), solver="sgd", max_iter=1).fit(X, y).predict_proba(X)


@pytest.fixture(scope="module")
def client():
    _warm_numba_cache()
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def _small(**kw):
    return MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.01, random_state=0, **kw)


def test_incremental_partial_fit_over_dask_blocks(client):
    X, y = _data()
    Xd, yd = da.from_array(X, chunks=60), da.from_array(y, chunks=60)
    inc = dask_ml_wrappers.Incremental(_small(), shuffle_blocks=False)
    inc.fit(Xd, yd, classes=[0, 1, 2])
    # The same blocks, in the same order, fed by hand to partial_fit in this process.
    local = _small()
    for lo in range(0, len(X), 60):
        local.partial_fit(X[lo : lo + 60], y[lo : lo + 60], classes=[0, 1, 2])
    fitted = inc.estimator_
    assert fitted.t_ == local.t_ == len(X)
    for a, b in zip(fitted.coefs_ + fitted.intercepts_, local.coefs_ + local.intercepts_):
        np.testing.assert_allclose(a, b, **tolerance(np.float64))
    np.testing.assert_array_equal(inc.predict(Xd).compute(), local.predict(X))


def test_parallel_post_fit_predicts_over_a_dask_array(client):
    X, y = _data()
    est = _small(max_iter=20).fit(X, y)
    ppf = dask_ml_wrappers.ParallelPostFit(est)
    Xd = da.from_array(X, chunks=50)
    np.testing.assert_array_equal(ppf.predict(Xd).compute(), est.predict(X))
    np.testing.assert_allclose(ppf.predict_proba(Xd).compute(), est.predict_proba(X), **tolerance(np.float64))


def test_grid_search_on_joblibs_dask_backend(client):
    X, y = _data()
    grid = {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(4,), (8,)]}
    make = lambda: GridSearchCV(_small(max_iter=10), grid, cv=2)  # noqa: E731

    def executed():
        return sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())

    before = executed()
    with joblib.parallel_backend("dask"):
        on_dask = make().fit(X, y)
    assert executed() > before  # the fits ran on the workers
    local = make().fit(X, y)
    assert on_dask.best_params_ == local.best_params_
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], **tolerance(np.float64)
    )


def _intermediate_states_seen(kernel, args, params) -> int:
    """How many distinct parameter states this thread sees while ``kernel`` runs in another thread.

    With a huge switch interval the interpreter never takes the GIL from a thread
    on its own, so this thread can run while the kernel runs only if the kernel
    released the GIL: then it sees the parameters change step by step (many
    states); a kernel that holds the GIL lets it in only after it returned (one state).
    No clocks are read.
    """
    import sys

    started = threading.Event()

    def work():
        started.set()
        kernel(*args)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        t = threading.Thread(target=work)
        t.start()
        started.wait()
        seen = {params.tobytes()}
        for _ in range(200_000):
            seen.add(params.tobytes())
            if len(seen) >= 5:
                break
        t.join()
    finally:
        sys.setswitchinterval(old)
    return len(seen)


def test_kernels_release_the_gil():
    """Threads (a Dask worker's, a thread pool's) run fastbp's epochs in parallel: the kernel drops the GIL."""
    from numba import njit

    from fastbp._fast.optimizer import _batch_epoch_opt
    from fastbp._plain.loops import _train_epoch_opt
    from fastbp.activations import get_activation
    from fastbp.optimizers import SGD
    from fastbp.params import Layout

    rng = np.random.default_rng(0)
    # an epoch long enough (tens of ms) that this thread gets several time slices while it runs even
    # when it shares one core with the kernel's thread (the tests run in two processes on two cores:
    # with 20,000 rows it once saw 4 states, not 5)
    m = 100_000
    X = rng.normal(size=(m, 20))
    Y = np.eye(3)[rng.integers(0, 3, m)]
    sizes = np.array([20, 16, 3])
    opt = SGD(0.01)
    opt.bind(sizes, np.float64)

    def run(kernel):
        params = rng.normal(size=Layout(sizes).n_params) * 0.1
        args = (
            params,
            sizes,
            X,
            Y,
            np.arange(len(X)),
            1,
            get_activation("tanh").code,
            1,
            opt.kind,
            opt.hyper(),
            np.zeros((2, params.size)),
            np.zeros(1, np.int64),
            0.0,
            1.0,
        )
        kernel(*args)  # compile before the probe
        return _intermediate_states_seen(kernel, args, params)

    unweighted = np.empty(0)  # (the kernels' last argument, sw: no weights)
    assert run(functools.partial(_train_epoch_opt, sw=unweighted)) >= 5
    # the fast epoch, what the estimators run
    assert run(functools.partial(_batch_epoch_opt, blocked=False, sw=unweighted)) >= 5
    # The probe can tell: the same kernel compiled *without* nogil is seen in one state only.
    holds_gil = njit(cache=False, nogil=False)(_train_epoch_opt.py_func)
    assert run(functools.partial(holds_gil, sw=unweighted)) == 1
