# Shell helpers for benchmarks against pg_auto_failover (Debian's
# pg-auto-failover-cli and postgresql-<N>-auto-failover): a monitor and
# PostgreSQL nodes, each under its own `pg_autoctl` service, all on loopback
# under $D, run as the postgres OS user with pg_autoctl's configuration and
# state kept in $D/xdg (nothing in the postgres user's home).
# Source after setting D (a temp dir, mode 755). paf_cleanup stops
# everything and removes $D (kept with TANDEM_KEEP_TEMP=1).
# Authentication is "trust" on loopback and TLS is off: this measures the
# failover machinery, not the transport.
# shellcheck shell=bash

# shellcheck source=pgcluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/pgcluster.sh"
PAF_PIDS=()
PAF_MONITOR_URI=""

# paf_env: the environment pg_autoctl runs with (as an env(1) argument list).
paf_env() {
  echo "XDG_CONFIG_HOME=$D/xdg/config XDG_DATA_HOME=$D/xdg/data XDG_RUNTIME_DIR=$D/xdg/run PATH=$PGBIN:$PATH"
}

# paf ARG...: pg_autoctl ARG... as postgres.
paf() {
  # shellcheck disable=SC2046
  setpriv --reuid=postgres --regid=postgres --init-groups -- env $(paf_env) pg_autoctl "$@"
}

# paf_psql SQL: a query on the monitor's database.
paf_psql() {
  psql -X -q -At -h 127.0.0.1 -p "${PORT[monitor]}" -U autoctl_node -d pg_auto_failover -c "$*"
}

# paf_start_monitor: creates the monitor at $D/monitor on a free port
# (PORT[monitor]), makes it listen on 127.0.0.1 only, starts its service
# and waits until it answers. Sets PAF_MONITOR_URI.
paf_start_monitor() {
  mkdir -p "$D/xdg/config" "$D/xdg/data" "$D/xdg/run"
  chown -R postgres: "$D/xdg"
  chmod 700 "$D/xdg/run"
  PORT[monitor]=$(free_port)
  paf create monitor --pgdata "$D/monitor" --pgport "${PORT[monitor]}" --hostname 127.0.0.1 \
    --auth trust --no-ssl --pgctl "$PGBIN/pg_ctl" > "$D/monitor-create.log" 2>&1
  paf config set --pgdata "$D/monitor" postgresql.listen_addresses 127.0.0.1 >/dev/null
  paf_tune monitor "${PAF_MONITOR_SETTINGS[@]}"
  # shellcheck disable=SC2046
  setpriv --reuid=postgres --regid=postgres --init-groups -- env $(paf_env) \
    pg_autoctl run --pgdata "$D/monitor" > "$D/monitor.log" 2>&1 &
  PAF_PIDS+=($!)
  PAF_MONITOR_URI="postgres://autoctl_node@127.0.0.1:${PORT[monitor]}/pg_auto_failover?sslmode=disable"
  paf_poll 120 "the monitor answers" paf_psql "SELECT 1"
}

# paf_tune NAME SETTING...: appends "name = value" settings to the stopped
# server's postgresql.auto.conf ($D/NAME), which overrides what pg_autoctl
# wrote (it sizes shared_buffers to a quarter of the machine's memory).
paf_tune() {
  local n=$1 setting
  shift
  for setting in "$@"; do echo "$setting"; done |
    as_postgres tee -a "$D/$n/postgresql.auto.conf" >/dev/null
}
# What paf_tune gets: the monitor, and the first node (the others are
# copies of it, postgresql.auto.conf included).
PAF_MONITOR_SETTINGS=("shared_buffers = '32MB'")
# shellcheck disable=SC2034  # used by the scripts that source this file
PAF_NODE_SETTINGS=("shared_buffers = '128MB'" "max_connections = 30")

# paf_create_node NAME: creates node NAME (data dir $D/NAME, a free port in
# PORT[NAME], user postgres, database postgres) registered with the monitor
# (the first node becomes the primary, the next ones are cloned from it as
# secondaries); pg_autoctl leaves it stopped.
paf_create_node() {
  local n=$1
  PORT[$n]=$(free_port)
  paf create postgres --pgdata "$D/$n" --pgport "${PORT[$n]}" --listen 127.0.0.1 \
    --hostname 127.0.0.1 --name "$n" --auth trust --no-ssl --monitor "$PAF_MONITOR_URI" \
    --pgctl "$PGBIN/pg_ctl" --username postgres --dbname postgres > "$D/$n-create.log" 2>&1
}

# paf_run_node NAME: runs the service of a created node in the background.
paf_run_node() {
  local n=$1
  # shellcheck disable=SC2046
  setpriv --reuid=postgres --regid=postgres --init-groups -- env $(paf_env) \
    pg_autoctl run --pgdata "$D/$n" > "$D/$n.log" 2>&1 &
  PAF_PIDS+=($!)
}

# paf_start_node NAME: paf_create_node and paf_run_node in one: the service
# runs from the start (what a secondary needs: its copy is made while its
# service talks to the monitor).
paf_start_node() {
  local n=$1
  PORT[$n]=$(free_port)
  # shellcheck disable=SC2046
  setpriv --reuid=postgres --regid=postgres --init-groups -- env $(paf_env) \
    pg_autoctl create postgres --pgdata "$D/$n" --pgport "${PORT[$n]}" --listen 127.0.0.1 \
    --hostname 127.0.0.1 --name "$n" --auth trust --no-ssl --monitor "$PAF_MONITOR_URI" \
    --pgctl "$PGBIN/pg_ctl" --username postgres --dbname postgres --run > "$D/$n.log" 2>&1 &
  PAF_PIDS+=($!)
}

# paf_states: "name:reported/assigned ..." for every node, in node order.
paf_states() {
  paf_psql "SELECT string_agg(nodename || ':' || reportedstate || '/' || goalstate, ' '
                              ORDER BY nodeid) FROM pgautofailover.node"
}

# paf_stable NODES: true when there are NODES nodes, one is primary (or a
# lone one single), every other one secondary, and every node reports the
# state it is assigned.
paf_stable() {
  local states primaries=0 s count=0
  states=$(paf_states 2>/dev/null) || return 1
  for s in $states; do count=$((count + 1)); done
  [ "$count" = "$1" ] || return 1
  for s in $states; do
    case ${s#*:} in
      primary/primary | single/single) primaries=$((primaries + 1)) ;;
      secondary/secondary) ;;
      *) return 1 ;;
    esac
  done
  [ "$primaries" = 1 ]
}

# paf_primary: the name of the node the monitor assigns primary (or single).
paf_primary() {
  paf_psql "SELECT nodename FROM pgautofailover.node
            WHERE goalstate IN ('primary', 'single') ORDER BY nodeid LIMIT 1"
}

# paf_poll SECONDS WHAT COMMAND...: runs COMMAND every 0.1 s until it
# succeeds; fails naming WHAT after SECONDS.
paf_poll() {
  local seconds=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "pg_auto_failover: timed out after ${seconds}s waiting until $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

# paf_cleanup: stops the services (fast shutdown of their servers), any
# server left running, and removes $D.
paf_cleanup() {
  set +e
  local p
  for p in "${PAF_PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
  for p in "${PAF_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for pid_file in "$D"/*/postmaster.pid; do
    [ -f "$pid_file" ] && as_postgres "$PGBIN/pg_ctl" -D "$(dirname "$pid_file")" -m immediate -w stop \
      >/dev/null 2>&1
  done
  if [ "${TANDEM_KEEP_TEMP:-0}" = 1 ]; then echo "kept $D (logs)" >&2; else rm -rf "$D"; fi
}
