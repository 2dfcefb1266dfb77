#!/usr/bin/env bash
# A throwaway single-node Apache Kafka broker (KRaft, no ZooKeeper, no Docker) for
# tests and demos, on free loopback ports.
#
#   scripts/kafka.sh start               fetch jars if needed, start (or reuse), print the address
#   scripts/kafka.sh address             print the address if running, else exit 1
#   scripts/kafka.sh kill                kill -9 the broker, keeping data and ports
#   scripts/kafka.sh restart-after-kill  bring a killed broker back (same ports, same data)
#   scripts/kafka.sh stop                SIGTERM (SIGKILL after 30 s) and delete all state
#
# The address is 127.0.0.1:PORT (a bootstrap.servers value); it is the only thing
# written to stdout (start, address, restart-after-kill). Progress goes to stderr.
# `start` after a `kill` (or a crash) also restarts on the same ports with the same data.
#
# The broker is the real Apache Kafka, run from its jars on Maven Central
# (org.apache.kafka:kafka_2.13 plus a log4j2 binding, see scripts/kafka/pom.xml),
# cached in ${CONVEYOR_CACHE_DIR:-$HOME/.cache/conveyor}/kafka-VERSION/libs.
#
# State lives in ${CONVEYOR_SERVICES_DIR:-/tmp/conveyor-services}/kafka:
#   port  controller.port  kafka.pid  cluster.id  server.properties  log4j2.xml
#   data/       the log dir (topics and the KRaft metadata log)
#   kafka.log   broker log (WARN, plus INFO for kafka.server.KafkaRaftServer)
#   kafka.out   the JVM's own stdout/stderr
#
# Environment: CONVEYOR_KAFKA_VERSION (default 4.2.0), CONVEYOR_KAFKA_START_TIMEOUT
# (seconds, default 90), CONVEYOR_KAFKA_HEAP (default 512m), CONVEYOR_KAFKA_EXTRA_PROPERTIES
# (a file appended to server.properties, later keys win; @PORT@ and @CONTROLLER_PORT@
# in it are replaced by the ports: e.g. an extra SASL listener for tests).
set -euo pipefail

LOG_TAG=kafka.sh
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"

# No command here reads stdin; make sure none waits on it (CI, no terminal).
exec </dev/null

KAFKA_VERSION="${CONVEYOR_KAFKA_VERSION:-4.2.0}"
# Must match the log4j that kafka-server's POM uses for KAFKA_VERSION (2.25.3 for 4.2.0).
LOG4J_VERSION="${CONVEYOR_KAFKA_LOG4J_VERSION:-2.25.3}"
# Pinned: unpinned, Maven 3.8 falls back to the ancient maven-dependency-plugin 2.8.
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
START_TIMEOUT="${CONVEYOR_KAFKA_START_TIMEOUT:-90}"
HEAP="${CONVEYOR_KAFKA_HEAP:-512m}"
STOP_TIMEOUT=30
POM="$SCRIPT_DIR/kafka/pom.xml"

ROOT="$(services_root)"
STATE="$ROOT/kafka"
DATA="$STATE/data"
PORT_FILE="$STATE/port"
CONTROLLER_PORT_FILE="$STATE/controller.port"
PID_FILE="$STATE/kafka.pid"
CLUSTER_ID_FILE="$STATE/cluster.id"
PROPERTIES="$STATE/server.properties"
LOG4J_CONFIG="$STATE/log4j2.xml"
LOG_FILE="$STATE/kafka.log"
OUT_FILE="$STATE/kafka.out"

# The jar cache; a relative CONVEYOR_CACHE_DIR is resolved against the caller's cwd.
CACHE_ROOT="${CONVEYOR_CACHE_DIR:-${HOME:-/tmp}/.cache/conveyor}"
case "$CACHE_ROOT" in
  /*) ;;
  *) CACHE_ROOT="$PWD/$CACHE_ROOT" ;;
esac
CACHE="${CACHE_ROOT%/}/kafka-$KAFKA_VERSION"
LIBS="$CACHE/libs"

# Set by the commands below.
PORT=""
CONTROLLER_PORT=""

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

address() { printf '127.0.0.1:%s\n' "$PORT"; }

# --- Java, Maven and the jars ---------------------------------------------------------

# Kafka 4.x brokers need Java 17+. Install a JRE (and Maven) from Debian if missing.
ensure_tools() {
  if ! command -v java >/dev/null 2>&1; then
    apt_install openjdk-17-jre-headless
  fi
  local spec major
  # First line looks like: openjdk version "17.0.15" 2025-04-15
  spec="$(java -version 2>&1 | sed -n '1s/.*version "\([^"]*\)".*/\1/p')"
  major="${spec%%.*}"
  case "$major" in
    '' | *[!0-9]*) die "cannot parse the output of 'java -version' ($spec)" ;;
  esac
  [ "$major" -ge 17 ] || die "Kafka $KAFKA_VERSION needs Java 17 or newer; 'java' on PATH is $spec"
  if [ ! -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] && ! command -v mvn >/dev/null 2>&1; then
    apt_install maven
  fi
}

