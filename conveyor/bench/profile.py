"""Summaries of ``py-spy record --format raw`` profiles (collapsed stacks, one
``frame;frame;... count`` line each): the functions with the most samples on top of the
stack (self) and anywhere in it (total), per profiled process."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from rich.table import Table

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*)\)$")
IDLE_LEAVES = frozenset({
    "Condition.wait (threading.py)", "Event.wait (threading.py)", "Queue.get (queue.py)",
    "_worker (concurrent/futures/thread.py)", "EpollSelector.select (selectors.py)",
    "select (selectors.py)", "_recv (multiprocessing/connection.py)",
    "_recv_bytes (multiprocessing/connection.py)", "_child_main (conveyor/worker/pool.py)",
    "WorkerThread.run (anyio/_backends/_asyncio.py)",
})
"""Leaves of stacks that wait rather than work: threads parked on a lock or a queue, the
event loop in ``epoll_wait``, pool children waiting for a call. py-spy cannot always tell
such a thread is idle, so the summary drops those samples."""


def _short(frame: str) -> str:
    """``fn (.../site-packages/fastapi/routing.py:12)`` -> ``fn (fastapi/routing.py)``."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file").split(":")[0]
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('fn')} ({path})"


def summarize_stacks(text: str, top: int = 25) -> dict[str, Any]:
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    idle = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        # py-spy prefixes the process and the thread as pseudo-frames
        while frames and (frames[0].startswith("process ") or frames[0].startswith("thread ")):
            if frames[0].startswith("thread "):
                threads[frames[0]] += count
            frames = frames[1:]
        if not frames:
            continue
        leaf = _short(frames[-1])
        if leaf in IDLE_LEAVES:
            idle += count
            continue
        samples += count
        self_counts[leaf] += count
        for name in {_short(f) for f in frames}:
            if name.split(" (", 1)[-1].startswith("conveyor/"):
                total_counts[name] += count
    # frames under which (nearly) everything runs say nothing: drop them
    total_counts = Counter({k: v for k, v in total_counts.items()
                            if samples and v < 0.9 * samples})
    return {
        "samples": samples, "idle_samples": idle,
        "self": [{"function": f, "samples": n, "pct": round(100 * n / samples, 1)}
                 for f, n in self_counts.most_common(top)] if samples else [],
        "total": [{"function": f, "samples": n, "pct": round(100 * n / samples, 1)}
                  for f, n in total_counts.most_common(top)] if samples else [],
        "threads": [{"thread": t, "samples": n} for t, n in threads.most_common(8)],
    }


def summarize_profiles(paths: list[Path], top: int = 25) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        out[path.stem] = {"file": str(path), **summarize_stacks(text, top)}
    return out


def profile_table(profiles: dict[str, Any], top: int = 15) -> Table:
    table = Table(title="profile: busy samples by function (self %), and conveyor "
                        "functions with what they call (total %)")
    table.add_column("process")
    table.add_column("self %", justify="right")
    table.add_column("function (self)")
    table.add_column("total %", justify="right")
    table.add_column("function (total)")
    for name, p in profiles.items():
        rows = max(len(p["self"][:top]), len(p["total"][:top]))
        for i in range(rows):
            s = p["self"][i] if i < len(p["self"]) else None
            t = p["total"][i] if i < len(p["total"]) else None
            table.add_row(name if i == 0 else "", f"{s['pct']}" if s else "",
                          s["function"] if s else "", f"{t['pct']}" if t else "",
                          t["function"] if t else "")
    return table
