# Shell helpers for MariaDB benchmarks and demos: a controller, MariaDB
# nodes with an agent each (the agent starts the node's mariadbd with its
# default start command), tandemctl, all on loopback under $D.
# Source after setting D (a temp dir, mode 755) and BIN (the build dir).
# my_cleanup stops everything and removes $D (kept with TANDEM_KEEP_TEMP=1).
# Node NAME's data dir is $D/NAME/data, so its server's pid file, socket and
# log are $D/NAME/data.{pid,sock,log} (the engine's default start). Root has
# an empty password over TCP (mariadb-install-db
# --auth-root-authentication-method=normal); the replication password comes
# from the file given to start_controller.
# shellcheck shell=bash

# shellcheck source=cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
# Server arguments of every node: small buffers, loopback only.
MYSQL_SERVER_ARGS=(--bind-address=127.0.0.1 --gtid-strict-mode=ON --skip-name-resolve
  --innodb-buffer-pool-size=32M --innodb-log-file-size=48M
  --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 --max-connections=50
  --open-files-limit=4096 --performance-schema=OFF)
MYSQL_NEXT_SERVER_ID=1
# The file under $D that start_controller was given (replication password).
MYSQL_REPLICATION_SECRET=${MYSQL_REPLICATION_SECRET:-replication.password}

as_mysql() { setpriv --reuid=mysql --regid=mysql --init-groups -- "$@"; }

# myq PORT SQL: runs SQL as root over TCP; tab-separated rows, no header.
myq() { local port=$1; shift; mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot -NBe "$*"; }

# stop_mysql PID_FILE: SIGTERM to the server of PID_FILE and waits until it
# is gone.
stop_mysql() {
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

my_cleanup() {
  set +e
  stop_started
  for pid_file in "$D"/*/data.pid; do
    [ -f "$pid_file" ] && stop_mysql "$pid_file"
  done
  if [ "${TANDEM_KEEP_TEMP:-0}" = 1 ]; then echo "kept $D (logs)" >&2; else rm -rf "$D"; fi
}

# init_mysql NAME: an initialised data dir $D/NAME/data owned by mysql and a
# port in PORT[NAME]. Nothing is started. mariadb-install-db gets a private
# tmpdir ($D/NAME/tmp) and one retry on a clean directory: its bootstrap
# server has been seen failing on a busy shared /tmp.
init_mysql() {
  local n=$1
  PORT[$n]=$(free_port)
  mkdir -p "$D/$n/tmp"
  chown mysql: "$D/$n" "$D/$n/tmp"
  for _ in 1 2; do
    rm -rf "$D/$n/data"
    as_mysql mariadb-install-db --no-defaults --datadir="$D/$n/data" \
      --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
      --tmpdir="$D/$n/tmp" --innodb-flush-method=nosync --innodb-doublewrite=0 \
      --innodb-flush-log-at-trx-commit=0 > "$D/$n/install-db.log" 2>&1 && return 0
  done
  echo "mariadb-install-db failed twice for $n (see $D/$n/install-db.log)" >&2
  return 1
}

# mysql_server_args_yaml ID: MYSQL_SERVER_ARGS and --server-id=ID as a YAML
# flow list.
mysql_server_args_yaml() {
  local out="" a
  for a in "${MYSQL_SERVER_ARGS[@]}" "--server-id=$1"; do out+="${out:+, }\"$a\""; done
  echo "[$out]"
}

# start_mysql_agent NAME: writes $D/NAME/agent.yaml (a server id of its own,
# a transfer port for seeding) and starts the node's agent, which starts its
# mariadbd. The controller must be running (start_controller SECRET, whose
# file is the replication password).
start_mysql_agent() {
  local n=$1
  launch_agent "$n" <<YAML
transfer_listen: 127.0.0.1:$(free_port)
engine:
  type: mysql
  port: ${PORT[$n]}
  data_dir: $D/$n/data
  user: root
  os_user: mysql
  server_args: $(mysql_server_args_yaml "$MYSQL_NEXT_SERVER_ID")
  replication_password_file: $D/$MYSQL_REPLICATION_SECRET
  timeout: 600
YAML
  MYSQL_NEXT_SERVER_ID=$((MYSQL_NEXT_SERVER_ID + 1))
}
