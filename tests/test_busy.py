"""fastbp._busy measures other processes' CPU time on this process's CPUs, and the defaults leave the
threaded twins when that leaves too few CPUs free (fastbp._dispatch.THREADS_MIN_FREE_CPUS)."""

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
    monkeypatch.setattr(_busy, "_window_start", None)
    monkeypatch.setattr(_busy, "_last", 0.0)


def test_cpu_ticks_add_the_busy_columns_of_the_cpus_asked_for(tmp_path):
    path = tmp_path / "stat"
    path.write_text(PROC_STAT)
    busy = {0: 10 + 2 + 1, 1: 20 + 1 + 4 + 1 + 1 + 1, 2: 30 + 6 + 1 + 1 + 1, 3: 40 + 8 + 1 + 1}  # idle, iowait left out
    assert _busy._cpu_ticks(None, str(path)) == 100 + 1 + 20 + 2 + 3 + 4
    assert _busy._cpu_ticks(frozenset({1, 3}), str(path)) == busy[1] + busy[3]
    assert _busy._cpu_ticks(frozenset({0}), str(path)) == busy[0]


def test_own_ticks_read_utime_and_stime_after_the_command_name(tmp_path):
    path = tmp_path / "stat"
    path.write_text(PROC_SELF)
    assert _busy._own_ticks(str(path)) == 75


def test_others_busy_is_the_cpu_time_of_others_over_the_last_window(monkeypatch, fresh_window):
    busy = [1000, 1150, 1160, 1200]  # the CPUs' busy ticks at each read
    own = [10, 60, 60, 100]  # this process's
    monkeypatch.setattr(_busy, "_cpu_ticks", lambda cpus: busy.pop(0))
    monkeypatch.setattr(_busy, "_own_ticks", lambda: own.pop(0))
    monkeypatch.setattr(os, "sysconf", lambda name: 100)  # ticks per second
    assert _busy.others_busy(now=10.0) == 0.0  # the first call begins a window
    assert _busy.others_busy(now=11.0) == pytest.approx((150 - 50) / 100 / 1.0)  # others ran 1 CPU for 1 s
    assert _busy.others_busy(now=11.0 + _busy.WINDOW_S / 2) == pytest.approx(1.0)  # inside the window: kept,
    assert len(busy) == 2  # nothing read
    assert _busy.others_busy(now=11.5) == pytest.approx(0.2)  # 10 busy ticks, none of them ours, in 0.5 s
    assert _busy.others_busy(now=12.5) == 0.0  # ours alone (40 of 40 ticks), and never below zero


def test_others_busy_is_zero_where_proc_cannot_be_read(monkeypatch, fresh_window):
    def missing(*args):
        raise OSError("no /proc here")

    monkeypatch.setattr(_busy, "_cpu_ticks", missing)
    assert _busy.others_busy(now=1.0) == 0.0
    assert _busy.others_busy(now=2.0) == 0.0


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only")
def test_others_busy_reads_this_machine(fresh_window):
    assert _busy.others_busy() == 0.0
    assert 0.0 <= _busy.others_busy(now=_busy._window_start[0] + 1.0) <= os.cpu_count()


@pytest.mark.parametrize("cpus, others, threaded", [(2, 0.0, True), (2, 0.4, True), (2, 1.0, False), (4, 2.0, True)])
def test_the_defaults_leave_the_threaded_twins_when_others_keep_the_cpus_busy(monkeypatch, cpus, others, threaded):
    monkeypatch.setenv("FASTBP_BUSY_CHECK", "1")
    monkeypatch.setattr(_dispatch, "_num_threads", lambda: 2)
    monkeypatch.setattr(_dispatch, "_usable_cpus", lambda: cpus)
    monkeypatch.setattr(_dispatch, "_threadsafe_layer", lambda: True)
    monkeypatch.setattr(_busy, "others_busy", lambda: others)
    assert (cpus - others >= _dispatch.THREADS_MIN_FREE_CPUS) == threaded
    assert _dispatch._threaded(None) is threaded
    assert _dispatch._threaded(True) is True  # asked for: always
    monkeypatch.setenv("FASTBP_BUSY_CHECK", "0")
    assert _dispatch._threaded(None) is True  # the check turned off
