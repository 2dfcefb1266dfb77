#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and demos, on a free loopback port.
#
#   scripts/postgres.sh start              install if needed, start (or reuse), print the URL
#   scripts/postgres.sh url                print the URL if running, else exit 1
#   scripts/postgres.sh createdb NAME      create database NAME if missing, print its URL
#   scripts/postgres.sh dropdb NAME        drop database NAME (closing its connections)
#   scripts/postgres.sh restart-immediate  crash-restart (pg_ctl restart -m immediate), same port
#   scripts/postgres.sh down               stop -m immediate, keeping data; `start` brings it back
#   scripts/postgres.sh stop               stop -m fast and delete all state
#
# The URL is postgresql://conveyor@127.0.0.1:PORT/conveyor; it is the only thing
# written to stdout (start, url, createdb, restart-immediate). Progress goes to stderr.
#
# State lives in ${CONVEYOR_SERVICES_DIR:-/tmp/conveyor-services}/postgres:
#   data/    the cluster (owned by the unprivileged user the server runs as)
#   socket/  the Unix socket directory
#   port     the TCP port, kept so that a restart comes back on the same port
#   postgres.log
#
# Authentication is `trust` for local and loopback connections and the superuser is
# `conveyor`: fine for a throwaway test cluster, never for anything else.
set -euo pipefail

LOG_TAG=postgres.sh
# shellcheck source=scripts/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# No command here reads stdin; make sure none waits on it (CI, no terminal).
exec </dev/null

ROOT="$(services_root)"
STATE="$ROOT/postgres"
DATA="$STATE/data"
SOCKET_DIR="$STATE/socket"
PORT_FILE="$STATE/port"
LOG_FILE="$STATE/postgres.log"
DB_USER=conveyor
DB_NAME=conveyor
# Set by find_binaries / choose_os_user / the commands below.
BIN=""
PG_USER=""
PORT=""

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

url_for() { printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$DB_USER" "$PORT" "$1"; }

# --- binaries and the user the server runs as --------------------------------------

# Directory of the newest installed server binaries, or of the version that created
# an existing data directory.
find_binaries() {
  if [ -f "$DATA/PG_VERSION" ]; then
    local version
    version="$(cat "$DATA/PG_VERSION")"
    if [ -x "/usr/lib/postgresql/$version/bin/postgres" ]; then
      BIN="/usr/lib/postgresql/$version/bin"
      return 0
    fi
  fi
  local initdb
  initdb="$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$initdb" ] || return 1
  BIN="$(dirname "$initdb")"
}

ensure_installed() {
  if ! find_binaries; then
    apt_install postgresql
    find_binaries || die "apt-get installed postgresql but no initdb under /usr/lib/postgresql/*/bin"
  fi
}

# PostgreSQL refuses to run as root. As root, use the owner of an existing data dir,
# else the `postgres` user the Debian package creates, else a dedicated `conveyor-pg`.
choose_os_user() {
  if [ "$(id -u)" -ne 0 ]; then
    PG_USER="$(id -un)"
  elif [ -d "$DATA" ] && [ "$(stat -c %U "$DATA")" != root ]; then
    PG_USER="$(stat -c %U "$DATA")"
  elif id postgres >/dev/null 2>&1; then
    PG_USER=postgres
  else
    if ! id conveyor-pg >/dev/null 2>&1; then
      log "creating the system user conveyor-pg"
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin conveyor-pg
    fi
    PG_USER=conveyor-pg
  fi
}

as_pg() { as_user "$PG_USER" "$@"; }

# --- server state --------------------------------------------------------------------

server_opts() {
  printf '%s' "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCKET_DIR -c max_connections=300 -c shared_buffers=128MB"
}

# PID of the postmaster recorded in postmaster.pid (empty if there is none).
postmaster_pid() { head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true; }

# True if the postmaster of our data dir is alive. (Not `pg_ctl status`: it uses
# kill -0, which also succeeds on the zombie of a postmaster killed with -9.)
is_running() { pid_running "$(postmaster_pid)" postgres; }

