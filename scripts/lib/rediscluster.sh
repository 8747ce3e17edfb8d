# Shell helpers for the Redis benchmark (and any Redis demo): a controller,
# Redis nodes with an agent each (the agent starts the node's redis-server
# from <node>/data/redis.conf), tandemctl, all on loopback under $D.
# Source after setting D (a temp dir, mode 755) and BIN (the build dir).
# rc_cleanup stops everything and removes $D (kept with TANDEM_KEEP_TEMP=1).
# Every redis-server gets the same requirepass, from $D/redis.password
# (mode 0600); redis-cli reads it from REDISCLI_AUTH, never from argv.
# shellcheck shell=bash

# shellcheck source=cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
# Server arguments of every node (and of a benchmark's plain server):
# persistence on (a master needs it), no 5 s wait before a full sync.
REDIS_SERVER_ARGS=(--bind 127.0.0.1 --save "3600 1" --appendonly yes --repl-diskless-sync-delay 0)

# stop_redis DATA_DIR: stops the redis-server whose pid file is
# DATA_DIR/redis.pid (SIGTERM, repeated: Redis ignores one while it writes
# its first AOF) and waits until it is gone.
stop_redis() {
  local pid_file=$1/redis.pid pid
  [ -f "$pid_file" ] || return 0
  pid=$(cat "$pid_file")
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

rc_cleanup() {
  set +e
  stop_started
  for pid_file in "$D"/*/data/redis.pid; do
    [ -f "$pid_file" ] && stop_redis "$(dirname "$pid_file")"
  done
  if [ "${TANDEM_KEEP_TEMP:-0}" = 1 ]; then echo "kept $D (logs)" >&2; else rm -rf "$D"; fi
}

rcli() { local port=$1; shift; REDISCLI_AUTH=$(cat "$D/redis.password") redis-cli -h 127.0.0.1 -p "$port" "$@"; }
# rinfo PORT SECTION FIELD: one field of INFO SECTION.
rinfo() { rcli "$1" INFO "$2" | tr -d '\r' | sed -n "s/^$3://p"; }

# init_redis NAME: a data dir $D/NAME/data with a redis.conf holding the
# requirepass, and a port in PORT[NAME]. Nothing is started.
init_redis() {
  local n=$1
  PORT[$n]=$(free_port)
  mkdir -p "$D/$n/data"
  chmod 700 "$D/$n/data"
  (umask 077; printf 'requirepass "%s"\n' "$(cat "$D/redis.password")" > "$D/$n/data/redis.conf")
}

# start_plain_redis NAME: redis-server on $D/NAME/data, started by hand the
# way the engine's default start does it (no agent).
start_plain_redis() {
  local n=$1
  (umask 077; redis-server "$D/$n/data/redis.conf" --port "${PORT[$n]}" --dir "$D/$n/data" \
    --daemonize yes --pidfile "$D/$n/data/redis.pid" --logfile "$D/$n/redis.log" \
    "${REDIS_SERVER_ARGS[@]}")
  until [ "$(rcli "${PORT[$n]}" PING 2>/dev/null)" = PONG ]; do sleep 0.02; done
}

# redis_server_args_yaml: REDIS_SERVER_ARGS as a YAML flow list.
redis_server_args_yaml() {
  local out="" a
  for a in "${REDIS_SERVER_ARGS[@]}"; do out+="${out:+, }\"$a\""; done
  echo "[$out]"
}

# start_redis_agent NAME: writes $D/NAME/agent.yaml and starts the node's
# agent, which starts its redis-server.
start_redis_agent() {
  local n=$1
  launch_agent "$n" <<YAML
engine:
  type: redis
  port: ${PORT[$n]}
  data_dir: $D/$n/data
  password_file: $D/redis.password
  replication_password_file: $D/redis.password
  server_args: $(redis_server_args_yaml)
  log_file: $D/$n/redis.log
  timeout: 600
YAML
}

# wait_idle PORT: until the server runs no background save, AOF rewrite or
# load (a full sync waits for such a child; measurements start without one).
wait_idle() {
  local info
  while :; do
    info=$(rcli "$1" INFO persistence | tr -d '\r')
    grep -q '^rdb_bgsave_in_progress:0' <<<"$info" && grep -q '^aof_rewrite_in_progress:0' <<<"$info" \
      && grep -q '^aof_rewrite_scheduled:0' <<<"$info" && grep -q '^loading:0' <<<"$info" && return
    sleep 0.05
  done
}
