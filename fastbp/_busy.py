"""How busy this process's CPUs are with other processes' work (layer L0; the standard library only).

The split mini-batch kernels' threaded twins run each batch's two halves on two threads that
meet at every batch.  With another process busy on the other CPU, the thread that waits for it
stalls every batch: ``MLPClassifier(hidden_layer_sizes=(32,)).fit`` on the digits took 0.902 s
on two threads against 0.290 s on one, with a busy loop on the other core of a 2-core Zen 3
(idle: 0.196 s against 0.289 s; ``python tools/busy_threads.py`` re-measures it).  The twins
give the same bits, so the choice between them decides speed only, and
:func:`fastbp._dispatch._threaded` makes it from :func:`load`'s two figures, each over a window
of at least :data:`WINDOW_S` seconds between two calls:

* **others**: the time the CPUs in this process's affinity mask spent busy (``/proc/stat``, CPU
  by CPU: user, system, interrupts and steal; not ``nice``, which a process at the default
  priority takes back), less this process's own CPU time (``/proc/self/stat``: all its threads,
  OpenMP's waiting workers included), over the window: the CPUs' worth of work other processes
  *got*.  While fastbp's two threads run they take their share, so this reads less than the
  others want (2 hogs on 3 CPUs read 1.5 of them): it says when threads may start;
* **waiting**: the time this process's threads spent ready to run but waiting for a CPU
  (``/proc/self/task/*/schedstat``'s second field), over the window: it says when threads that
  are running are short of CPUs, whatever the machine's size.

A call inside the window returns the last window's figures without reading anything, so asking
once per epoch costs a clock read; a window's reads cost about 100 µs.  Linux only: where
``/proc`` cannot be read (or names other CPUs than the affinity mask, as lxcfs does), :func:`load`
returns (0.0, 0.0): the choice made before this module existed.  A cgroup's CPU quota
(``docker --cpus``) is not seen.
"""

from __future__ import annotations

import os
import threading
import time

#: The shortest window over which the figures are measured, seconds: the kernel counts CPU time
#: in ticks of 1/CLK_TCK s (10 ms on Linux), so a window of 10 ticks reads it to about 10 %.
WINDOW_S = 0.1

# /proc/stat's busy columns after the CPU's name: user, system, (idle, iowait skipped), irq,
# softirq, steal (time the hypervisor gave to someone else: not ours to use either).  Not nice
# (column 1): a niced process yields its CPU to one at the default priority.
_BUSY_COLUMNS = (0, 2, 5, 6, 7)


class _Window:
    """Where the current window began: (monotonic s, affinity mask, busy ticks, own ticks, wait ns)."""

    start: tuple[float, frozenset[int] | None, int, int, int] | None = None
    last: tuple[float, float] = (0.0, 0.0)


_window = _Window()
_lock = threading.Lock()


def _cpu_ticks(cpus: frozenset[int] | None, path: str = "/proc/stat") -> int:
    """Busy ticks of ``cpus`` (None: all CPUs, the ``cpu`` line) since boot, from ``/proc/stat``;
    ValueError if some CPU of ``cpus`` has no line there."""
    busy = 0
    found = set()
    with open(path, "rb") as f:
        for line in f:
            if not line.startswith(b"cpu"):
                break  # the cpu lines come first
            name, *fields = line.split()
            if cpus is None:
                if name != b"cpu":
                    break
            elif name == b"cpu" or int(name[3:]) not in cpus:
                continue
            busy += sum(int(fields[i]) for i in _BUSY_COLUMNS if i < len(fields))
            if cpus is None:
                return busy
            found.add(int(name[3:]))
    if cpus is None or found != cpus:
        raise ValueError(f"{path} does not list every CPU of the affinity mask")
    return busy


def _own_ticks(path: str = "/proc/self/stat") -> int:
    """This process's user + system ticks (all its threads) from ``/proc/self/stat``."""
    with open(path, "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # utime, stime: the stat file's fields 14 and 15


def _own_wait_ns(tasks: str = "/proc/self/task") -> int:
    """Nanoseconds this process's threads have spent runnable, waiting for a CPU (each thread's
    ``schedstat``: time on a CPU, time waiting, timeslices).  A thread that ends between the
    listing and the read is skipped."""
    total = 0
    for tid in os.listdir(tasks):
        try:
            with open(f"{tasks}/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _mask() -> frozenset[int] | None:
    """The CPUs this process may run on, or None where that is all of them (or unknown)."""
    try:
        mask = frozenset(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None
    return None if len(mask) >= (os.cpu_count() or 0) else mask


def load(now: float | None = None) -> tuple[float, float]:
    """``(others, waiting)`` over the last complete window of at least :data:`WINDOW_S` seconds:
    the CPUs' worth of work other processes ran on this process's CPUs, and of this process's
    threads' waiting for a CPU.  (0.0, 0.0) before the first window ends, where ``/proc`` cannot be
    read, or while another thread is measuring.  ``now``: the monotonic clock, for tests."""
    now = time.monotonic() if now is None else now
    start = _window.start
    if start is not None and now - start[0] < WINDOW_S:
        return _window.last
    if not _lock.acquire(blocking=False):  # another thread is reading /proc: its figures will do
        return _window.last
    try:
        mask = _mask()
        busy, own, wait = _cpu_ticks(mask), _own_ticks(), _own_wait_ns()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc or os.sysconf, lxcfs, another format
        _lock.release()
        return 0.0, 0.0
    try:
        start = _window.start
        if start is not None and start[1] == mask and now > start[0]:
            seconds = now - start[0]
            others = ((busy - start[2]) - (own - start[3])) / tick / seconds
            waiting = (wait - start[4]) / 1e9 / seconds
            cpus = len(mask) if mask is not None else (os.cpu_count() or 1)
            _window.last = (min(max(others, 0.0), float(cpus)), max(waiting, 0.0))
        _window.start = (now, mask, busy, own, wait)  # a changed mask begins a new window
        return _window.last
    finally:
        _lock.release()


def restart() -> None:
    """Forget the last window's figures and begin a new window now: a burst of other work that is
    known to be over (``fastbp train``'s second compile process, :mod:`fastbp._compile_beside`)
    must not count against the threads of the first epochs after it."""
    with _lock:
        _window.start = None
        _window.last = (0.0, 0.0)
    load()


def _forget_in_child() -> None:
    """A forked child's own CPU time and threads start again from nothing: a window of its own
    (and a lock of its own: a thread of the parent may have held it at the fork)."""
    global _lock
    _lock = threading.Lock()
    _window.start = None
    _window.last = (0.0, 0.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)

# The first window begins at import, so that a fit's first epochs (after the data are read and the
# kernels compiled or loaded, seconds or tenths of one) already see the machine as it is.
load()
