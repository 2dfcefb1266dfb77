"""``conveyor bench``: a load generator and measurement harness for a running Conveyor.

It points at a server (``--url``) or starts one for a tier (``--tier embedded|postgres|
kafka``) and runs the workloads of the benchmark plan:

* **B1 drain**: pre-load N no-op operations while no worker runs, start the workers and
  time until the last outcome is recorded (from the operations' own timestamps).
* **B2 closed loop**: C concurrent HTTP submitters of one-operation jobs.
* **B2b batch ingest**: ``POST /v1/jobs/batch`` with batches of 1,000.
* **B3 open loop**: arrivals at a fixed rate; latency from each request's *scheduled* send
  time (no coordinated omission) and enqueue-to-start / enqueue-to-finish percentiles from
  the operations' ``created_at``/``started_at``/``finished_at``. **B3H** is the same
  at half of the throughput of the B2 before it (the rate the latency targets name).
* **B4 CPU-bound**: 10 ms ``sys.cpu`` operations; efficiency = rate / (cores / 10 ms).

Every run samples the CPU seconds and RSS of each process group (the server's process
tree, the database, the load generator itself) from ``/proc`` and reports CPU
microseconds per operation. :mod:`conveyor.bench.ceilings` measures what bounds each
stage (bare ASGI, the store adapter called directly, the process pool).

The harness only ever sends traffic to loopback addresses, and every loop has a deadline.
"""

from __future__ import annotations
