#!/usr/bin/env bash
# A throwaway Redis server for tests and demos, on a free loopback port.
#
#   scripts/redis.sh start   install if needed, start (or reuse), print the URL
#   scripts/redis.sh url     print the URL if running, else exit 1
#   scripts/redis.sh kill    kill -9 the server, keeping the port: `start` brings it back
#   scripts/redis.sh stop    shut the server down and delete all state
#
# The URL is redis://127.0.0.1:PORT/0; it is the only thing written to stdout (start,
# url). Progress goes to stderr. No persistence (--save "" --appendonly no): a restart
# starts empty.
#
# State lives in ${CONVEYOR_SERVICES_DIR:-/tmp/conveyor-services}/redis:
#   port  redis.pid  redis.log
set -euo pipefail

LOG_TAG=redis.sh
# shellcheck source=scripts/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# No command here reads stdin; make sure none waits on it (CI, no terminal).
exec </dev/null

ROOT="$(services_root)"
STATE="$ROOT/redis"
PORT_FILE="$STATE/port"
PID_FILE="$STATE/redis.pid"
LOG_FILE="$STATE/redis.log"
REDIS_USER=""
PORT=""

usage() {
  sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

url() { printf 'redis://127.0.0.1:%s/0\n' "$PORT"; }

ensure_installed() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server
  fi
}

# As root, run the server as the `redis` user the Debian package creates (a Redis
# running as root lets any local client write files as root via CONFIG SET dir).
choose_os_user() {
  if [ "$(id -u)" -eq 0 ] && id redis >/dev/null 2>&1; then
    REDIS_USER=redis
  else
    REDIS_USER="$(id -un)"
  fi
}

cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

# PID of the server recorded in the pid file (empty if there is none).
server_pid() { cat "$PID_FILE" 2>/dev/null || true; }

# True if our server is alive and is the one answering on $PORT (not some other
# Redis that took the port).
is_running() {
  local pid
  pid="$(server_pid)"
  pid_running "$pid" redis-server || return 1
  [ "$(cli info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')" = "$pid" ]
}

# Start a server on $PORT and wait until it answers PING; non-zero if it does not.
start_server() {
  rm -f "$PID_FILE"
  as_user "$REDIS_USER" redis-server --port "$PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG_FILE" \
    --dir "$STATE" >&2 || return 1
  # With --daemonize the command returns before the port is bound; wait for it.
  local _
  for _ in $(seq 1 100); do
    if [ "$(cli ping 2>/dev/null || true)" = PONG ] && is_running; then
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$LOG_FILE" >&2 || true
  # Do not leave a half-started server behind.
  local pid
  pid="$(server_pid)"
  if pid_running "$pid" redis-server; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  return 1
}

cmd_start() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.redis.lock"
  ensure_installed
  choose_os_user
  if [ -f "$PORT_FILE" ]; then
    # Started before by this script: reuse it, or bring it back on the same port.
    PORT="$(read_port_file "$PORT_FILE")"
    if is_running; then
      log "reusing the running server on 127.0.0.1:$PORT"
    else
      local attempt
      for attempt in 1 2 3; do
        log "starting the server again on 127.0.0.1:$PORT"
        start_server && break
        [ "$attempt" -lt 3 ] || die "could not start redis-server on port $PORT; see $LOG_FILE"
        sleep 1
      done
    fi
  else
    rm -rf "$STATE"
    mkdir -p "$STATE"
    chown "$REDIS_USER" "$STATE"
    chmod 700 "$STATE"
    local attempt
    for attempt in 1 2 3; do
      # A new port on each attempt, in case another process took it meanwhile.
      PORT="$(free_port)"
      log "starting a new server on 127.0.0.1:$PORT (running as $REDIS_USER)"
      if start_server; then
        printf '%s\n' "$PORT" >"$PORT_FILE"
        break
      fi
      [ "$attempt" -lt 3 ] || die "could not start redis-server; see $LOG_FILE"
    done
  fi
  url
}

cmd_url() {
  if [ -f "$PORT_FILE" ] && command -v redis-cli >/dev/null 2>&1; then
    PORT="$(read_port_file "$PORT_FILE")"
    if is_running; then
      url
      return 0
    fi
  fi
  log "not running"
  exit 1
}

# Wait up to 5 s for PID to exit.
wait_exit() {
  local _
  for _ in $(seq 1 50); do
    pid_running "$1" redis-server || return 0
    sleep 0.1
  done
  return 1
}

cmd_kill() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.redis.lock"
  local pid
  pid="$(server_pid)"
  if pid_running "$pid" redis-server; then
    log "kill -9 $pid (port kept; 'start' brings it back on the same port)"
    kill -9 "$pid"
    wait_exit "$pid" || die "redis-server $pid did not die"
  else
    log "not running"
  fi
}

cmd_stop() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.redis.lock"
  if [ ! -d "$STATE" ]; then
    log "nothing to stop"
    return 0
  fi
  local pid
  pid="$(server_pid)"
  if pid_running "$pid" redis-server; then
    log "stopping redis-server $pid"
    if [ -f "$PORT_FILE" ]; then
      PORT="$(read_port_file "$PORT_FILE")"
      cli shutdown nosave >/dev/null 2>&1 || true
    fi
    if ! wait_exit "$pid"; then
      kill -9 "$pid" 2>/dev/null || true
      wait_exit "$pid" || true
    fi
  fi
  rm -rf "$STATE"
  log "stopped; removed $STATE"
}

[ $# -eq 1 ] || usage
case "$1" in
  start) cmd_start ;;
  url) cmd_url ;;
  kill) cmd_kill ;;
  stop) cmd_stop ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
