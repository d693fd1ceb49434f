"""``fastbp train``'s compile step on two cores: :class:`CompileBeside` compiles, in a second Python
process and into the same Numba cache, what the command's first process would compile later (the
training kernel's last helpers, then the prediction kernels), while that process compiles the
training kernel.  docs/performance.md, "The whole command", has the measurements."""

from __future__ import annotations

import os
import sys

#: Seconds the training kernel's step may run before the prediction kernel's compile starts beside it,
#: in a second process (:class:`CompileBeside`): loading a kernel from Numba's cache took 0.3-0.45 s on
#: this project's Zen 3, compiling one 1.8-10 s.
COMPILE_BESIDE_AFTER_S = 1.5

#: The second process's script: the helpers the training kernel compiles last, for per-example
#: training (:func:`fastbp._fast.warm.compile_late_helpers`) or mini-batches
#: (:func:`fastbp._fast.warm.compile_late_column_helpers`); then the prediction kernels of ``spec``'s
#: network compiled into (or loaded from) Numba's cache, through the calls ``fastbp train`` scores
#: with, on zeros of the scored sets' shapes (the rows decide the kernel, the values do not).
SCRIPT = r"""
import json, sys
spec = json.loads(sys.argv[1])
sys.path[:] = spec["path"]  # the first process's, exactly (started with -I: nothing else was read)
import numpy as np
from fastbp.cli import _score
from fastbp.losses import get_output
from fastbp.network import MLP
from fastbp._fast import warm
sizes, out = spec["sizes"], get_output(spec["output"])
net = MLP(sizes, activation=spec["activation"], output=spec["output"], dtype=np.dtype(spec["dtype"]))
if spec["training"] == "per-example":
    warm.compile_late_helpers(net.dtype, net.activation.code, out)
elif spec["training"] == "mini-batch":
    warm.compile_late_column_helpers(sizes[0], sizes[1], sizes[-1], net.dtype, net.activation.code, out)
for rows, x_dtype in spec["sets"]:
    _score(net, np.zeros((rows, spec["sizes"][0]), x_dtype), np.zeros(rows), spec["task"], "numba")
"""


class CompileBeside:
    """The prediction kernel, and the training kernel's last helpers, compiled in a second process
    while this one compiles the training kernel.

    Numba compiles on one thread; a cold ``fastbp train`` spent 9.5 s on the training kernel and then
    1.4-1.6 s on the prediction kernel, one after the other, with the second core idle.  Where this
    process may run on two or more CPUs, a second Python process compiles into the same Numba cache:
    first the helpers the training kernel compiles last (``training``: ``"per-example"`` or
    ``"mini-batch"``; ``None``: none), from the last one back, so that the two processes meet in the
    middle and this one loads the rest from the cache (:mod:`fastbp._fast.warm`); then the
    prediction kernels.  It starts at once where the cache holds no fastbp kernel yet
    (:meth:`cold`), else once the training step has run :data:`COMPILE_BESIDE_AFTER_S` (a step
    that ends sooner loaded its kernel from the cache, and so will the prediction step: no process
    is started; the prediction step then usually finds its kernels there too, unless the scored sets
    take other kernels than the cached ones).  The prediction step then waits for it and loads its
    kernels from the cache; if it failed (or cannot start), the step compiles them itself, as
    without it."""

    def __init__(self, net, data, training: str | None = None):
        import json
        import threading

        if training not in (None, "per-example", "mini-batch"):
            raise ValueError(f"training must be 'per-example', 'mini-batch' or None, got {training!r}")
        spec = {
            "path": list(sys.path),
            "sizes": [int(n) for n in net.layer_sizes],
            "activation": net.activation.name,
            "output": net.output,
            "dtype": net.dtype.name,
            "task": data.task,
            "sets": [[len(X), X.dtype.str] for X in (data.X_test, data.X_train)],
            "training": training,  # "per-example", "mini-batch" (or full batch), None: no helpers
        }
        # -I: neither the current directory nor PYTHONPATH nor the user's site directory is put on the
        # second process's path before SCRIPT sets it to this one's (so it imports the same modules)
        self._argv = [sys.executable, "-I", "-c", SCRIPT, json.dumps(spec)]
        self._lock = threading.Lock()
        self._closed = False
        self.process = None
        self._timer = threading.Timer(0.0 if self.cold() else COMPILE_BESIDE_AFTER_S, self._start)
        self._timer.daemon = True
        self._timer.start()

    @staticmethod
    def wanted() -> bool:
        """Whether a second process can run beside this one: something to compile (not
        ``NUMBA_DISABLE_JIT=1``), two or more usable CPUs, and a Python executable to start
        (``sys.executable`` is empty in some embedded interpreters, and is the application itself in
        a frozen one)."""
        from numba import config

        from ._dispatch import _usable_cpus

        frozen = getattr(sys, "frozen", False)  # (a bundled application's executable is not Python)
        return not config.DISABLE_JIT and bool(sys.executable) and not frozen and _usable_cpus() > 1

    @staticmethod
    def cold() -> bool:
        """Whether Numba's cache holds no fastbp kernel yet (no index file of
        :func:`fastbp.activations.activate_loop`, which every fast training kernel calls): then the
        training step will compile, and the second process starts at once.  ``False`` where Numba's
        cache cannot be looked at, and in a cache that holds entries of other sources of the package
        only (``fastbp._jit.sources_digest``: an edited working tree), where the second process then
        waits for the step's time."""
        from .activations import activate_loop

        try:
            return not os.path.exists(activate_loop._cache._cache_file._index_path)
        except AttributeError:  # another Numba's cache layout: wait for the step's time instead
            return False

    def _start(self) -> None:
        import subprocess

        with self._lock:
            if self._closed or self.process is not None:
                return
            try:
                self.process = subprocess.Popen(
                    self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            except OSError:
                self.process = None

    def stop_waiting_to_start(self) -> None:
        """The training step is over: no process starts after this."""
        with self._lock:
            self._closed = True
        self._timer.cancel()

    def close(self) -> None:
        """Start nothing more, stop the second process if it still runs (the compile step failed or
        was interrupted before the prediction step waited for it), and, if one ran, begin a new
        window of :func:`fastbp._busy.load`: its CPU time would otherwise read as another process's
        load in the first epochs, which would then run the one-thread twin of a kernel whose threaded
        twin the compile step compiled (and compile it mid-training)."""
        from . import _busy

        self.stop_waiting_to_start()
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        _busy.restart()

    def wait(self, timeout: float = 300.0) -> bool:
        """Wait for the second process, if one started; whether it compiled the kernels."""
        self.stop_waiting_to_start()
        if self.process is None:
            return False
        import subprocess

        try:
            return self.process.wait(timeout) == 0
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False
