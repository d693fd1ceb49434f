"""fastbp._blas.one_blas_thread: BLAS held to one thread for a kernel call, re-entrant and cheap
when nested (a fit holds it once around its epoch loop), and the caller's setting restored after."""

from __future__ import annotations

import numpy as np
import pytest

from fastbp import _blas
from fastbp._blas import one_blas_thread


def _blas_threads() -> list[int]:
    """The thread count of every BLAS library the process has loaded."""
    return [lib["num_threads"] for lib in _blas._get_controller().info() if lib["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    """The caller's setting is two BLAS threads (so that one is told apart from it on any machine)."""
    with _blas._get_controller().limit(limits=2, user_api="blas"):
        if set(_blas_threads()) != {2}:
            pytest.skip("BLAS cannot be set to two threads here")
        yield


def test_nested_blocks_hold_one_thread_until_the_outermost_closes(two_blas_threads):
    with one_blas_thread():
        assert set(_blas_threads()) == {1}
        with one_blas_thread():
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {1}  # the inner block's exit leaves the outer's hold
    assert set(_blas_threads()) == {2}
    assert _blas._local.held == 0


def test_the_setting_is_restored_when_the_block_raises(two_blas_threads):
    with pytest.raises(RuntimeError), one_blas_thread(), one_blas_thread():
        raise RuntimeError("inside")
    assert set(_blas_threads()) == {2}
    assert _blas._local.held == 0


def test_a_fit_sets_the_limit_once_for_its_whole_epoch_loop(monkeypatch, two_blas_threads):
    """An estimator's fit of 5 epochs on a net with a BLAS layer: one threadpoolctl limit, not one
    per epoch (each kernel call inside the fit's hold costs a counter)."""
    from fastbp import MLPClassifier

    controller = _blas._get_controller()
    calls = []
    real_limit = controller.limit

    def counting_limit(*args, **kwargs):
        calls.append(kwargs)
        return real_limit(*args, **kwargs)

    monkeypatch.setattr(controller, "limit", counting_limit)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 16)), rng.integers(0, 3, 60)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, batch_size=20, random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning at max_iter
        clf.fit(X, y)
    assert clf.n_iter_ == 5
    assert len(calls) == 1
    assert set(_blas_threads()) == {2}
