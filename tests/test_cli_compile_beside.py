"""``fastbp train``'s compile step with the prediction kernel compiled in a second process
(``fastbp._compile_beside.CompileBeside``): it fills the cache the prediction step then loads from, starts only
when the training step takes long enough to be a compile, and changes nothing when it fails."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest

import fastbp._compile_beside as beside_mod
import fastbp.cli as cli
from fastbp import kernels


def _args(*extra):
    return cli.build_parser().parse_args(["train", "--epochs", "1", "--hidden", "8", "--quiet", *extra])


@pytest.fixture
def started(monkeypatch):
    """Every CompileBeside made, with two CPUs assumed (this machine may have one)."""
    made = []

    class Recorded(beside_mod.CompileBeside):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(beside_mod, "CompileBeside", Recorded)
    monkeypatch.setattr(Recorded, "wanted", staticmethod(lambda: True))
    return made


#: (training, --batch-size, the helpers warmed, the kernel the training step compiles): fastbp train's
#: per-example default and a mini-batch run, both on the digits' 64-32-10 net.
TRAINING = [
    ("per-example", "1", "LATE_HELPERS", "_sgd_epoch_blocked_tiles"),
    ("mini-batch", "32", "LATE_COLUMN_HELPERS", "_columns_epoch_tiles"),
]


@pytest.mark.parametrize("training, batch_size, helpers, kernel", TRAINING)
def test_the_second_process_leaves_the_late_helpers_and_the_prediction_kernel_in_the_cache(
    training, batch_size, helpers, kernel, tmp_path
):
    """In a fresh process with an empty cache, the second process run to its end first: compiling the
    training kernel then compiles none of the helpers it warmed (their cache entries are the ones the
    kernel looks up), and the prediction step loads fastbp's prediction kernel from the cache: a hit,
    no miss."""
    code = textwrap.dedent(
        """
        import io, json, sys
        training, batch_size, helpers = sys.argv[1:]
        from numba.core import event
        import fastbp.cli as cli
        from fastbp._compile_beside import CompileBeside
        from fastbp._fast.rows import _predict_rows
        from fastbp._fast import warm
        from fastbp.datasets import load
        from fastbp.network import MLP
        assert CompileBeside.cold()
        args = cli.build_parser().parse_args(["train", "--hidden", "32", "--batch-size", batch_size])
        data = load("digits")
        net = MLP([64, 32, 10], activation=args.activation, output=args.output, seed=0)
        beside = CompileBeside(net, data, training)
        assert beside.wait(), "the second process failed"
        assert not CompileBeside.cold()  # it filled the cache
        compiled = []

        class Listener(event.Listener):
            def on_start(self, ev):
                compiled.append(ev.data["dispatcher"].py_func)

            def on_end(self, ev):
                pass

        event.register("numba:compile", Listener())
        CompileBeside.wanted = staticmethod(lambda: False)  # this process compiles the rest itself
        cli._compile(net, data, args, io.StringIO())
        warmed = {h.py_func for h in getattr(warm, helpers)}
        print(json.dumps({
            "compiled": [f.__name__ for f in compiled],
            "again": [f.__name__ for f in compiled if f in warmed],
            "hits": len(_predict_rows.stats.cache_hits),
            "misses": len(_predict_rows.stats.cache_misses),
        }))
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    argv = [sys.executable, "-c", code, training, batch_size, helpers]
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert kernel in result["compiled"], result  # the training kernel was compiled here
    assert result["again"] == [], result  # … and none of the helpers the second process warmed
    assert result["hits"] >= 1 and result["misses"] == 0, result


def test_a_training_step_loaded_from_the_cache_starts_no_second_process(monkeypatch, started):
    # (the tests' Numba cache is new whenever fastbp's sources change: cold or not, here it is warm)
    monkeypatch.setattr(beside_mod.CompileBeside, "cold", staticmethod(lambda: False))
    monkeypatch.setattr(kernels, "train_epoch", lambda *a, **k: None)  # over at once, as a cache load is
    assert cli.train(_args(), out=io.StringIO()) == 0
    assert len(started) == 1 and started[0].process is None


def test_a_failed_second_process_leaves_the_prediction_step_to_compile_as_before(monkeypatch, started):
    import time

    monkeypatch.setattr(beside_mod, "COMPILE_BESIDE_AFTER_S", 0.0)
    monkeypatch.setattr(beside_mod, "SCRIPT", "import sys; sys.exit(3)")
    train_epoch = kernels.train_epoch

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(kernels, "train_epoch", slow)
    out = io.StringIO()
    assert cli.train(_args(), out=out) == 0
    assert "test accuracy" in out.getvalue()
    (beside,) = started
    assert beside.process is not None and beside.process.returncode == 3
    assert beside.wait() is False


def test_no_second_process_where_this_process_has_one_cpu(monkeypatch):
    from fastbp import _dispatch

    monkeypatch.setattr(_dispatch, "_usable_cpus", lambda: 1)
    assert beside_mod.CompileBeside.wanted() is False
    monkeypatch.setattr(_dispatch, "_usable_cpus", lambda: 2)
    assert beside_mod.CompileBeside.wanted() is True


