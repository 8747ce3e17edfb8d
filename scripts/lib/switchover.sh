# Shell helpers for bench/switchover: a client session per engine, used by
# an application-like writer and by the benchmark's probes, with no fork per
# write. psql and mariadb run as coprocesses that read statements from a
# pipe (autocommit, and they exit at the first error); Redis is spoken to in
# RESP over bash's /dev/tcp. A write counts as acknowledged only when the
# server's answer to it came back.
#
# Sessions (one at a time per shell):
#   sw_open ENGINE TARGET      TARGET is HOST:PORT, or for postgresql a libpq
#                              connection string or URI (multi-host works)
#   sw_write TABLE SEQ         TABLE w (the writer's rows/keys) or probe;
#                              0 = acknowledged (SW_PORT: the server's port),
#                              1 = failed (SW_ERR: why; the session is closed)
#   sw_close
# The writer:
#   sw_writer ENGINE LOG STOP_FILE SOURCE...   (see below)
# Knobs: SW_TIMEOUT (seconds to wait for the answer to a write, default
# 0.25), SW_CONNECT_TIMEOUT (the first write of a session, which includes the
# login; default 2), SW_INTERVAL_US (writer period, default 10000),
# SW_REDIS_PASSWORD_FILE (Redis login; read into memory, never in argv),
# SW_MYSQL_DEFAULTS_FILE (a private option file with the [client] user and
# password; without it, root without a password).
# Engines: postgresql (tables bench_w(id bigint) and bench_probe(id bigint)
# in database postgres, user postgres), mysql (bench.w(id), bench.probe(id)),
# redis (keys w:SEQ and probe:SEQ).
# shellcheck shell=bash

SW_TIMEOUT=${SW_TIMEOUT:-0.25}
SW_CONNECT_TIMEOUT=${SW_CONNECT_TIMEOUT:-2}
SW_INTERVAL_US=${SW_INTERVAL_US:-10000}
SW_ENGINE=""
SW_OPEN=0
SW_FRESH=0
SW_IN=""
SW_OUT=""
SW_PID=""
SW_FD=""
SW_TARGET_PORT=""
SW_PORT=""
SW_ERR=""
SW_NAP_FD=""

# sw_nap SECONDS: sleeps without a fork (a read that times out on a pipe
# nobody writes to).
sw_nap() {
  [ -n "$SW_NAP_FD" ] || exec {SW_NAP_FD}<> <(:)
  read -r -t "$1" -u "$SW_NAP_FD" _ || true
}

