"""CPU seconds and memory of process groups, read from ``/proc`` (Linux only).

A *group* is a named set of root pids; its figures are the sum over every live process
in those roots' trees, plus the CPU of children they already reaped (``cutime``/
``cstime``), so a pool child that was replaced still counts. A :class:`Sampler` thread
records each group's CPU and RSS a few times a second, so any time window of a run can be
charged its CPU afterwards (by interpolation), and memory growth can be read as a series.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One process's counters: own and reaped children's CPU seconds, resident bytes."""

    pid: int
    ppid: int
    cpu_s: float
    children_cpu_s: float
    rss_bytes: int


def read_proc(pid: int) -> ProcSample | None:
    """The counters of ``pid``, or None when it is gone (or ``/proc`` is unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rfind(b")") + 2:].split()  # the command name may hold spaces and ')'
    try:
        return ProcSample(
            pid=pid,
            ppid=int(rest[1]),
            cpu_s=(int(rest[11]) + int(rest[12])) / CLK_TCK,
            children_cpu_s=(int(rest[13]) + int(rest[14])) / CLK_TCK,
            rss_bytes=int(rest[21]) * PAGE_BYTES,
        )
    except (IndexError, ValueError):
        return None


def all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def process_tree(roots: Iterable[int]) -> dict[int, ProcSample]:
    """Every live process under (and including) ``roots``."""
    roots = [r for r in roots if r > 0]
    if not roots:
        return {}
    samples = {s.pid: s for s in map(read_proc, all_pids()) if s is not None}
    children: dict[int, list[int]] = {}
    for s in samples.values():
        children.setdefault(s.ppid, []).append(s.pid)
    found: dict[int, ProcSample] = {}
    stack = [r for r in roots if r in samples]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found[pid] = samples[pid]
        stack.extend(children.get(pid, ()))
    return found


@dataclass(frozen=True, slots=True)
class GroupSample:
    cpu_s: float
    rss_bytes: int
    processes: int


def sample_group(roots: Iterable[int]) -> GroupSample:
    tree = process_tree(roots)
    return GroupSample(
        cpu_s=sum(s.cpu_s + s.children_cpu_s for s in tree.values()),
        rss_bytes=sum(s.rss_bytes for s in tree.values()),
        processes=len(tree),
    )


def self_cpu_s() -> float:
    """CPU seconds of this process (all its threads), without its children."""
    t = os.times()
    return t.user + t.system


def machine_busy_s() -> float | None:
    """CPU seconds every core of the machine spent busy (not idle, not waiting for I/O)
    since boot, from ``/proc/stat``; with our own groups it tells the load of others."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def read_schedstat(pid: int) -> tuple[float, float] | None:
    """Seconds the main thread of ``pid`` has run on a core, and has waited runnable for
    one (``/proc/<pid>/schedstat``); None when it is gone or the kernel does not say."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            run_ns, wait_ns = f.read().split()[:2]
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return None


def pool_children(roots: Iterable[int]) -> list[int]:
    """The direct children of ``roots`` that ``multiprocessing`` started with ``spawn``
    (a worker's process pool), without its resource tracker."""
    parents = {r for r in roots if r > 0}
    if not parents:
        return []
    found = []
    for pid in all_pids():
        s = read_proc(pid)
        if s is None or s.ppid not in parents:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"multiprocessing.spawn" in cmdline and b"resource_tracker" not in cmdline:
            found.append(pid)
    return found


def pool_parents(children: Iterable[int]) -> set[int]:
    """The processes whose pool ``children`` are (those still running)."""
    return {s.ppid for s in map(read_proc, children) if s is not None}


POOL_SEARCH_S = 10.0
"""How long the sampler looks for every root's pool at each sample before falling back to
a rescan every ``rescan_s`` (a root may have no pool at all)."""


@dataclass(frozen=True, slots=True)
class PoolTime:
    """Where the time of a worker's pool processes went in a window, in process-seconds.

    ``busy_s`` on a core, ``runqueue_s`` runnable but waiting for a core (other processes
    had them), ``idle_s`` neither: waiting for a call (the worker did not feed it)."""

    processes: int
    wall_s: float
    busy_s: float
    runqueue_s: float
    idle_s: float

    def to_json(self) -> dict[str, Any]:
        total = max(self.wall_s, 1e-9)
        return {
            "processes": self.processes,
            "busy_s": round(self.busy_s, 3), "runqueue_s": round(self.runqueue_s, 3),
            "idle_s": round(self.idle_s, 3),
            "busy_share": round(self.busy_s / total, 3),
            "runqueue_share": round(self.runqueue_s / total, 3),
            "idle_share": round(self.idle_s / total, 3),
        }


MACHINE = "machine"
"""The special group name whose series is the whole machine's busy CPU."""


def listening_pid(port: int) -> int | None:
    """The process that owns the listening TCP socket on ``port`` (the topmost one when
    several share it), or None when it cannot be found (another user's, no ``/proc``)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9 and parts[3] == "0A" and \
                            int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except OSError:
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    owners: list[int] = []
    for pid in all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    owners.append(pid)
                    break
            except OSError:
                continue
    if not owners:
        return None
    owner_set = set(owners)
    for pid in sorted(owners):
        s = read_proc(pid)
        if s is None or s.ppid not in owner_set:
            return pid
    return min(owners)


class Listener:
    """The roots of a group found by its listening port: :func:`listening_pid` walks every
    open file of every process (milliseconds of the benchmark's own CPU, taken from the
    system it measures), so the pid is looked up once and again only once it is gone."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._pid: int | None = None

    def __call__(self) -> list[int]:
        if self._pid is None or not os.path.exists(f"/proc/{self._pid}"):
            self._pid = listening_pid(self.port)
        return [self._pid] if self._pid else []


@dataclass
class Series:
    """A group's samples over time: wall-clock seconds, cumulative CPU seconds, RSS."""

    t: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rss_bytes: list[int] = field(default_factory=list)

    def cpu_at(self, when: float) -> float | None:
        """Cumulative CPU at ``when``, interpolated between the samples around it."""
        if not self.t:
            return None
        i = bisect.bisect_left(self.t, when)
        if i <= 0:
            return self.cpu_s[0]
        if i >= len(self.t):
            return self.cpu_s[-1]
        t0, t1 = self.t[i - 1], self.t[i]
        c0, c1 = self.cpu_s[i - 1], self.cpu_s[i]
        return c0 if t1 <= t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def cpu_between(self, start: float, end: float) -> float | None:
        a, b = self.cpu_at(start), self.cpu_at(end)
        return None if a is None or b is None else max(0.0, b - a)

    def rss_between(self, start: float, end: float) -> list[int]:
        return [r for t, r in zip(self.t, self.rss_bytes, strict=True) if start <= t <= end]


RootsFn = Callable[[], list[int]]


class Sampler:
    """Samples named groups every ``interval_s`` in a daemon thread.

    ``groups`` maps a name to a function returning the group's current root pids (a
    server restarted between phases gets a new pid). The special name ``generator`` is
    this process. Use as a context manager, or ``start``/``stop``.

    ``pool`` (optional) returns the pids of the process whose pool processes are to be
    followed: each sample then also reads their scheduler counters, so
    :meth:`pool_window` tells how much of a window they ran, waited for a core, or idled.
    """

    def __init__(self, groups: dict[str, RootsFn], interval_s: float = 0.2,
                 pool: RootsFn | None = None) -> None:
        self._groups = dict(groups)
        self._pool = pool
        self._pool_pids: tuple[tuple[int, ...], list[int], float, float] | None = None
        """(roots, their pool processes, when scanned, when these roots were first seen)."""
        self.pool_series: dict[int, list[tuple[float, float, float]]] = {}
        """Per pool process: (wall-clock time, seconds on a core, seconds runnable)."""
        self.interval_s = interval_s
        self.series: dict[str, Series] = {name: Series() for name in self._groups}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        """Held while the groups change and while a sample is taken."""
        self._members: dict[str, tuple[tuple[int, ...], list[int], float]] = {}
        self.rescan_s = 1.0
        self._keys: dict[str, tuple[int, ...]] = {}
        self._offsets: dict[str, float] = {}

    def set_group(self, name: str, roots: RootsFn) -> None:
        with self._lock:
            self._groups[name] = roots
            self.series.setdefault(name, Series())

    def sample_now(self) -> None:
        """Take a sample now (the sampler's thread does every ``interval_s``; the
        benchmark also does as it starts processes, and :meth:`cpu_window` after a short
        window). Samples are taken one at a time, in time order."""
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        groups = list(self._groups.items())
        now = time.time()
        busy = machine_busy_s()
        if busy is not None:
            m = self.series.setdefault(MACHINE, Series())
            m.t.append(now)
            m.cpu_s.append(busy)
            m.rss_bytes.append(0)
        if self._pool is not None:
            self._sample_pool(now)
        for name, roots in groups:
            pids = roots()
            if pids == [os.getpid()]:
                # this process: os.times is exact and cheap; RSS from /proc
                own = read_proc(os.getpid())
                cpu, rss = self_cpu_s(), (own.rss_bytes if own else 0)
            else:
                g = self._sample_cached(name, pids, now)
                if g.processes == 0:
                    continue
                cpu, rss = g.cpu_s, g.rss_bytes
            s = self.series[name]
            # A group whose root processes were replaced (a server restarted between
            # phases) continues from where the old ones stopped, so the series stays
            # cumulative and windows stay additive.
            key = tuple(sorted(pids))
            if self._keys.get(name) != key:
                self._keys[name] = key
                self._offsets[name] = s.cpu_s[-1] if s.cpu_s else 0.0
            cpu += self._offsets.get(name, 0.0)
            if s.cpu_s and cpu < s.cpu_s[-1]:  # a child exited but is not reaped yet
                cpu = s.cpu_s[-1]
            s.t.append(now)
            s.cpu_s.append(cpu)
            s.rss_bytes.append(rss)

    def _sample_pool(self, now: float) -> None:
        assert self._pool is not None
        key = tuple(sorted(self._pool()))
        cached = self._pool_pids
        since = cached[3] if cached is not None and cached[0] == key else now
        # Until every root's pool is found, look at every sample (for the first seconds
        # of these roots): a short drain could otherwise end before the next rescan sees
        # a pool that started a moment after another.
        if (cached is None or cached[0] != key or now - cached[2] >= self.rescan_s
                or (now - since < POOL_SEARCH_S
                    and len(pool_parents(cached[1])) < len(key))):
            cached = self._pool_pids = (key, pool_children(key), now, since)
        for pid in cached[1]:
            counters = read_schedstat(pid)
            if counters is not None:
                self.pool_series.setdefault(pid, []).append((now, *counters))

    def pool_window(self, start: float, end: float) -> PoolTime | None:
        """Where the pool processes' time went between two wall-clock times (each process
        over the part of the window it was sampled in); None without samples."""
        processes = 0
        wall = busy = wait = 0.0
        for samples in self.pool_series.values():
            a, b = max(start, samples[0][0]), min(end, samples[-1][0])
            if b <= a:
                continue
            run0, wait0 = _interpolate(samples, a)
            run1, wait1 = _interpolate(samples, b)
            processes += 1
            wall += b - a
            busy += max(0.0, run1 - run0)
            wait += max(0.0, wait1 - wait0)
        if not processes:
            return None
        return PoolTime(processes, wall, busy, wait, max(0.0, wall - busy - wait))

    def _sample_cached(self, name: str, roots: list[int], now: float) -> GroupSample:
        """A group's figures, re-walking ``/proc`` for its members only every
        ``rescan_s`` (a full walk costs milliseconds; reading known pids, microseconds)."""
        key = tuple(sorted(roots))
        cached = self._members.get(name)
        samples: list[ProcSample] | None = None
        if cached is not None and cached[0] == key and now - cached[2] < self.rescan_s:
            found = [read_proc(pid) for pid in cached[1]]
            if all(s is not None for s in found):
                samples = [s for s in found if s is not None]
        if samples is None:
            tree = process_tree(roots)
            samples = list(tree.values())
            self._members[name] = (key, [s.pid for s in samples], now)
        return GroupSample(
            cpu_s=sum(s.cpu_s + s.children_cpu_s for s in samples),
            rss_bytes=sum(s.rss_bytes for s in samples),
            processes=len(samples),
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_now()

    def start(self) -> Sampler:
        self.sample_now()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample_now()

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cpu_window(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each group spent between two wall-clock times. Asked before the
        sampler's first tick after ``end`` (a window shorter than its interval), it takes
        that sample first."""
        out: dict[str, float] = {}
        with self._lock:
            taken = [s.t[-1] for s in self.series.values() if s.t]
            if (not taken or max(taken) < end) and time.time() >= end:
                self._sample()
            for name, s in self.series.items():
                if not s.t or s.t[-1] < start or s.t[0] > end:
                    continue  # the group did not run in this window
                value = s.cpu_between(start, end)
                if value is not None:
                    out[name] = value
        return out

    def rss_window(self, start: float, end: float) -> dict[str, dict[str, float]]:
        """Per group: RSS (MiB) at the start, the end and the peak of a window."""
        out: dict[str, dict[str, float]] = {}
        for name, s in self.series.items():
            if name == MACHINE:
                continue
            values = s.rss_between(start, end)
            if values:
                out[name] = {"start_mib": values[0] / 2**20, "end_mib": values[-1] / 2**20,
                             "max_mib": max(values) / 2**20}
        return out


def _interpolate(samples: list[tuple[float, float, float]], when: float
                 ) -> tuple[float, float]:
    """The two counters of ``samples`` at ``when`` (linear between the samples around it)."""
    i = bisect.bisect_left(samples, (when,))
    if i <= 0:
        return samples[0][1], samples[0][2]
    if i >= len(samples):
        return samples[-1][1], samples[-1][2]
    (t0, r0, w0), (t1, r1, w1) = samples[i - 1], samples[i]
    f = 0.0 if t1 <= t0 else (when - t0) / (t1 - t0)
    return r0 + (r1 - r0) * f, w0 + (w1 - w0) * f
