#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
#
#   scripts/test.sh            the whole suite
#   scripts/test.sh tests/unit any pytest arguments narrow it
#
# Idempotent: a second run reuses the installed packages and running services.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh] %s\n' "$*" >&2; }

log "installing conveyor with its test dependencies"
python3 -m pip install --quiet --disable-pip-version-check -e ".[dev,postgres,otel,redis,kafka]"

if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (Debian's prometheus package) to check /metrics output"
  if [ -z "${CONVEYOR_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; export CONVEYOR_APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if [ ! -x /usr/bin/chromium ]; then
  log "installing Debian's chromium for the dashboard's browser tests"
  if [ -z "${CONVEYOR_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; export CONVEYOR_APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
python3 -c "import playwright" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check playwright

export CONVEYOR_ARTIFACTS="${CONVEYOR_ARTIFACTS:-$PWD/artifacts}"
mkdir -p "$CONVEYOR_ARTIFACTS"

if [ -x scripts/postgres.sh ]; then
  log "starting PostgreSQL"
  CONVEYOR_TEST_POSTGRES_URL="$(scripts/postgres.sh start)"
  export CONVEYOR_TEST_POSTGRES_URL
  log "PostgreSQL at $CONVEYOR_TEST_POSTGRES_URL"
fi

if [ -x scripts/redis.sh ]; then
  log "starting Redis (installs redis-server if needed)"
  CONVEYOR_TEST_REDIS_URL="$(scripts/redis.sh start)"
  export CONVEYOR_TEST_REDIS_URL
  log "Redis at $CONVEYOR_TEST_REDIS_URL"
fi

if [ -x scripts/kafka.sh ]; then
  log "starting Apache Kafka (the first run downloads its jars)"
  CONVEYOR_TEST_KAFKA_BOOTSTRAP="$(scripts/kafka.sh start)"
  export CONVEYOR_TEST_KAFKA_BOOTSTRAP
  log "Kafka at $CONVEYOR_TEST_KAFKA_BOOTSTRAP"
fi

log "running the tests"
status=0
# Browser tests last: Playwright's sync API runs its own event loop on the main thread.
default_paths=(tests/unit tests/contract tests/integration tests/acceptance tests/browser)
if [ "$#" -eq 0 ]; then set -- "${default_paths[@]}"; fi
python3 -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  log "pytest collected no tests"
fi
exit "$status"
