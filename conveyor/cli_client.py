"""HTTP-client commands of the ``conveyor`` CLI: submit, jobs, dlq, tasks, stats, workers.

Each talks to a running Conveyor (``--url`` or ``CONVEYOR_URL``); tables by default,
``--json`` for raw output; an unreachable server or an API error is one line on stderr
and exit code 1; bad arguments exit with 2.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .client import TERMINAL, ApiError, Client

UrlOpt = Annotated[str, typer.Option("--url", envvar="CONVEYOR_URL",
                                     help="Conveyor API base URL")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print raw JSON")]
KeyOpt = Annotated[str | None, typer.Option(
    "--api-key", envvar="CONVEYOR_API_KEY", help="API key (sent as Authorization: Bearer)")]
DEFAULT_URL = "http://127.0.0.1:8000"
BATCH = 1000
out = Console()


def register_client_commands(app: typer.Typer, fail: Callable[..., NoReturn]) -> None:
    """Add the client commands to ``app``; ``fail(message, code)`` reports errors."""
    jobs = typer.Typer(help="List, show and cancel jobs.", no_args_is_help=True)
    dlq = typer.Typer(help="Dead operations: list, show, replay.", no_args_is_help=True)
    app.add_typer(jobs, name="jobs")
    app.add_typer(dlq, name="dlq")

    def call(url: str, api_key: str | None, fn: Callable[[Client], Any]) -> Any:
        try:
            with Client(url, timeout_s=30, api_key=api_key) as client:
                return fn(client)
        except ApiError as exc:
            fail(str(exc.problem.get("detail") or exc))
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            fail(f"cannot reach Conveyor at {url}: {exc}")
        except (ValueError, KeyError, TypeError) as exc:  # not a Conveyor answer
            fail(f"unexpected answer from {url} (is it a Conveyor API?): {exc!r}")

    def show(data: Any, as_json: bool, table: Callable[[Any], Table]) -> None:
        if as_json:
            out.print_json(json.dumps(data))
        else:
            out.print(table(data))

    @app.command()
    def submit(
        task: str,
        args: Annotated[str, typer.Option("--args", help="Arguments as a JSON object")] = "{}",
        key: Annotated[str | None, typer.Option("--key", help="Ordering key")] = None,
        queue: Annotated[str | None, typer.Option("--queue")] = None,
        count: Annotated[int, typer.Option("--count", min=1, help="How many jobs")] = 1,
        wait: Annotated[bool, typer.Option("--wait", help="Wait for the outcome")] = False,
        idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
        url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Submit COUNT jobs of one TASK call each (batches of 1,000 beyond one)."""
        try:
            parsed = json.loads(args)
        except ValueError as exc:
            fail(f"--args is not valid JSON: {exc}", 2)
        if not isinstance(parsed, dict):
            fail("--args must be a JSON object of named arguments", 2)
        if idempotency_key and count > 1:
            fail("--idempotency-key names one job; it cannot be used with --count", 2)
        op: dict[str, Any] = {"task": task, "args": parsed, **({"key": key} if key else {})}
        job_body: dict[str, Any] = {"operations": [op], **({"queue": queue} if queue else {})}
        if count == 1:
            def one(c: Client) -> dict[str, Any]:
                return c.submit(operations=[op], queue=queue, idempotency_key=idempotency_key)

            job = call(url, api_key, one)
            ids = [job["id"]]
        else:
            ids = []
            with _progress() as progress:
                bar = progress.add_task("submitting", total=count)
                while len(ids) < count:
                    size = min(BATCH, count - len(ids))

                    def send(c: Client, size: int = size) -> list[str]:
                        return c.submit_batch([job_body] * size)

                    ids += call(url, api_key, send)
                    progress.update(bar, completed=len(ids))
        if not wait:
            if as_json or count == 1:
                out.print_json(json.dumps(ids if count > 1 else job))
            else:
                out.print(f"submitted {len(ids)} jobs")
            return
        finished = _wait_all(url, api_key, ids, call)
        if as_json:
            out.print_json(json.dumps(finished))
        else:
            out.print(_jobs_table(finished))
        if any(j["status"] != "succeeded" for j in finished):
            raise typer.Exit(1)

    @jobs.command("list")
    def jobs_list(
        status: Annotated[str | None, typer.Option("--status")] = None,
        queue: Annotated[str | None, typer.Option("--queue")] = None,
        task: Annotated[str | None, typer.Option("--task")] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
        url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Newest jobs first."""
        page = call(url, api_key,
                    lambda c: c.list(status=status, queue=queue, task=task, limit=limit))
        show(page["jobs"], as_json, _jobs_table)

    @jobs.command("show")
    def jobs_show(job_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None,
                         as_json: JsonOpt = False) -> None:
        """One job with its operations."""
        job = call(url, api_key, lambda c: c.get(job_id))
        show(job, as_json, _job_table)

    @jobs.command("cancel")
    def jobs_cancel(job_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None,
                           as_json: JsonOpt = False) -> None:
        """Cancel what has not finished."""
        job = call(url, api_key, lambda c: c.cancel(job_id))
        show(job, as_json, _job_table)

    @dlq.command("list")
    def dlq_list(
        queue: Annotated[str | None, typer.Option("--queue")] = None,
        task: Annotated[str | None, typer.Option("--task")] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
        url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Dead operations, oldest first."""
        page = call(url, api_key, lambda c: c.dlq(queue=queue, task=task, limit=limit))
        show(page["operations"], as_json, _ops_table)

    @dlq.command("show")
    def dlq_show(op_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None,
                        as_json: JsonOpt = False) -> None:
        """One dead operation, with its error and traceback."""
        found = call(url, api_key, lambda c: c.dlq(ids=[op_id], limit=1))["operations"]
        if not found:
            fail(f"no dead operation {op_id!r}")
        op = found[0]
        if as_json:
            out.print_json(json.dumps(op))
            return
        out.print(_ops_table([op]))
        if op.get("error") and op["error"].get("traceback"):
            out.print(op["error"]["traceback"], highlight=False, markup=False)

    @dlq.command("replay")
    def dlq_replay(
        ids: Annotated[list[str] | None, typer.Argument(help="Operation ids")] = None,
        queue: Annotated[str | None, typer.Option("--queue")] = None,
        task: Annotated[str | None, typer.Option("--task")] = None,
        all_: Annotated[bool, typer.Option("--all", help="Replay every dead operation")] = False,
        url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Replay dead operations by id, by filter, or all of them."""
        if not ids and not queue and not task and not all_:
            fail("say what to replay: operation ids, --queue, --task or --all", 2)
        answer = call(url, api_key,
                      lambda c: c.replay(ids or None, queue=queue, task=task, all=all_))
        if as_json:
            out.print_json(json.dumps(answer))
        else:
            out.print(f"replayed {answer['count']} operations")

    @app.command()
    def tasks(url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False) -> None:
        """Tasks the workers have published."""
        show(call(url, api_key, lambda c: c.tasks()), as_json, _tasks_table)

    @app.command()
    def stats(url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False) -> None:
        """Per-queue counts by state, throughput, oldest ready age and (Kafka tier) lag."""
        show(call(url, api_key, lambda c: c.stats()), as_json, _stats_table)

    @app.command()
    def workers(
        include_gone: Annotated[bool, typer.Option("--all", help="Include gone workers")] = False,
        url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Live workers, their load, and configuration drift."""
        show(call(url, api_key, lambda c: c.workers(include_gone)), as_json, _workers_table)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True))


