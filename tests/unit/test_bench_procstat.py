"""The benchmark's /proc accounting: where the pool processes' time went in a window, the
pool processes found under a worker, and listening pids looked up once."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from conveyor.bench import procstat
from conveyor.bench.procstat import Listener, Sampler, pool_children, read_schedstat


def test_pool_window_splits_each_process_time_into_busy_runqueue_and_idle() -> None:
    sampler = Sampler({})
    # (time, seconds on a core, seconds runnable) per process, cumulative
    sampler.pool_series = {
        1: [(100.0, 0.0, 0.0), (110.0, 6.0, 3.0)],   # busy 60 %, runqueue 30 %, idle 10 %
        2: [(100.0, 0.0, 0.0), (110.0, 10.0, 0.0)],  # busy all the time
    }
    used = sampler.pool_window(100.0, 110.0)
    assert used is not None
    assert used.processes == 2
    assert used.wall_s == pytest.approx(20.0)
    assert used.busy_s == pytest.approx(16.0)
    assert used.runqueue_s == pytest.approx(3.0)
    assert used.idle_s == pytest.approx(1.0)
    shares = used.to_json()
    assert shares["busy_share"] == 0.8 and shares["runqueue_share"] == 0.15
    assert shares["idle_share"] == 0.05


def test_pool_window_interpolates_and_counts_a_process_only_while_it_was_sampled() -> None:
    sampler = Sampler({})
    sampler.pool_series = {
        1: [(100.0, 0.0, 0.0), (104.0, 4.0, 0.0)],  # replaced at 104 ...
        2: [(104.0, 0.0, 0.0), (108.0, 2.0, 2.0)],  # ... by this one
        3: [(90.0, 0.0, 0.0), (95.0, 5.0, 0.0)],    # before the window: not counted
    }
    used = sampler.pool_window(102.0, 108.0)
    assert used is not None
    assert used.processes == 2
    assert used.wall_s == pytest.approx(6.0)
    assert used.busy_s == pytest.approx(2.0 + 2.0)
    assert used.runqueue_s == pytest.approx(2.0)
    assert used.idle_s == pytest.approx(0.0)


def test_pool_window_without_samples_is_none() -> None:
    assert Sampler({}).pool_window(0.0, 1.0) is None


def test_listener_looks_the_pid_up_once_while_the_process_lives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [os.getpid(), 2**22 + 12345]
    calls: list[int] = []

    def lookup(port: int) -> int | None:
        calls.append(port)
        return answers[min(len(calls) - 1, len(answers) - 1)]

    monkeypatch.setattr(procstat, "listening_pid", lookup)
    listener = Listener(5432)
    assert [listener() for _ in range(5)] == [[os.getpid()]] * 5
    assert calls == [5432]
    listener._pid = 2**22 + 99999  # the listener went away: looked up again
    assert listener() == [2**22 + 12345]
    assert calls == [5432, 5432]


def _wait(started: object, event: object) -> None:
    started.set()  # type: ignore[attr-defined]
    event.wait(30)  # type: ignore[attr-defined]


def test_pool_children_finds_spawned_processes_and_their_scheduler_counters() -> None:
    ctx = multiprocessing.get_context("spawn")
    started, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_wait, args=(started, done), daemon=True)
    child.start()
    try:
        assert child.pid is not None
        # Once it ran some code: a child not scheduled yet has no CPU time (a busy
        # machine can leave a process that was just started waiting for a core).
        assert started.wait(30)
        found = pool_children([os.getpid()])
        assert child.pid in found
        counters = read_schedstat(child.pid)
        assert counters is not None and counters[0] > 0
        assert pool_children([]) == []
    finally:
        done.set()
        child.join(10)


def test_the_sampler_keeps_looking_until_every_worker_pool_is_found(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers: the second one's pool starts a moment after the first one's. The
    sampler looks again at every sample until it has both (not only every rescan_s)."""
    started: dict[int, list[int]] = {101: [1011]}  # worker 202's pool is not there yet
    scans: list[float] = []

    def children(roots: object) -> list[int]:
        scans.append(len(scans))
        return [c for r in sorted(started) for c in started[r]]

    monkeypatch.setattr(procstat, "pool_children", children)
    monkeypatch.setattr(procstat, "pool_parents",
                        lambda pids: {p // 10 for p in pids})
    monkeypatch.setattr(procstat, "read_schedstat", lambda pid: (1, 1, 1))
    sampler = Sampler({}, pool=lambda: [101, 202])
    sampler.rescan_s = 60.0
    sampler._sample_pool(0.0)
    sampler._sample_pool(0.1)
    started[202] = [2021]
    sampler._sample_pool(0.2)  # found at the next sample, not a minute later
    sampler._sample_pool(0.3)  # both found: no walk until rescan_s
    assert len(scans) == 3
    assert sorted(sampler.pool_series) == [1011, 2021]


def test_a_process_sampled_as_it_starts_gets_its_share_of_a_short_window() -> None:
    """The benchmark samples as it starts processes, and a window's CPU asked for before
    the sampler's next tick samples first: a window that begins and ends between two
    ticks still counts a process started just before it."""
    burn = ("import time\nend = time.process_time() + 0.3\n"
            "while time.process_time() < end:\n    pass\nprint('done', flush=True)\n"
            "time.sleep(30)\n")
    sampler = Sampler({}, interval_s=60.0).start()  # its own ticks: none during the test
    child = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE, text=True)
    try:
        sampler.set_group("late", lambda: [child.pid])
        sampler.sample_now()  # as Bench.start does
        start = time.time()
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        end = time.time()
        used = sampler.cpu_window(start, end)  # no sample after the window yet: it takes one
        assert used["late"] == pytest.approx(0.3, abs=0.1)
    finally:
        child.kill()
        child.communicate()
        sampler.stop()
