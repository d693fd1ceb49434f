"""How many of this process's CPUs other processes keep busy (layer L0; the standard library only).

The split mini-batch kernels' threaded twins run each batch's two halves on two threads that
meet at every batch.  With another process busy on the other CPU, the thread that waits for it
stalls every batch: ``MLPClassifier(hidden_layer_sizes=(32,)).fit`` on the digits took 0.692 s
on two threads against 0.219 s on one, with a busy loop on the other core of a 2-core Zen 3
(idle: 0.246 s against 0.274 s; ``python tools/busy_threads.py`` re-measures it).  The twins
give the same bits, so the choice between them decides speed only, and
:func:`fastbp._dispatch._threaded` makes it from :func:`others_busy`.

What it measures, not guesses: over a window of at least :data:`WINDOW_S` seconds between two
calls, the time the CPUs in this process's affinity mask spent busy (``/proc/stat``, CPU by
CPU), less this process's own CPU time (``/proc/self/stat``: all its threads, OpenMP's waiting
workers included), divided by the window: the number of CPUs' worth of work other processes ran
there.  A call inside the window returns the last window's figure without reading anything, so
asking once per epoch costs a clock read.  Linux only: where ``/proc`` cannot be read,
:func:`others_busy` returns 0.0 (the choice made before this module existed).
"""

from __future__ import annotations

import os
import time

#: The shortest window over which the other processes' CPU time is measured, seconds: the
#: kernel counts CPU time in ticks of 1/CLK_TCK s (10 ms on Linux), so a window of 10 ticks
#: reads it to about 10 %.
WINDOW_S = 0.1

# /proc/stat's busy columns after the CPU's name: user, nice, system, (idle, iowait skipped),
# irq, softirq, steal (time the hypervisor gave to someone else: not ours to use either).
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)

_window_start: tuple[float, int, int] | None = None  # (monotonic s, busy ticks, own ticks)
_last: float = 0.0


def _cpu_ticks(cpus: frozenset[int] | None, path: str = "/proc/stat") -> int:
    """Busy ticks of ``cpus`` (None: all CPUs, the ``cpu`` line) since boot, from ``/proc/stat``."""
    busy = 0
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
                break
    return busy


def _own_ticks(path: str = "/proc/self/stat") -> int:
    """This process's user + system ticks (all its threads) from ``/proc/self/stat``."""
    with open(path, "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # utime, stime: the stat file's fields 14 and 15


def _mask() -> frozenset[int] | None:
    """The CPUs this process may run on, or None where that is all of them (or unknown)."""
    try:
        mask = frozenset(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None
    return None if len(mask) >= (os.cpu_count() or 0) else mask


def others_busy(now: float | None = None) -> float:
    """CPUs' worth of work other processes ran on this process's CPUs over the last complete
    window of at least :data:`WINDOW_S` seconds (0.0 before the first window ends, or where
    ``/proc`` cannot be read).  ``now``: the monotonic clock, for tests."""
    global _window_start, _last
    now = time.monotonic() if now is None else now
    if _window_start is not None and now - _window_start[0] < WINDOW_S:
        return _last
    try:
        busy, own = _cpu_ticks(_mask()), _own_ticks()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):  # no /proc (macOS, Windows) or an unexpected format
        return 0.0
    if _window_start is not None:
        then, busy0, own0 = _window_start
        _last = max(0.0, ((busy - busy0) - (own - own0)) / tick / (now - then))
    _window_start = (now, busy, own)
    return _last