def _wait_all(url: str, api_key: str | None, ids: list[str],
              call: Callable[..., Any]) -> list[dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    with _progress() as progress:
        bar = progress.add_task("running", total=len(ids))
        while len(done) < len(ids):
            for job_id in [i for i in ids if i not in done][:200]:
                job = call(url, api_key, lambda c, job_id=job_id: c.get(job_id))
                if job["status"] in TERMINAL:
                    done[job_id] = job
            progress.update(bar, completed=len(done))
            if len(done) < len(ids):
                time.sleep(0.1)
    return [done[i] for i in ids]


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def _jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table("id", "queue", "status", "operations", "results")
    for job in jobs:
        ops = job["operations"]
        results = ", ".join(
            _short(o["result"] if o["status"] == "succeeded"
                   else (o["error"] or {}).get("type", o["status"]), 20)
            for o in ops[:3])
        table.add_row(job["id"], job["queue"], job["status"], str(len(ops)), results)
    return table


def _ops_table(ops: list[dict[str, Any]]) -> Table:
    table = Table("id", "task", "key", "status", "attempts", "result / error")
    for o in ops:
        error = o.get("error") or {}
        detail = (f"{error.get('type')}: {error.get('message')}" if error
                  else _short(o.get("result")))
        table.add_row(o["id"], o["task"], o.get("key") or "", o["status"],
                      f"{o['attempts']}/{o['max_attempts']}", _short(detail, 60))
    return table


def _job_table(job: dict[str, Any]) -> Table:
    table = _ops_table(job["operations"])
    table.title = f"job {job['id']} ({job['queue']}): {job['status']}"
    return table


def _tasks_table(tasks: list[dict[str, Any]]) -> Table:
    table = Table("task", "queue", "kind", "max attempts", "timeout s", "arguments")
    for t in tasks:
        args = ", ".join(t["schema"].get("properties", {}))
        table.add_row(t["name"], t["queue"], t["kind"], str(t["max_attempts"]),
                      str(t["timeout_s"] or "-"), args)
    return table


def _stats_table(stats: dict[str, Any]) -> Table:
    states = ["scheduled", "queued", "running", "retrying", "succeeded", "dead", "cancelled"]
    transport = stats.get("transport")
    lag_columns = ["lag", "outbox"] if transport else []
    table = Table("queue", *states, "ops/s (1m)", "ops/s (5m)", "oldest ready s",
                  *lag_columns)
    for q in stats["queues"]:
        age = q.get("oldest_ready_age_s")
        row = [q["queue"], *(str(q["counts"].get(s, 0)) for s in states),
               f"{q['throughput_1m_per_s']:.1f}", f"{q['throughput_5m_per_s']:.1f}",
               f"{age:.1f}" if age else "-"]
        if transport:
            lag = transport.get("queues", {}).get(q["queue"], {}).get("lag")
            row += ["?" if "lag_error" in transport else str(lag or 0),
                    str(transport.get("outbox_backlog", {}).get(q["queue"], 0))]
        table.add_row(*row)
    if transport and "lag_error" in transport:
        table.caption = f"lag unknown: {transport['lag_error']}"
    return table


def _workers_table(workers: list[dict[str, Any]]) -> Table:
    table = Table("id", "host", "pid", "queues", "concurrency", "in flight", "processed",
                  "last seen", "status", "drift")
    now = time.time()
    for w in workers:
        table.add_row(w["id"], w["host"], str(w["pid"]), ",".join(w["queues"]),
                      str(w["concurrency"]), str(w["in_flight"]), str(w["processed"]),
                      f"{now - w['last_seen_at']:.0f} s ago", w["status"],
                      "yes" if w["drift"] else "")
    return table