def test_a_second_process_past_its_time_is_stopped(monkeypatch, started):
    monkeypatch.setattr(beside_mod.CompileBeside, "cold", staticmethod(lambda: False))  # (no timer start)
    monkeypatch.setattr(beside_mod, "SCRIPT", "import time; time.sleep(60)")
    from fastbp.datasets import load
    from fastbp.network import MLP

    data = load("iris")
    beside = beside_mod.CompileBeside(MLP([4, 3, 3], seed=0), data)
    beside._start()
    assert beside.wait(timeout=0.5) is False
    assert beside.process.returncode is not None  # killed, not left running


def test_a_failed_training_step_stops_the_second_process(monkeypatch, started):
    import time

    monkeypatch.setattr(beside_mod, "COMPILE_BESIDE_AFTER_S", 0.0)
    monkeypatch.setattr(beside_mod, "SCRIPT", "import time; time.sleep(60)")

    def failing(*args, **kwargs):
        time.sleep(0.5)  # (the second process has started)
        raise RuntimeError("the training step failed")

    monkeypatch.setattr(kernels, "train_epoch", failing)
    with pytest.raises(RuntimeError, match="the training step failed"):
        cli.train(_args(), out=io.StringIO())
    (beside,) = started
    assert beside.process is not None and beside.process.poll() is not None  # killed, not left running


def test_no_second_process_without_a_python_executable_to_start(monkeypatch):
    from fastbp import _dispatch

    monkeypatch.setattr(_dispatch, "_usable_cpus", lambda: 2)
    monkeypatch.setattr(sys, "executable", "")
    assert beside_mod.CompileBeside.wanted() is False


def test_no_second_process_with_numba_disabled(monkeypatch):
    from numba import config

    from fastbp import _dispatch

    monkeypatch.setattr(_dispatch, "_usable_cpus", lambda: 2)
    monkeypatch.setattr(config, "DISABLE_JIT", True)
    assert beside_mod.CompileBeside.wanted() is False


def test_an_unknown_training_kind_is_refused():
    from fastbp.datasets import load
    from fastbp.network import MLP

    with pytest.raises(ValueError, match="training must be"):
        beside_mod.CompileBeside(MLP([4, 3, 3], seed=0), load("iris"), "per-batch")


def test_the_second_process_imports_what_this_one_does_not_the_current_directory(monkeypatch, tmp_path):
    """Started with ``-I`` and this process's ``sys.path``: a ``json.py`` in the current directory
    (which ``python -c`` would put first) is not imported, and fastbp is found where this one was."""
    from fastbp.datasets import load
    from fastbp.network import MLP

    (tmp_path / "json.py").write_text("raise SystemExit(7)\n")
    monkeypatch.chdir(tmp_path)
    head = beside_mod.SCRIPT.split("import numpy as np")[0]
    monkeypatch.setattr(
        beside_mod,
        "SCRIPT",
        head + "import fastbp\nassert fastbp.__file__ == %r\n" % cli.__file__.replace("cli.py", "__init__.py"),
    )
    monkeypatch.setattr(beside_mod.CompileBeside, "cold", staticmethod(lambda: False))
    beside = beside_mod.CompileBeside(MLP([4, 3, 3], seed=0), load("iris"))
    beside._start()
    assert beside.wait(timeout=60) is True


def test_closing_after_a_second_process_ran_begins_a_new_load_window(monkeypatch):
    """Its CPU time must not read as another process's load in the first epochs (which would then run
    the one-thread twin the compile step did not compile)."""
    from fastbp import _busy
    from fastbp.datasets import load
    from fastbp.network import MLP

    restarts = []
    monkeypatch.setattr(_busy, "restart", lambda: restarts.append(1))
    monkeypatch.setattr(beside_mod.CompileBeside, "cold", staticmethod(lambda: False))
    monkeypatch.setattr(beside_mod, "SCRIPT", "pass")
    quiet = beside_mod.CompileBeside(MLP([4, 3, 3], seed=0), load("iris"))
    quiet.close()  # none started: the window stays
    assert restarts == []
    ran = beside_mod.CompileBeside(MLP([4, 3, 3], seed=0), load("iris"))
    ran._start()
    first = ran.process
    ran._start()  # (a second call starts no second process)
    assert ran.process is first
    assert ran.wait(timeout=60) is True
    ran.close()
    assert restarts == [1]


def test_no_second_process_when_the_compile_line_cannot_be_written(monkeypatch, started):
    """``fastbp train | true``: the first print fails (broken pipe) before any process is started."""
    monkeypatch.setattr(beside_mod.CompileBeside, "cold", staticmethod(lambda: True))

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError

    from fastbp.datasets import load
    from fastbp.network import MLP

    args = cli.build_parser().parse_args(["train", "--epochs", "1"])
    with pytest.raises(BrokenPipeError):
        cli._compile(MLP([64, 32, 10], seed=0), load("digits"), args, ClosedPipe())
    assert started == []
