"""fastbp._busy measures other processes' CPU time on this process's CPUs and its own threads' waiting
for a CPU, and the defaults leave the threaded twins when either says the CPUs are short
(fastbp._dispatch.THREADS_MIN_FREE_CPUS, THREADS_MAX_WAITING)."""

from __future__ import annotations

import os

import pytest

from fastbp import _busy, _dispatch

# A /proc/stat of 4 CPUs: user nice system idle iowait irq softirq steal guest guest_nice
PROC_STAT = """cpu  100 1 20 900 5 2 3 4 0 0
cpu0 10 0 2 100 1 0 0 1 0 0
cpu1 20 1 4 200 1 1 1 1 0 0
cpu2 30 0 6 300 1 1 1 1 0 0
cpu3 40 0 8 300 2 0 1 1 0 0
intr 123 0 0
ctxt 456
"""

# /proc/self/stat: the command name in parentheses may hold spaces and ')'; utime 70, stime 5
PROC_SELF = "1234 (python (a) b) R 1 2 3 4 5 6 7 8 9 10 70 5 0 0 20 0 3 0 100 200 300"


@pytest.fixture
def fresh_window(monkeypatch):
    """No window begun, nothing measured yet."""
    monkeypatch.setattr(_busy._window, "start", None)
    monkeypatch.setattr(_busy._window, "last", (0.0, 0.0))


def test_cpu_ticks_add_the_busy_columns_of_the_cpus_asked_for(tmp_path):
    path = tmp_path / "stat"
    path.write_text(PROC_STAT)
    busy = {0: 10 + 2 + 1, 1: 20 + 4 + 1 + 1 + 1, 2: 30 + 6 + 1 + 1 + 1, 3: 40 + 8 + 1 + 1}  # no nice, idle, iowait
    assert _busy._cpu_ticks(None, str(path)) == 100 + 20 + 2 + 3 + 4
    assert _busy._cpu_ticks(frozenset({1, 3}), str(path)) == busy[1] + busy[3]
    assert _busy._cpu_ticks(frozenset({0}), str(path)) == busy[0]
    with pytest.raises(ValueError, match="every CPU"):  # lxcfs lists its own CPU numbers
        _busy._cpu_ticks(frozenset({0, 9}), str(path))


def test_own_ticks_read_utime_and_stime_after_the_command_name(tmp_path):
    path = tmp_path / "stat"
    path.write_text(PROC_SELF)
    assert _busy._own_ticks(str(path)) == 75


def test_own_wait_adds_every_threads_waiting_time(tmp_path):
    for tid, line in (("11", "500 7000 3\n"), ("12", "900 30 8\n")):
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "schedstat").write_text(line)
    (tmp_path / "13").mkdir()  # a thread that ended before its file was read
    assert _busy._own_wait_ns(str(tmp_path)) == 7030


def test_load_is_the_others_cpu_time_and_our_waiting_over_the_last_window(monkeypatch, fresh_window):
    busy = [1000, 1150, 1160, 1200, 1300]  # the CPUs' busy ticks at each read
    own = [10, 60, 60, 100, 100]  # this process's
    wait = [0, 2 * 10**8, 2 * 10**8, 2 * 10**8, 2 * 10**8]  # its threads' waiting, ns
    masks = [None, None, None, None, frozenset({0})]
    monkeypatch.setattr(_busy, "_cpu_ticks", lambda cpus: busy.pop(0))
    monkeypatch.setattr(_busy, "_own_ticks", lambda: own.pop(0))
    monkeypatch.setattr(_busy, "_own_wait_ns", lambda: wait.pop(0))
    monkeypatch.setattr(_busy, "_mask", lambda: masks.pop(0))
    monkeypatch.setattr(os, "sysconf", lambda name: 100)  # ticks per second
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _busy.load(now=10.0) == (0.0, 0.0)  # the first call begins a window
    assert _busy.load(now=11.0) == pytest.approx(((150 - 50) / 100 / 1.0, 0.2))  # others ran 1 CPU for 1 s
    assert _busy.load(now=11.0 + _busy.WINDOW_S / 2) == pytest.approx((1.0, 0.2))  # inside the window: kept,
    assert len(busy) == 3  # nothing read
    assert _busy.load(now=11.5) == pytest.approx((0.2, 0.0))  # 10 busy ticks, none of them ours, in 0.5 s
    assert _busy.load(now=12.5) == (0.0, 0.0)  # ours alone (40 of 40 ticks), and never below zero
    assert _busy.load(now=13.5) == (0.0, 0.0)  # another mask: a new window, the last figures meanwhile
    assert _busy._window.start[1] == frozenset({0})


