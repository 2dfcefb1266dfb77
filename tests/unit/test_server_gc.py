"""A server process's garbage collector (``server.tune_gc``): start-up objects frozen,
young collections rarer, cyclic garbage still collected. In a child process, so this
test process keeps Python's own settings."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import gc, weakref
from conveyor.server import GC_THRESHOLDS, tune_gc
tune_gc()
assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()  # the imports' objects
class Node:
    pass
alive = weakref.WeakSet()
for _ in range(200_000):
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle, unreachable from the next turn on
    alive.add(a)
print(len(alive))
"""


def test_a_tuned_process_still_collects_cyclic_garbage() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    # 200,000 cycles made; without collections every one would still be alive.
    assert int(done.stdout) < 50_000
