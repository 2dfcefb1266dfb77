#!/usr/bin/env bash
# Conveyor and its peers, side by side, on this machine; then the report.
#
#   benchmarks/run_all.sh                 3 interleaved repetitions of every system
#   benchmarks/run_all.sh --reps 5 --ops 50000
#   benchmarks/run_all.sh --setup-only    only create/refresh the benchmark venv
#
# Any other argument goes to `python -m benchmarks.compare` (see its --help).
#
# The peers (Celery, Dramatiq, PgQueuer) and the report's tools (matplotlib, py-spy) are
# installed into their own virtual environment under ${XDG_CACHE_HOME:-~/.cache}/
# conveyor-bench/venv, never into Conveyor's. Redis, PostgreSQL and Kafka come from
# scripts/redis.sh, scripts/postgres.sh and scripts/kafka.sh (local, loopback, throwaway);
# the peers use Redis database 15 and the PostgreSQL database conveyor_bench_peers;
# Conveyor's postgres and kafka tiers get a fresh database (and topics) per run.
#
# Results: benchmarks/results/<timestamp>/ (one JSON per run, summary.json,
# PERFORMANCE.md and performance.png).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[run_all] %s\n' "$*" >&2; }

VENV="${CONVEYOR_BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/conveyor-bench/venv}"
REQS=(benchmarks/requirements.txt benchmarks/peers/requirements.txt)
stamp="$(cat "${REQS[@]}" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
if [ "$(cat "$VENV/.conveyor-bench-stamp" 2>/dev/null)" != "$stamp" ]; then
  log "installing the peers and report tools into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQS[@]/#/-r}"
  echo "$stamp" > "$VENV/.conveyor-bench-stamp"
fi
if [ "${1:-}" = "--setup-only" ]; then
  exit 0
fi

log "installing conveyor (editable) into $(command -v python3)"
python3 -m pip install --quiet --disable-pip-version-check -e .

REDIS_URL="$(scripts/redis.sh start)"
PG_URL="$(scripts/postgres.sh createdb conveyor_bench_peers)"
log "Redis at $REDIS_URL (peers use database 15), PostgreSQL at $PG_URL"
log "installing conveyor's postgres and kafka extras for its other tiers"
python3 -m pip install --quiet --disable-pip-version-check -e ".[postgres,kafka]"
KAFKA="$(scripts/kafka.sh start)"
log "Kafka at $KAFKA"

OUT="benchmarks/results/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
python3 -m benchmarks.compare --redis "$REDIS_URL" --postgres "$PG_URL" \
  --kafka "$KAFKA" --peers-python "$VENV/bin/python" --out-dir "$OUT" "$@"
"$VENV/bin/python" -m benchmarks.report "$OUT/summary.json" \
  --markdown "$OUT/PERFORMANCE.md" --png "$OUT/performance.png"
log "copy $OUT/PERFORMANCE.md and performance.png to benchmarks/ and refresh the README with:"
log "  python3 -m benchmarks.report $OUT/summary.json --markdown benchmarks/PERFORMANCE.md --png benchmarks/performance.png --readme README.md"
log "report: $OUT/PERFORMANCE.md and $OUT/performance.png"