is_ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d postgres -t 2; }

wait_ready() {
  local _
  for _ in $(seq 1 600); do
    is_ready && return 0
    is_running || break
    sleep 0.1
  done
  tail -n 20 "$LOG_FILE" >&2 || true
  die "PostgreSQL on port $PORT did not become ready"
}

# Server processes left behind when the postmaster was killed with -9 still hold the
# old shared memory, and a new postmaster refuses to start until they are gone. They
# are recognised by their working directory, which PostgreSQL sets to the data dir.
# Give them a few seconds to notice their parent died, then kill them.
reap_orphans() {
  local i pid pids
  for i in $(seq 1 50); do
    pids=""
    for pid in $(find /proc -mindepth 2 -maxdepth 2 -path '/proc/[0-9]*/cwd' -lname "$DATA" \
      2>/dev/null || true); do
      pid="${pid#/proc/}"
      pids="$pids ${pid%/cwd}"
    done
    if [ -z "$pids" ]; then
      return 0
    fi
    if [ "$i" -eq 1 ]; then
      log "waiting for leftover server processes:$pids"
    fi
    sleep 0.1
  done
  log "killing leftover server processes:$pids"
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
  sleep 0.2
}

# Start the server on $PORT; returns non-zero (with the log shown) if it fails.
start_server() {
  if ! as_pg "$BIN/pg_ctl" start -w -t 60 -D "$DATA" -l "$LOG_FILE" -o "$(server_opts)" >&2; then
    tail -n 20 "$LOG_FILE" >&2 || true
    return 1
  fi
}

psql_admin() {
  "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d postgres "$@"
}

ensure_database() {
  local name="$1"
  if [ -z "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" ]; then
    log "creating database $name"
    psql_admin -c "CREATE DATABASE \"$name\"" >&2
  fi
}

# A new cluster: initdb, then start it on a free port (a new one if the port was
# taken between picking and binding).
create_cluster() {
  rm -rf "$STATE"
  mkdir -p "$STATE" "$SOCKET_DIR"
  chown -R "$PG_USER" "$STATE"
  chmod 700 "$STATE"
  as_pg test -w "$STATE" || die "$PG_USER cannot write $STATE (is a parent directory private?)"

  log "initdb in $DATA (PostgreSQL $(basename "$(dirname "$BIN")"), running as $PG_USER)"
  # --no-sync: no point in fsyncing a throwaway cluster's template files.
  if ! as_pg "$BIN/initdb" -D "$DATA" -U "$DB_USER" --auth=trust --encoding=UTF8 --locale=C \
    --no-sync >"$STATE/initdb.log" 2>&1; then
    cat "$STATE/initdb.log" >&2
    die "initdb failed"
  fi

  local attempt
  for attempt in 1 2 3; do
    PORT="$(free_port)"
    # A Unix socket path is limited to 107 bytes.
    [ "${#SOCKET_DIR}" -le 80 ] || die "socket path too long; use a shorter CONVEYOR_SERVICES_DIR"
    log "starting a new cluster on 127.0.0.1:$PORT"
    if start_server; then
      printf '%s\n' "$PORT" >"$PORT_FILE"
      return 0
    fi
    log "start on port $PORT failed (attempt $attempt)"
  done
  die "could not start PostgreSQL; see $LOG_FILE"
}

# Start the existing cluster again on its recorded port (after a crash, kill or `down`).
restart_existing() {
  reap_orphans
  # The postmaster is dead (is_running said so), but its PID may still be a zombie,
  # which would make the new postmaster think the old one is running: remove the
  # lock files that name it (the data dir's and the socket's).
  rm -f "$DATA/postmaster.pid" "$SOCKET_DIR/.s.PGSQL.$PORT.lock" "$SOCKET_DIR/.s.PGSQL.$PORT"
  local attempt
  for attempt in 1 2 3; do
    log "starting the existing cluster on 127.0.0.1:$PORT"
    start_server && return 0
    log "start failed (attempt $attempt); retrying"
    sleep 1
    reap_orphans
  done
  die "could not restart PostgreSQL on port $PORT; see $LOG_FILE"
}