# sw_poll SECONDS WHAT COMMAND...: runs COMMAND every 0.1 s until it
# succeeds; fails naming WHAT after SECONDS.
sw_poll() {
  local seconds=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "timed out after ${seconds}s waiting until $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

# sw_start_controller SECRET: what start_controller (cluster.sh) does, but
# fails when the controller exits or does not answer within 60 s.
sw_start_controller() {
  local secret=$1 pid
  CPORT=$(free_port)
  (umask 077; printf 'pw-%s%s%s\n' "$RANDOM" "$RANDOM" "$RANDOM" > "$D/$secret")
  make_certs
  "$BIN/controller/tandem-controller" --listen "127.0.0.1:$CPORT" --data-dir "$D/controller" \
    --certs-dir "$CERTS" > "$D/controller.log" 2>&1 &
  pid=$!
  TC_PIDS+=("$pid")
  local deadline=$((SECONDS + 60))
  until ctl nodes >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      echo "the controller did not start: $(tail -n 1 "$D/controller.log")" >&2
      return 1
    fi
    sleep 0.1
  done
}

# sw_redis_cmd ARG...: sends one command as a RESP array.
sw_redis_cmd() {
  local out a
  out="*$#"$'\r\n'
  for a in "$@"; do out+="\$${#a}"$'\r\n'"$a"$'\r\n'; done
  printf '%s' "$out" 1>&"$SW_FD" 2>/dev/null
}

# sw_redis_reply TIMEOUT: reads a one-line reply into SW_REPLY.
sw_redis_reply() {
  SW_REPLY=""
  IFS= read -r -t "$1" -u "$SW_FD" SW_REPLY 2>/dev/null || return 1
  SW_REPLY=${SW_REPLY%$'\r'}
}

sw_open() {
  local engine=$1 target=$2 host port
  sw_close
  SW_ENGINE=$engine
  SW_TARGET_PORT=""
  SW_ERR=""
  if [[ $target =~ ^([^:/=]+):([0-9]+)$ ]]; then
    host=${BASH_REMATCH[1]}
    port=${BASH_REMATCH[2]}
    SW_TARGET_PORT=$port
  fi
  case $engine in
    postgresql)
      local conninfo=$target
      [ -n "$SW_TARGET_PORT" ] &&
        conninfo="host=$host port=$port user=postgres dbname=postgres connect_timeout=2"
      coproc SWCP { exec psql -X -q -At -v ON_ERROR_STOP=1 "$conninfo" 2>&1; }
      ;;
    mysql)
      local -a login=(--no-defaults -uroot)
      [ -n "${SW_MYSQL_DEFAULTS_FILE:-}" ] && login=(--defaults-file="$SW_MYSQL_DEFAULTS_FILE")
      coproc SWCP {
        exec mariadb "${login[@]}" -h "$host" -P "$port" -N -B -n --connect-timeout=2 2>&1
      }
      ;;
    redis)
      { exec {SW_FD}<>"/dev/tcp/$host/$port"; } 2>/dev/null || {
        SW_FD=""
        SW_ERR="connection to $target refused"
        return 1
      }
      SW_OPEN=1
      SW_FRESH=1
      if [ -n "${SW_REDIS_PASSWORD_FILE:-}" ]; then
        local pw
        IFS= read -r pw < "$SW_REDIS_PASSWORD_FILE"
        sw_redis_cmd AUTH "$pw"
        if ! sw_redis_reply "$SW_CONNECT_TIMEOUT" || [ "$SW_REPLY" != "+OK" ]; then
          SW_ERR="login to $target failed: ${SW_REPLY:-no answer}"
          sw_close
          return 1
        fi
      fi
      return 0
      ;;
    *)
      SW_ERR="unknown engine $engine"
      return 1
      ;;
  esac
  # Own copies of the coprocess's pipe ends: bash closes its own when it
  # reaps the coprocess, and a number reused by another open must not be
  # read by mistake.
  exec {SW_OUT}<&"${SWCP[0]}" {SW_IN}>&"${SWCP[1]}"
  SW_PID=$SWCP_PID
  SW_OPEN=1
  SW_FRESH=1
}

sw_close() {
  [ "$SW_OPEN" = 1 ] || return 0
  SW_OPEN=0
  if [ -n "$SW_FD" ]; then
    exec {SW_FD}>&-
    SW_FD=""
    return 0
  fi
  exec {SW_IN}>&- {SW_OUT}<&-
  kill "$SW_PID" 2>/dev/null || true
  wait "$SW_PID" 2>/dev/null || true
  SW_PID=""
}

# sw_fail REASON: records why the write failed and closes the session.
sw_fail() {
  SW_ERR=$1
  sw_close
  return 1
}

