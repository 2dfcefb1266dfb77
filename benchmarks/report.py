"""The results writer: a comparison summary (benchmarks.compare) -> the README's
"Performance" section in Markdown, and a PNG chart.

    python -m benchmarks.report benchmarks/results/RUN/summary.json \\
        --markdown benchmarks/PERFORMANCE.md --png benchmarks/performance.png

Needs only the standard library and matplotlib (benchmarks/requirements.txt), never
Conveyor's dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ORDER = ["B1 drain ops/s", "B1 CPU µs/op (system)", "B2 closed loop req/s", "B2 p95 ms",
         "B2b batch ingest ops/s", "B3 enqueue→start p50 ms", "B3 enqueue→start p99 ms",
         "B3 enqueue→finish p50 ms", "B3 enqueue→finish p99 ms",
         "B3 at half of B2: arrivals/s", "B3 at half of B2: start p50 ms",
         "B3 at half of B2: start p99 ms", "B4 CPU efficiency"]
TIERS = ("conveyor", "conveyor-postgres", "conveyor-kafka")


@dataclass(frozen=True)
class Goal:
    """One target of the benchmark plan: a metric's bound on some tiers."""

    label: str
    at_least: bool
    """True: the figure must be at least ``bound``; False: below it."""
    bound: dict[str, float]
    """The bound per tier it applies to."""
    shown: str
    stages: tuple[str, ...] = ()
    """The stage comparisons (their workload names) that say what bounds the figure."""
    context: tuple[tuple[str, str], ...] = ()
    """Other medians of the same workload that say what bounds it: (metric, phrase with
    ``{}`` for the figure)."""

    def met(self, tier: str, value: float) -> bool:
        bound = self.bound[tier]
        return value >= bound if self.at_least else value < bound


def _on(tiers: tuple[str, ...], bound: float) -> dict[str, float]:
    return dict.fromkeys(tiers, bound)