have_cluster() { [ -f "$DATA/PG_VERSION" ] && [ -f "$PORT_FILE" ]; }

# Bring the cluster up (reusing, restarting or creating it); print nothing on stdout.
ensure_started() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.postgres.lock"
  ensure_installed
  choose_os_user
  if have_cluster; then
    PORT="$(read_port_file "$PORT_FILE")"
    if is_running; then
      log "reusing the running cluster on 127.0.0.1:$PORT"
    else
      restart_existing
    fi
  else
    create_cluster
  fi
  wait_ready
  ensure_database "$DB_NAME"
}

# For commands that act on an existing cluster: load its state or fail.
load_existing() {
  have_cluster || die "no cluster in $STATE (run: $0 start)"
  find_binaries || die "PostgreSQL binaries not found"
  choose_os_user
  PORT="$(read_port_file "$PORT_FILE")"
}

check_db_name() {
  [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]] || die "invalid database name '$1' (letters, digits, _)"
}

# --- commands --------------------------------------------------------------------------

cmd_start() {
  ensure_started
  url_for "$DB_NAME"
}

cmd_url() {
  if have_cluster && find_binaries; then
    choose_os_user
    PORT="$(read_port_file "$PORT_FILE")"
    if is_running && is_ready; then
      url_for "$DB_NAME"
      return 0
    fi
  fi
  log "not running"
  exit 1
}

cmd_createdb() {
  [ $# -eq 1 ] || usage
  check_db_name "$1"
  ensure_started
  ensure_database "$1"
  url_for "$1"
}

cmd_dropdb() {
  [ $# -eq 1 ] || usage
  check_db_name "$1"
  [ "$1" != "$DB_NAME" ] || die "refusing to drop the main database; use stop"
  ensure_started
  log "dropping database $1"
  psql_admin -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >&2
}

cmd_restart_immediate() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.postgres.lock"
  load_existing
  if is_running; then
    log "restarting with -m immediate on 127.0.0.1:$PORT"
    if ! as_pg "$BIN/pg_ctl" restart -m immediate -w -t 60 -D "$DATA" -l "$LOG_FILE" \
      -o "$(server_opts)" >&2; then
      tail -n 20 "$LOG_FILE" >&2 || true
      die "restart failed"
    fi
  else
    restart_existing
  fi
  wait_ready
  url_for "$DB_NAME"
}

cmd_down() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.postgres.lock"
  load_existing
  if is_running; then
    log "stopping with -m immediate (data kept; '$0 start' brings it back on port $PORT)"
    as_pg "$BIN/pg_ctl" stop -m immediate -w -t 60 -D "$DATA" >&2
  else
    log "already down"
  fi
}

cmd_stop() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.postgres.lock"
  if [ ! -d "$STATE" ]; then
    log "nothing to stop"
    return 0
  fi
  if [ -f "$DATA/PG_VERSION" ] && find_binaries; then
    choose_os_user
    if is_running; then
      log "stopping (-m fast)"
      as_pg "$BIN/pg_ctl" stop -m fast -w -t 60 -D "$DATA" >&2 ||
        as_pg "$BIN/pg_ctl" stop -m immediate -w -t 60 -D "$DATA" >&2 || true
    fi
  fi
  if [ -d "$DATA" ]; then
    reap_orphans
  fi
  rm -rf "$STATE"
  log "stopped; removed $STATE"
}

[ $# -ge 1 ] || usage
command="$1"
shift
case "$command" in
  start) [ $# -eq 0 ] || usage; cmd_start ;;
  url) [ $# -eq 0 ] || usage; cmd_url ;;
  createdb) cmd_createdb "$@" ;;
  dropdb) cmd_dropdb "$@" ;;
  restart-immediate) [ $# -eq 0 ] || usage; cmd_restart_immediate ;;
  down) [ $# -eq 0 ] || usage; cmd_down ;;
  stop) [ $# -eq 0 ] || usage; cmd_stop ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
