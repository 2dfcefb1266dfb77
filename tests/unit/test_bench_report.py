"""The bench table's CPU column: per-operation CPU of each group, and how much of the
machine the workload kept busy (so a run that ran out of cores says so)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from conveyor.bench.report import busy_cores, results_table


def _b2(cpu: dict[str, Any]) -> dict[str, Any]:
    return {"workload": "b2", "title": "B2 closed loop", "throughput_per_s": 4000.0,
            "connections": 64, "statuses": {"202": 40000},
            "latency_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0}, "cpu": cpu}


CPU = {"api": {"cpu_s": 7.6, "cores": 0.76, "us_per_op": 154.5},
       "postgres": {"cpu_s": 5.1, "cores": 0.51, "us_per_op": 103.7},
       "generator": {"cpu_s": 1.1, "cores": 0.11, "us_per_op": 22.9},
       "others": {"cpu_s": 0.2, "cores": 0.02, "us_per_op": None}}


def test_busy_cores_count_every_group_and_the_rest_of_the_machine() -> None:
    assert busy_cores(_b2(CPU)) == 1.4
    without_machine = {k: v for k, v in CPU.items() if k != "others"}
    assert busy_cores(_b2(without_machine)) is None
    assert busy_cores({"workload": "b2"}) is None


def test_the_table_shows_how_busy_the_machine_was() -> None:
    report = {"target": {"tier": "kafka"}, "machine": {"nproc": 2, "cpu_model": "x"},
              "results": {"b2": _b2(CPU)}}
    console = Console(width=400, record=True)
    console.print(results_table(report))
    text = console.export_text()
    assert "api 154, postgres 104, generator 23, busy 1.40 of 2 cores" in text