# Fill $LIBS with the broker's runtime classpath, once per version. Maven copies into
# a temporary directory that is renamed into place, so a half-finished download (an
# interrupted run) is never mistaken for a complete one.
ensure_jars() {
  if [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    return 0
  fi
  mkdir -p "$CACHE"
  # The cache may be shared by runs with different CONVEYOR_SERVICES_DIRs: lock it too.
  exec 8>"$CACHE/.lock"
  flock -w 600 8 || die "timed out waiting for the lock $CACHE/.lock"
  if [ ! -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    local tmp="$CACHE/libs.tmp.$$"
    rm -rf "$tmp" "$LIBS"
    log "downloading Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
    # Maven's output goes to stderr (stdout is for the address), minus the colour
    # codes Debian's Maven 3.8 prints even with -B -q.
    if ! (cd "$CACHE" && mvn -B -q -Dstyle.color=never -f "$POM" \
      -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
      "$DEPENDENCY_PLUGIN:copy-dependencies" -DincludeScope=runtime \
      -DoutputDirectory="$tmp") 2>&1 9>&- 8>&- | sed 's/\x1b\[[0-9;]*m//g' >&2; then
      rm -rf "$tmp"
      die "mvn could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see above)"
    fi
    [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || die "mvn did not produce kafka_2.13-$KAFKA_VERSION.jar"
    mv "$tmp" "$LIBS"
  fi
  exec 8>&-
}

# Run a Kafka tool class on the cached classpath (used for StorageTool). Its logging
# goes to the broker's log file, so that stdout carries only the tool's output.
# C1 only and the serial GC: this JVM lives for a second, startup is all that counts.
kafka_tool() {
  (cd "$STATE" && java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" -cp "$LIBS/*" "$@") 9>&-
}

# A random cluster id, as `kafka.tools.StorageTool random-uuid` makes it (Kafka's
# Uuid.randomUuid: a random v4 UUID in unpadded base64url, never starting with '-'),
# without paying for a JVM start. `format` validates it.
random_cluster_id() {
  python3 -c 'import base64, uuid
while True:
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not cid.startswith("-"):
        break
print(cid)'
}

# --- the broker process ---------------------------------------------------------------

# PID recorded in the pid file (empty if there is none).
broker_pid() { cat "$PID_FILE" 2>/dev/null || true; }

# True if PID is a live `java` running *our* server.properties (not some other JVM
# that was given a recycled PID).
is_our_broker() {
  local pid="${1:-}"
  pid_running "$pid" java || return 1
  local args
  # (No `| grep -q` here or below: with pipefail, grep exiting early can fail the pipe.)
  args="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  case $'\n'"$args"$'\n' in
    *$'\n'"$PROPERTIES"$'\n'*) return 0 ;;
    *) return 1 ;;
  esac
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  # shellcheck disable=SC2016  # $1 is expanded by the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# True if our broker is alive and listening on $PORT.
is_running() {
  is_our_broker "$(broker_pid)" && port_open "$PORT"
}

# Wait up to WAIT seconds for PID to exit.
wait_exit() {
  local pid="$1" wait="$2" _
  for _ in $(seq 1 $((wait * 10))); do
    is_our_broker "$pid" || return 0
    sleep 0.1
  done
  return 1
}

# Read both port files into PORT / CONTROLLER_PORT.
read_ports() {
  PORT="$(read_port_file "$PORT_FILE")"
  CONTROLLER_PORT="$(read_port_file "$CONTROLLER_PORT_FILE")"
}

# Two distinct free loopback ports: PORT for clients, CONTROLLER_PORT for KRaft.
pick_ports() {
  PORT="$(free_port)"
  CONTROLLER_PORT="$(free_port)"
  while [ "$CONTROLLER_PORT" = "$PORT" ]; do
    CONTROLLER_PORT="$(free_port)"
  done
}

# server.properties for a combined broker+controller node on $PORT / $CONTROLLER_PORT.
write_config() {
  cat >"$PROPERTIES" <<EOF
# Written by scripts/kafka.sh: a single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# One broker: every internal topic must have replication factor 1, or consumer
# groups, transactions and share groups fail. One partition each keeps startup fast.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
# Tests want consumers assigned at once, not after the default 3 s delay.
group.initial.rebalance.delay.ms=0
# After a kill -9 the controller refuses the restarted broker's registration
# (DUPLICATE_BROKER_REGISTRATION) until the dead incarnation's session expires:
# 9 s by default, retried every 2 s. A shorter session makes such a restart ~10 s faster.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
EOF
  if [ -n "${CONVEYOR_KAFKA_EXTRA_PROPERTIES:-}" ]; then
    [ -f "$CONVEYOR_KAFKA_EXTRA_PROPERTIES" ] ||
      die "CONVEYOR_KAFKA_EXTRA_PROPERTIES: no such file: $CONVEYOR_KAFKA_EXTRA_PROPERTIES"
    printf '# From %s:\n' "$CONVEYOR_KAFKA_EXTRA_PROPERTIES" >>"$PROPERTIES"
    sed -e "s/@PORT@/$PORT/g" -e "s/@CONTROLLER_PORT@/$CONTROLLER_PORT/g" \
      "$CONVEYOR_KAFKA_EXTRA_PROPERTIES" >>"$PROPERTIES"
  fi

  # log4j2: WARN everywhere, INFO for KafkaRaftServer (its "Kafka Server started" line
  # is the readiness signal). Appends, so a restart keeps the earlier history.
  cat >"$LOG4J_CONFIG" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/kafka.sh. -->
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="$LOG_FILE" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka.server.KafkaRaftServer" level="info"/>
    <Root level="warn">
      <AppenderRef ref="file"/>
    </Root>
  </Loggers>
</Configuration>
EOF
}

# Format $DATA as a new single-node cluster with a random cluster id.
format_storage() {
  local cluster_id
  cluster_id="$(random_cluster_id)"
  printf '%s\n' "$cluster_id" >"$CLUSTER_ID_FILE"
  log "formatting $DATA (cluster id $cluster_id)"
  # With controller.quorum.voters set, no --standalone.
  kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPERTIES" >&2
}

# Start the broker in the background on $PORT and wait until it is ready. Non-zero
# (after printing the log tail and killing the half-started JVM) if it is not.
launch() {
  rm -f "$PID_FILE"
  # Only the log written from now on counts as evidence of readiness.
  local offset=0
  [ -f "$LOG_FILE" ] && offset="$(wc -c <"$LOG_FILE")"
  printf '\n==== %s: starting on 127.0.0.1:%s\n' "$(date '+%F %T')" "$PORT" >>"$OUT_FILE"

  # setsid + nohup: the JVM gets its own session and survives this script, its
  # terminal and its process group. `exec` keeps the PID written by the inner shell.
  # fd 9 (our lock) is closed so the daemon does not hold the lock forever.
  (
    cd "$STATE"
    # shellcheck disable=SC2016  # $$ and $0/$@ are expanded by the inner shell
    setsid nohup bash -c 'printf "%s\n" "$$" >"$0"; exec "$@"' "$PID_FILE" \
      java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J_CONFIG" \
      -cp "$LIBS/*" kafka.Kafka "$PROPERTIES" \
      >>"$OUT_FILE" 2>&1 </dev/null &
  ) 9>&-

  local deadline=$((SECONDS + START_TIMEOUT)) pid=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    pid="$(broker_pid)"
    if [ -n "$pid" ]; then
      if ! is_our_broker "$pid"; then
        log "the broker exited during startup"
        break
      fi
      # Ready = "Kafka Server started" logged by this run, and the port accepts.
      # (The port alone is not enough: it is bound before the broker has caught up.)
      if [ "$(tail -c +"$((offset + 1))" "$LOG_FILE" 2>/dev/null |
        grep -c 'Kafka Server started' || true)" -gt 0 ] && port_open "$PORT"; then
        return 0
      fi
    fi
    sleep 0.2
  done
  [ "$SECONDS" -lt "$deadline" ] || log "the broker was not ready after ${START_TIMEOUT}s"
  # The innermost cause of a startup failure, e.g. "java.net.BindException: Address
  # already in use"; the caller shows the whole log tail if it gives up.
  local cause
  cause="$(tail -c +"$((offset + 1))" "$LOG_FILE" 2>/dev/null | grep -E '^Caused by:|ERROR' | tail -n 1 || true)"
  [ -z "$cause" ] || log "last error: $cause"
  pid="$(broker_pid)"
  if is_our_broker "$pid"; then
    kill -9 "$pid" 2>/dev/null || true
    wait_exit "$pid" 10 || true
  fi
  return 1
}

# Show the end of the broker's logs, then fail with MESSAGE.
fail_with_logs() {
  log "last lines of $LOG_FILE:"
  tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
  log "last lines of $OUT_FILE:"
  tail -n 10 "$OUT_FILE" >&2 2>/dev/null || true
  die "$1"
}

# --- commands ---------------------------------------------------------------------------

# True if a previous start left ports and a formatted log dir behind.
have_state() {
  [ -f "$PORT_FILE" ] && [ -f "$CONTROLLER_PORT_FILE" ] && [ -f "$PROPERTIES" ] &&
    [ -f "$DATA/meta.properties" ]
}

cmd_start() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.kafka.lock"

  if have_state; then
    read_ports
    local pid
    pid="$(broker_pid)"
    if is_our_broker "$pid"; then
      if port_open "$PORT"; then
        log "reusing the running broker (pid $pid) on 127.0.0.1:$PORT"
        address
        return 0
      fi
      # Alive but not listening (e.g. still recovering after a restart): give it time.
      log "broker $pid is alive but not listening on $PORT; waiting for it"
      local deadline=$((SECONDS + START_TIMEOUT))
      while [ "$SECONDS" -lt "$deadline" ] && is_our_broker "$pid"; do
        if port_open "$PORT"; then
          address
          return 0
        fi
        sleep 0.5
      done
      log "broker $pid never started listening; killing it and starting again"
      kill -9 "$pid" 2>/dev/null || true
      wait_exit "$pid" 10 || die "broker $pid did not die"
    fi
    # The process is gone but its data and ports are here: the test killed it (or it
    # crashed). Come back on the same ports with the same data, without re-formatting.
    ensure_tools
    ensure_jars
    # Same ports, so rewriting the config changes nothing but picks up script updates.
    write_config
    local attempt
    for attempt in 1 2 3; do
      log "restarting the broker on 127.0.0.1:$PORT with the existing data"
      launch && break
      [ "$attempt" -lt 3 ] || fail_with_logs "could not restart Kafka on port $PORT; see $LOG_FILE"
      # The port may still be held briefly (TIME_WAIT is fine; a lingering socket is not).
      sleep 2
    done
    log "broker $(broker_pid) ready on 127.0.0.1:$PORT"
    address
    return 0
  fi

  # Nothing usable: a new broker with new ports and freshly formatted storage.
  ensure_tools
  ensure_jars
  local attempt
  for attempt in 1 2 3; do
    rm -rf "$STATE"
    mkdir -p "$DATA"
    chmod 700 "$STATE"
    # New ports on each attempt, in case another process took one meanwhile.
    pick_ports
    write_config
    format_storage
    log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$PORT (controller on $CONTROLLER_PORT)"
    if launch; then
      # The port files are the marker of a usable state: written only once it worked.
      printf '%s\n' "$CONTROLLER_PORT" >"$CONTROLLER_PORT_FILE"
      printf '%s\n' "$PORT" >"$PORT_FILE"
      break
    fi
    [ "$attempt" -lt 3 ] || fail_with_logs "could not start Kafka; see $LOG_FILE"
  done
  log "broker $(broker_pid) ready on 127.0.0.1:$PORT"
  address
}

# `start`, but only as a comeback: refuses when there is no earlier broker to revive.
cmd_restart_after_kill() {
  have_state || die "no earlier broker in $STATE to restart; use 'start'"
  cmd_start
}

cmd_address() {
  if [ -f "$PORT_FILE" ]; then
    PORT="$(read_port_file "$PORT_FILE")"
    if is_running; then
      address
      return 0
    fi
  fi
  log "not running"
  exit 1
}

cmd_kill() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.kafka.lock"
  local pid
  pid="$(broker_pid)"
  if is_our_broker "$pid"; then
    log "kill -9 $pid (data and ports kept; 'start' brings it back on the same port)"
    kill -9 "$pid"
    wait_exit "$pid" 10 || die "broker $pid did not die"
  else
    log "not running"
  fi
}

cmd_stop() {
  make_services_root "$ROOT"
  take_lock "$ROOT/.kafka.lock"
  if [ ! -d "$STATE" ]; then
    log "nothing to stop"
    return 0
  fi
  local pid
  pid="$(broker_pid)"
  if is_our_broker "$pid"; then
    log "stopping broker $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "$STOP_TIMEOUT"; then
      log "broker $pid still alive after ${STOP_TIMEOUT}s; SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
      wait_exit "$pid" 10 || die "broker $pid did not die"
    fi
  fi
  rm -rf "$STATE"
  log "stopped; removed $STATE"
}

[ $# -eq 1 ] || usage
case "$1" in
  start) cmd_start ;;
  address) cmd_address ;;
  kill) cmd_kill ;;
  restart-after-kill) cmd_restart_after_kill ;;
  stop) cmd_stop ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
