# Shell helpers shared by scripts/demo and bench/*: free ports, tandemctl,
# a controller on loopback, and the processes to stop at the end. Source
# after setting D (a temp dir, mode 755) and BIN (the build dir); the
# engine-specific helpers (pgcluster.sh, rediscluster.sh) source this file.
# shellcheck shell=bash

TC_PIDS=()
declare -A PORT

free_port() {  # a free TCP port on 127.0.0.1
  local p
  while :; do
    p=$((20000 + RANDOM % 10000))
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

# Every link is mutual TLS: the cluster's certificates live in $D/certs,
# made with tandemctl cert (make_certs, launch_agent).
CERTS=${D:-/tmp}/certs
ctl() { "$BIN/tandemctl/tandemctl" --controller "127.0.0.1:$CPORT" --certs-dir "$CERTS" "$@"; }

# cert ARGS...: tandemctl cert ARGS on $CERTS, the command echoed when
# TANDEM_SHOW_CERT_COMMANDS=1 (scripts/demo shows how it made them).
cert() {
  if [ "${TANDEM_SHOW_CERT_COMMANDS:-0}" = 1 ]; then
    echo "\$ tandemctl cert $* --certs-dir $CERTS"
  fi
  "$BIN/tandemctl/tandemctl" cert "$@" --certs-dir "$CERTS" >/dev/null
}

# make_certs: the cluster's CA, the controller's certificate (127.0.0.1) and
# an admin's client certificate, once.
make_certs() {
  CERTS=$D/certs
  [ -f "$CERTS/ca.crt" ] && return
  cert create-ca
  cert create-controller --address 127.0.0.1
  cert create-client admin --role admin
}

# start_controller SECRET: writes a random secret to $D/SECRET (mode 0600,
# for the engines' passwords) and starts a controller on a free port (CPORT).
start_controller() {
  local secret=$1
  CPORT=$(free_port)
  (umask 077; printf 'pw-%s%s%s\n' "$RANDOM" "$RANDOM" "$RANDOM" > "$D/$secret")
  make_certs
  "$BIN/controller/tandem-controller" --listen "127.0.0.1:$CPORT" --data-dir "$D/controller" \
    --certs-dir "$CERTS" > "$D/controller.log" 2>&1 &
  TC_PIDS+=($!)
  until ctl nodes >/dev/null 2>&1; do sleep 0.1; done
}

# launch_agent NAME: writes $D/NAME/agent.yaml from the engine section on
# stdin (and any top-level lines before it, e.g. transfer_listen), with the
# node, controller, env file, hook and state dir every demo node shares, and
# starts the node's agent (log: $D/NAME/agent.log).
launch_agent() {
  local n=$1
  [ -f "$CERTS/node.$n.crt" ] || cert create-node "$n" --address 127.0.0.1
  {
    cat <<YAML
node: $n
stack: main
controller: 127.0.0.1:$CPORT
addresses: {internal: 127.0.0.1}
env_file: $D/$n/env
env_hook: "echo \"\$(date +%T) env changed\" >> $D/$n/hook.log"
state_dir: $D/$n/state
health_listen: ""
reconcile_interval: 2
certs_dir: $CERTS
YAML
    cat
  } > "$D/$n/agent.yaml"
  "$BIN/agent/tandem-agent" --config "$D/$n/agent.yaml" > "$D/$n/agent.log" 2>&1 &
  TC_PIDS+=($!)
}

# stop_started: stops the controller and agents started here.
stop_started() {
  for p in "${TC_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${TC_PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