sw_write() {
  local table=$1 seq=$2 timeout=$SW_TIMEOUT line=""
  SW_PORT=""
  [ "$SW_OPEN" = 1 ] || { SW_ERR="no session"; return 1; }
  # The first write of a psql/mariadb session waits for the login too.
  [ "$SW_FRESH" = 1 ] && [ "$SW_ENGINE" != redis ] && timeout=$SW_CONNECT_TIMEOUT
  SW_FRESH=0
  case $SW_ENGINE in
    postgresql)
      printf "INSERT INTO bench_%s (id) VALUES (%s) RETURNING 'ack', inet_server_port();\n" \
        "$table" "$seq" 1>&"$SW_IN" 2>/dev/null || { sw_fail "psql is gone"; return 1; }
      IFS= read -r -t "$timeout" -u "$SW_OUT" line 2>/dev/null ||
        { sw_fail "no answer within ${timeout}s${line:+: $line}"; return 1; }
      [[ $line == "ack|"* ]] || { sw_fail "$line"; return 1; }
      SW_PORT=${line#ack|}
      ;;
    mysql)
      printf "INSERT INTO bench.%s (id) VALUES (%s); SELECT 'ack', @@port;\n" \
        "$table" "$seq" 1>&"$SW_IN" 2>/dev/null || { sw_fail "mariadb is gone"; return 1; }
      IFS= read -r -t "$timeout" -u "$SW_OUT" line 2>/dev/null ||
        { sw_fail "no answer within ${timeout}s${line:+: $line}"; return 1; }
      if [[ $line != "ack"$'\t'* ]]; then
        # The client echoes the failed statement between dashes before
        # the ERROR line, then exits.
        local first=$line
        while [[ $line != ERROR* ]] && IFS= read -r -t "$timeout" -u "$SW_OUT" line 2>/dev/null; do :; done
        [[ $line == ERROR* ]] || line=$first
        sw_fail "$line"
        return 1
      fi
      SW_PORT=${line#ack$'\t'}
      ;;
    redis)
      sw_redis_cmd SET "$table:$seq" 1 || { sw_fail "connection closed"; return 1; }
      sw_redis_reply "$timeout" || { sw_fail "no answer within ${timeout}s"; return 1; }
      [ "$SW_REPLY" = "+OK" ] || { sw_fail "$SW_REPLY"; return 1; }
      SW_PORT=$SW_TARGET_PORT
      ;;
  esac
}

# sw_env_master FILE PREFIX: sets SW_ENV_TARGET to HOST:PORT of the master
# named by the env file (E_ADDRESS, E_PORT with E = PREFIX) and SW_ENV_ROLE
# to its TANDEM_ROLE; both empty when the file is missing or incomplete.
sw_env_master() {
  local file=$1 prefix=$2 key value address="" port=""
  SW_ENV_TARGET=""
  SW_ENV_ROLE=""
  [ -r "$file" ] || return 1
  while IFS='=' read -r key value; do
    value=${value#\'}
    value=${value%\'}
    case $key in
      "${prefix}_ADDRESS") address=$value ;;
      "${prefix}_PORT") port=$value ;;
      TANDEM_ROLE) SW_ENV_ROLE=$value ;;
    esac
  done < "$file"
  [ -n "$address" ] && [ -n "$port" ] || return 1
  SW_ENV_TARGET=$address:$port
}

