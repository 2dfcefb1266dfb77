# shellcheck shell=bash
# Helpers shared by scripts/postgres.sh and scripts/redis.sh. Sourced, never run.
#
# The caller sets LOG_TAG (used to prefix progress messages) before sourcing.
# Everything here writes progress to stderr: stdout is reserved for the one line
# (a URL) that the service scripts print.

# Progress and errors go to stderr.
log() { printf '[%s] %s\n' "${LOG_TAG:-services}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Absolute directory that holds the state of every throwaway service.
# CONVEYOR_SERVICES_DIR may be relative; it is resolved against the caller's cwd.
services_root() {
  local root="${CONVEYOR_SERVICES_DIR:-/tmp/conveyor-services}"
  case "$root" in
    /*) ;;
    *) root="$PWD/$root" ;;
  esac
  # Server options are passed as one string (pg_ctl -o), so keep paths simple.
  case "$root" in
    *[[:space:]]*) die "CONVEYOR_SERVICES_DIR must not contain whitespace: '$root'" ;;
  esac
  printf '%s\n' "${root%/}"
}

# Create the services root, traversable by the unprivileged users the servers run as.
make_services_root() {
  local root="$1"
  if [ ! -d "$root" ]; then
    mkdir -p "$root"
    chmod 755 "$root"
  fi
}

# Serialise concurrent invocations of one script (two test runs starting the same
# service at once). The lock is held on fd 9 until the script exits.
take_lock() {
  local lock_file="$1"
  exec 9>"$lock_file"
  flock -w 600 9 || die "timed out waiting for the lock $lock_file"
}

# Run a command as USER (via runuser when we are root and USER is someone else),
# from / so that an unreadable cwd (e.g. /root) does not bother the command.
# The lock's fd 9 is closed for the command: a server daemon started here would
# otherwise inherit it and hold the lock for as long as it runs.
as_user() {
  local user="$1"
  shift
  if [ "$(id -u)" -eq 0 ] && [ "$user" != root ]; then
    (cd / && runuser -u "$user" -- "$@") 9>&-
  else
    (cd / && "$@") 9>&-
  fi
}

# Install Debian packages non-interactively (sudo -n when not root).
apt_install() {
  local -a sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "installing $* needs root (or password-less sudo)"
    fi
  fi
  # Wait for another apt/dpkg run (e.g. the other service script) instead of failing.
  local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
  log "installing $* with apt-get"
  "${sudo[@]}" "${apt[@]}" update -qq >&2
  "${sudo[@]}" "${apt[@]}" install -y -qq "$@" >&2
}

# A currently free TCP port on 127.0.0.1 (the kernel picks it when binding port 0).
free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Validate the contents of a port file.
read_port_file() {
  local port
  port="$(cat "$1")"
  case "$port" in
    '' | *[!0-9]*) die "corrupt port file $1: '$port'" ;;
  esac
  printf '%s\n' "$port"
}

# True if PID is a live process whose command name is COMM. A zombie does not count:
# kill -0 succeeds on one, and on some machines (containers whose PID 1 reaps
# slowly) a server killed with -9 stays a zombie for a while.
pid_running() {
  local pid="${1:-}" comm="$2" stat state
  case "$pid" in
    '' | *[!0-9]*) return 1 ;;
  esac
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  state="${stat##*) }"
  state="${state%% *}"
  case "$state" in
    Z | X | x) return 1 ;;
  esac
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}
