"""Peer systems run side by side with Conveyor on the same machine and services.

Each module runs in the peers' own virtual environment (benchmarks/run_all.sh makes it);
none of them is imported by the ``conveyor`` package.
"""