# sw_writer ENGINE LOG STOP_FILE SOURCE...: the application. Writes one
# row/key every SW_INTERVAL_US with a growing sequence number to the
# master, until STOP_FILE exists. Each SOURCE is either env:PREFIX:FILE (an
# agent's env file; the masters they name are the candidates) or a
# postgresql connection string (libpq finds the master itself, e.g. with
# target_session_attrs=read-write). After a failure it looks the master up
# again and tries the candidates, the one that just failed last. LOG gets
# one line per attempt:
#   A SEQ TIME_US PORT             acknowledged by the server on PORT
#   F SEQ TIME_US TARGET REASON    failed
sw_writer() {
  local engine=$1 log=$2 stop=$3
  shift 3
  local seq=0 current="" failed="" next now src c nap
  local -a candidates
  # A write to a session whose reader is gone must fail, not kill the shell.
  trap '' PIPE
  exec {logfd}>>"$log"
  next=${EPOCHREALTIME/[.,]/}
  while [ ! -e "$stop" ]; do
    if [ -z "$current" ]; then
      candidates=()
      for src in "$@"; do
        if [[ $src == env:* ]]; then
          src=${src#env:}
          sw_env_master "${src#*:}" "${src%%:*}" || continue
          c=$SW_ENV_TARGET
        else
          c=$src
        fi
        [[ " ${candidates[*]} " == *" $c "* ]] || candidates+=("$c")
      done
      # The one that failed last goes last.
      if [[ " ${candidates[*]} " == *" $failed "* ]]; then
        local -a others=()
        for c in "${candidates[@]}"; do [ "$c" = "$failed" ] || others+=("$c"); done
        candidates=("${others[@]}" "$failed")
      fi
      for c in "${candidates[@]}"; do
        seq=$((seq + 1))
        if sw_open "$engine" "$c" && sw_write w "$seq"; then
          printf 'A %s %s %s\n' "$seq" "${EPOCHREALTIME/[.,]/}" "$SW_PORT" >&"$logfd"
          current=$c
          break
        fi
        printf 'F %s %s %s %s\n' "$seq" "${EPOCHREALTIME/[.,]/}" "$c" "${SW_ERR//$'\n'/ }" >&"$logfd"
        failed=$c
      done
    else
      seq=$((seq + 1))
      if sw_write w "$seq"; then
        printf 'A %s %s %s\n' "$seq" "${EPOCHREALTIME/[.,]/}" "$SW_PORT" >&"$logfd"
      else
        printf 'F %s %s %s %s\n' "$seq" "${EPOCHREALTIME/[.,]/}" "$current" "${SW_ERR//$'\n'/ }" >&"$logfd"
        failed=$current
        current=""
      fi
    fi
    # Next tick; no nap when this one is already late.
    next=$((next + SW_INTERVAL_US))
    now=${EPOCHREALTIME/[.,]/}
    if ((next > now)); then
      printf -v nap '0.%06d' $((next - now))
      sw_nap "$nap"
    else
      next=$now
    fi
  done
  sw_close
  exec {logfd}>&-
}

# sw_await_switch ENGINE TARGET ENV_FILE PREFIX TIMEOUT_S: after a promote,
# polls every 10 ms until a probe write to TARGET (HOST:PORT, the new
# master, directly) is acknowledged and, when ENV_FILE is not empty, until
# that env file names TARGET as the master with TANDEM_ROLE=master. A
# refused probe costs a new client session (psql and mariadb exit at the
# first error; about 20-40 ms here), which bounds the resolution. Prints
# "WRITABLE_US ENV_US" (microseconds since the epoch; "-" for what did not
# happen within TIMEOUT_S, or for ENV_US without ENV_FILE) and the last
# probe error on a second line.
sw_await_switch() {
  local engine=$1 target=$2 env_file=$3 prefix=$4 timeout_s=$5
  local writable="" env="" seq=0 now deadline
  trap '' PIPE
  now=${EPOCHREALTIME/[.,]/}
  deadline=$((now + timeout_s * 1000000))
  while :; do
    if [ -z "$writable" ]; then
      [ "$SW_OPEN" = 1 ] || sw_open "$engine" "$target" || true
      seq=$((seq + 1))
      if [ "$SW_OPEN" = 1 ] && sw_write probe "$seq"; then writable=${EPOCHREALTIME/[.,]/}; fi
    fi
    if [ -n "$env_file" ] && [ -z "$env" ] && sw_env_master "$env_file" "$prefix" &&
      [ "$SW_ENV_TARGET" = "$target" ] && [ "$SW_ENV_ROLE" = master ]; then
      env=${EPOCHREALTIME/[.,]/}
    fi
    [ -n "$writable" ] && { [ -n "$env" ] || [ -z "$env_file" ]; } && break
    ((${EPOCHREALTIME/[.,]/} < deadline)) || break
    sw_nap 0.01
  done
  sw_close
  echo "${writable:--} ${env:--}"
  echo "${SW_ERR//$'\n'/ }"
}
