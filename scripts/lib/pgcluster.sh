# Shell helpers shared by scripts/demo and bench/*: a controller, PostgreSQL
# data dirs with an agent each, tandemctl, all on loopback under $D.
# Source after setting D (a temp dir, mode 755) and BIN (the build dir).
# shellcheck shell=bash

# shellcheck source=cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

tc_cleanup() {
  set +e
  stop_started
  for pid_file in "$D"/*/data/postmaster.pid "$D"/*/postmaster.pid; do
    [ -f "$pid_file" ] && as_postgres "$PGBIN/pg_ctl" -D "$(dirname "$pid_file")" -m fast -w stop >/dev/null 2>&1
  done
  rm -rf "$D"
}

psql_on() { local port=$1; shift; psql -X -q -At -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "$*"; }

# init_pg NAME: a PostgreSQL data dir at $D/NAME/data and a port in PORT[NAME].
init_pg() {
  local n=$1
  PORT[$n]=$(free_port)
  mkdir -p "$D/$n"; chown postgres: "$D/$n"
  as_postgres "$PGBIN/initdb" --no-sync -U postgres --auth=trust -D "$D/$n/data" >/dev/null
  # A demoted master rejoins with pg_rewind (no full copy) only with this.
  echo "wal_log_hints = on" | as_postgres tee -a "$D/$n/data/postgresql.conf" >/dev/null
}

# pg_server_args NAME: the server arguments the demo and benches use.
pg_server_args() {
  echo "\"-c\", \"listen_addresses=127.0.0.1\", \"-c\", \"unix_socket_directories=$D/$1\", \
\"-c\", \"shared_buffers=128MB\", \"-c\", \"max_connections=30\""
}

# start_agent NAME: writes $D/NAME/agent.yaml and starts the node's agent.
start_agent() {
  local n=$1
  launch_agent "$n" <<YAML
engine:
  type: postgresql
  port: ${PORT[$n]}
  data_dir: $D/$n/data
  user: postgres
  os_user: postgres
  bin_dir: $PGBIN
  server_args: [$(pg_server_args "$n")]
  log_file: $D/$n/postgres.log
  replication_password_file: $D/replication.password
  timeout: 600
YAML
}