B2_BUSY = (("B2: cores busy", "the machine kept {} cores busy"),)
B3H_BUSY = (("B3 at half of B2: cores busy", "the machine kept {} cores busy"),)
GOALS = [
    Goal("B1 drain ops/s", True, {"conveyor": 20_000, "conveyor-postgres": 10_000,
                                  "conveyor-kafka": 10_000},
         ">= 20,000 embedded, >= 10,000 the others", ("B1", "B1 (Kafka tier)")),
    Goal("B2 closed loop req/s", True, _on(TIERS, 4_000), ">= 4,000", ("B2",), B2_BUSY),
    Goal("B2 p95 ms", False, _on(TIERS, 150), "< 150", ("B2",), B2_BUSY),
    Goal("B2b batch ingest ops/s", True, _on(("conveyor",), 100_000), ">= 100,000",
         ("B2b",)),
    Goal("B3 at half of B2: start p50 ms", False, _on(TIERS[1:], 5),
         "< 5 (PostgreSQL and Kafka)", ("B3H (Kafka tier)",), B3H_BUSY),
    Goal("B3 at half of B2: start p99 ms", False, _on(TIERS[1:], 25),
         "< 25 (PostgreSQL and Kafka)", ("B3H (Kafka tier)",), B3H_BUSY),
    Goal("B4 CPU efficiency", True, _on(TIERS, 0.90), ">= 0.90", ("B4",),
         (("B4: pool waiting for a core", "the pool's processes waited for a core {} of "
           "the time"),)),
]
TARGETS = {g.label: g.shown for g in GOALS}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def markdown(summary: dict[str, Any], png_name: str | None) -> str:
    systems = summary["systems"]
    names = list(systems)
    m = summary.get("machine") or {}
    lines = ["## Performance", ""]
    lines.append(
        f"Measured on {m.get('nproc', '?')} cores ({m.get('cpu_model', '?')}), "
        f"{m.get('memory_gib', '?')} GiB of memory, Linux {m.get('kernel', '?')}, "
        f"Python {m.get('python', '?')}. The load generator runs on the same machine and "
        "its CPU is reported separately; medians of "
        f"{max((s['repetitions'] for s in systems.values()), default=0)} interleaved "
        "repetitions (every system once per repetition, in turn).")
    lines += ["", "| metric | target | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names)]
    for label in ORDER:
        cells = []
        present = False
        for name in names:
            metric = systems[name]["metrics"].get(label)
            if metric is None:
                cells.append("-")
                continue
            present = True
            ratio = summary.get("ratios", {}).get(name, {}).get(label)
            cells.append(_fmt(metric["median"]) + (f" ({ratio:.2f}x)" if ratio else ""))
        if present:
            lines.append(f"| {label} | {TARGETS.get(label, '')} | " + " | ".join(cells) + " |")
    lines += ["", "In brackets: Conveyor's embedded figure divided by the peer's. Throughput "
              "and efficiency: higher is better; latency and CPU per operation: lower is "
              "better. `conveyor-postgres` and `conveyor-kafka` run B1, B2, B3, B3H and B4 "
              "(no B2b); the peers, which have no HTTP API, B1, B3 and B4. B3 runs at "
              "the same fixed rate for every system; B3H (\"B3 at half of B2\") at half "
              "of the tier's own B2 of the same repetition, the rate the latency targets "
              "name."]
    tiers = summary.get("tiers_vs_peers") or []
    if tiers:
        lines += ["", "| tier | B1 drain ops/s | vs Celery (target 10x) | vs the fastest peer "
                  "(target 2x) |", "|---|---|---|---|"]
        for row in tiers:
            fastest = row.get("fastest_peer")
            lines.append(f"| {row['tier']} | {_fmt(row['ops_per_s'])} | "
                         f"{row.get('vs_celery', '-')}x | {row.get('vs_fastest_peer', '-')}x"
                         + (f" ({fastest})" if fastest else "") + " |")
    lines += targets(summary)
    lines += ["", "How each figure is taken. B2: a closed loop at each number of "
              "submitters of `--connections` (64, 128 and 256 unless told), the fastest "
              "with p95 under 150 ms kept: each tier's maximum rate. B2, B2b and B3 "
              "measure once 20 jobs have run through the processes they started. B1/B4: "
              "operations "
              "loaded while no worker runs, "
              "then the workers start; the drain is timed from the first start to the last "
              "recorded outcome. B3 start: Conveyor from the operation's commit (`created_at`)"
              " to its claim (`started_at`); Celery and Dramatiq from the producer's send "
              "call to the task's first line; PgQueuer from the enqueue call to its `picked` "
              "log row. B3 finish: Conveyor when the outcome is committed (`finished_at`), "
              "Celery the result's `date_done`, Dramatiq the task's return (its result store "
              "keeps no time), PgQueuer the `successful` log row. CPU per operation counts "
              "the server or worker processes and the broker/database, not the load "
              "generator.",
              "", "Durability of each system as measured:", ""]
    for name in names:
        lines.append(f"- **{name}** {systems[name].get('version') or ''}: "
                     f"{systems[name].get('durability')}")
    ceilings = summary.get("ceilings") or {}
    if ceilings.get("rows"):
        lines += ["", "### What bounds each stage", "",
                  "Each stage measured on its own on the same machine, and Conveyor's figure "
                  "against it:", "", "| stage | ceiling | detail |", "|---|---|---|"]
        for row in ceilings["rows"]:
            lines.append(f"| {row['stage']} | {row['value']} | {row.get('detail', '')} |")
        for c in ceilings.get("comparisons", []):
            ratio = c.get("ratio")
            shown = c.get("shown") or ("-" if ratio is None else f"{ratio * 100:.0f} %")
            lines.append(f"| **{c['workload']}** vs {c['stage']} | {shown} | "
                         f"{c.get('detail', '')} |")
    if png_name:
        lines += ["", f"![Conveyor and peers]({png_name})"]
    lines += ["", "Reproduce (installs the peers into their own virtual environment, starts "
              "a local Redis, PostgreSQL and Kafka):", "", "```bash",
              "benchmarks/run_all.sh            # or: benchmarks/run_all.sh --reps 5", "```",
              "", f"Exact command of this run: `{summary.get('command', '')}`", ""]
    return "\n".join(lines)


def targets(summary: dict[str, Any]) -> list[str]:
    """Each target against each tier it applies to: the median and in how many
    repetitions it held; then, for each one missed in some, the stage figures that say
    what bounds it (the ceilings' comparisons of that workload) and how busy the machine
    was."""
    systems = summary["systems"]
    tiers = [t for t in TIERS if t in systems]
    rows, missed = [], []
    for goal in GOALS:
        cells, present = [], False
        for tier in tiers:
            metric = systems[tier]["metrics"].get(goal.label)
            if tier not in goal.bound or metric is None:
                cells.append("-")
                continue
            present = True
            held = sum(goal.met(tier, v) for v in metric["values"])
            n = len(metric["values"])
            cells.append(f"{_fmt_goal(metric['median'], goal)}, met in {held} of {n}")
            if held < n:
                missed.append((goal, tier, metric["median"]))
        if present:
            rows.append(f"| {goal.label} {goal.shown} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    lines = ["", "Targets, by tier (median; repetitions that met it):", "",
             "| target | " + " | ".join(tiers) + " |", "|---|" + "---|" * len(tiers),
             *rows]
    if missed:
        lines += ["", "Missed in some repetitions, and what bounds it:", ""]
        comparisons = (summary.get("ceilings") or {}).get("comparisons", [])
        for goal, tier, median in missed:
            lines.append(f"- {tier}, {goal.label} {goal.shown}: {_fmt_goal(median, goal)}."
                         + _bounds(goal, tier, comparisons, systems[tier]["metrics"]))
    return lines


def _fmt_goal(value: float, goal: Goal) -> str:
    """A figure beside its target, precise enough to tell which side of it it fell on
    (an efficiency of 0.898 is not shown as 0.90)."""
    return f"{value:.3f}" if max(goal.bound.values()) < 1 else _fmt(value)


KAFKA_COMPARISONS = ("B1 (Kafka tier)", "B3H (Kafka tier)")
"""Stage comparisons of the Kafka tier's figures; the others are of the embedded tier's."""


def _bounds(goal: Goal, tier: str, comparisons: list[dict[str, Any]],
            metrics: dict[str, Any]) -> str:
    """What the stage table says of this tier's figure (the comparisons of the goal's
    workload, which the ceilings make for the embedded and the Kafka tier), and the
    goal's context figures of this tier (how busy the machine or the pool was)."""
    parts = []
    for c in comparisons:
        owner = "conveyor-kafka" if c["workload"] in KAFKA_COMPARISONS else "conveyor"
        if c["workload"] not in goal.stages or owner != tier:
            continue
        shown = c.get("shown") or f"{c['ratio'] * 100:.0f} %"
        parts.append(c.get("detail", "") if shown.endswith("x")
                     else f"{shown} of {c['stage']}")
    for label, phrase in goal.context:
        metric = metrics.get(label)
        if metric is not None:
            value = metric["median"]
            parts.append(phrase.format(f"{value * 100:.0f} %" if label.startswith("B4")
                                       else _fmt(value)))
    return (" Measured: " + "; ".join(parts) + ".") if parts else ""


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("B1 drain ops/s", "B1 drain (ops/s, higher is better)"),
              ("B3 enqueue→start p50 ms", "B3 enqueue→start p50 (ms, lower is better)"),
              ("B3 enqueue→finish p99 ms", "B3 enqueue→finish p99 (ms, lower is better)"),
              ("B4 CPU efficiency", "B4 CPU-bound efficiency (higher is better)")]
    systems = summary["systems"]
    names = list(systems)
    colors = ["#2b6cb0" if n.startswith("conveyor") else "#a0aec0" for n in names]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (label, title) in zip(axes, panels, strict=True):
        values = [systems[n]["metrics"].get(label, {}).get("median") or 0 for n in names]
        bars = ax.bar(names, values, color=colors)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(_fmt(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    m = summary.get("machine") or {}
    fig.suptitle(f"Conveyor's tiers and peers, {m.get('nproc', '?')} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summary", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--reuse-png", action="store_true",
                        help="link the existing --png instead of drawing it again")
    parser.add_argument("--readme", type=Path,
                        help="also replace the README's Performance section with the report")
    args = parser.parse_args()
    summary = json.loads(args.summary.read_text())
    if args.png and not args.reuse_png:
        chart(summary, args.png)
    png_name = None
    if args.png and args.markdown:
        png_name = os.path.relpath(args.png, args.markdown.parent)
    text = markdown(summary, png_name)
    if args.markdown:
        args.markdown.write_text(text)
    else:
        print(text)
    if args.readme:
        readme_png = os.path.relpath(args.png, args.readme.parent) if args.png else None
        splice_readme(args.readme, markdown(summary, readme_png))


START = "<!-- performance:start -->"
END = "<!-- performance:end -->"


def splice_readme(readme: Path, report: str) -> None:
    """Replace what lies between the README's performance markers with ``report`` (without
    its title, which the README has); the rest of the README is left as it was."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    lines = report.strip().splitlines()
    if lines and lines[0].startswith("#"):
        lines = lines[1:]
    body = "\n".join(lines).strip()
    readme.write_text(f"{head}{START}\n{body}\n{END}{tail}")


if __name__ == "__main__":
    main()