def _two_cpus_busy(monkeypatch, busy: list[int]) -> None:
    """/proc as read on 2 CPUs at 100 ticks a second: the CPUs' busy ticks ``busy`` at each read, none
    of them this process's, no waiting."""
    monkeypatch.setattr(_busy, "_cpu_ticks", lambda cpus: busy.pop(0))
    monkeypatch.setattr(_busy, "_own_ticks", lambda: 0)
    monkeypatch.setattr(_busy, "_own_wait_ns", lambda: 0)
    monkeypatch.setattr(_busy, "_mask", lambda: None)
    monkeypatch.setattr(os, "sysconf", lambda name: 100)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


def test_load_never_reads_more_than_every_cpu(monkeypatch, fresh_window):
    _two_cpus_busy(monkeypatch, [0, 1000])  # 10 s of two CPUs' ticks in 1 s: a counter that jumped
    _busy.load(now=1.0)
    assert _busy.load(now=2.0) == (2.0, 0.0)


def test_a_forked_childs_window_starts_afresh(fresh_window):
    _busy._window.start = (1.0, None, 5, 5, 5)
    _busy._window.last = (1.0, 0.5)
    _busy._forget_in_child()
    assert _busy._window.start is None and _busy._window.last == (0.0, 0.0)
    assert _busy._lock.acquire(blocking=False)
    _busy._lock.release()


def test_restart_forgets_the_last_figures_and_begins_a_window_now(monkeypatch, fresh_window):
    _two_cpus_busy(monkeypatch, [1000, 1100, 1100, 1100])  # others ran a whole CPU in the first window, no more
    clock = iter([1.0, 2.0])
    monkeypatch.setattr(_busy.time, "monotonic", lambda: next(clock))
    _busy.load()
    assert _busy.load() == (1.0, 0.0)
    monkeypatch.setattr(_busy.time, "monotonic", lambda: 2.01)
    _busy.restart()
    assert _busy._window.start[0] == 2.01 and _busy.load() == (0.0, 0.0)  # not the last window's 1.0


def test_load_is_zero_where_proc_cannot_be_read(monkeypatch, fresh_window):
    def missing(*args):
        raise OSError("no /proc here")

    monkeypatch.setattr(_busy, "_cpu_ticks", missing)
    assert _busy.load(now=1.0) == (0.0, 0.0)
    assert _busy.load(now=2.0) == (0.0, 0.0)
    monkeypatch.setattr(_busy, "_cpu_ticks", lambda cpus: 0)
    monkeypatch.delattr(os, "sysconf")  # Windows has no os.sysconf; this runs at `import fastbp`
    assert _busy.load(now=3.0) == (0.0, 0.0)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="Linux only")
def test_load_reads_this_machine(fresh_window):
    assert _busy.load() == (0.0, 0.0)
    others, waiting = _busy.load(now=_busy._window.start[0] + 1.0)
    assert 0.0 <= others <= os.cpu_count() and waiting >= 0.0


@pytest.mark.parametrize(
    "cpus, others, waiting, threaded",
    [(2, 0.0, 0.0, True), (2, 0.4, 0.1, True), (2, 1.0, 0.0, False), (4, 2.0, 0.0, True), (4, 1.5, 0.5, False)],
)
def test_the_defaults_leave_the_threaded_twins_when_the_cpus_are_short(monkeypatch, cpus, others, waiting, threaded):
    monkeypatch.setenv("FASTBP_BUSY_CHECK", "1")
    monkeypatch.setattr(_dispatch, "_num_threads", lambda: 2)
    monkeypatch.setattr(_dispatch, "_usable_cpus", lambda: cpus)
    monkeypatch.setattr(_dispatch, "_threadsafe_layer", lambda: True)
    monkeypatch.setattr(_busy, "load", lambda: (others, waiting))
    free_enough = cpus - others >= _dispatch.THREADS_MIN_FREE_CPUS
    assert (free_enough and waiting < _dispatch.THREADS_MAX_WAITING) == threaded
    assert _dispatch._threaded(None) is threaded
    assert _dispatch._threaded(True) is True  # asked for: always
    for off in ("0", "false", "OFF", "no"):
        monkeypatch.setenv("FASTBP_BUSY_CHECK", off)
        assert _dispatch._threaded(None) is True  # the check turned off
