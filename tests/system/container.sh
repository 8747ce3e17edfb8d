# shellcheck shell=bash
# The Debian 12 container of the system tests: its root filesystem (made
# with debootstrap once, cached), booted with systemd-nspawn, commands run
# inside with nsenter. Sourced by tests/system/system_test.
#
# Environment:
#   TANDEM_SYSTEM_RUN    this build's run directory (the container's copy of
#                        the root filesystem, its pids, console log, .deb)
#   TANDEM_SYSTEM_CACHE  the cache of root filesystems, outside the build
#                        tree (default /var/cache/tandem-system-test)
#   TANDEM_BUILD_DIR     the build tree (cpack makes the .deb there)
#
# A container that cannot be made or booted fails the test with the reason;
# nothing here skips.

RUN=${TANDEM_SYSTEM_RUN:?TANDEM_SYSTEM_RUN is not set}
CACHE=${TANDEM_SYSTEM_CACHE:-/var/cache/tandem-system-test}
ROOT=$RUN/root
SUITE=bookworm
# What the container has besides the .deb's own dependencies: systemd, and
# the distribution's database servers. A change here makes a new cache entry.
BASE_PACKAGES=(systemd systemd-sysv dbus)
SERVER_PACKAGES=(postgresql-15 mariadb-server mariadb-backup redis-server)
RECIPE_VERSION=1  # bump when the way the root filesystem is made changes
BOOT_TIMEOUT=120  # seconds until systemctl is-system-running says running

die() {
  echo "FAILED: $*" >&2
  exit 1
}

note() { echo "--- $*" >&2; }

require_host() {
  [ "$(id -u)" = 0 ] || die "the system tests run as root (debootstrap, systemd-nspawn)"
  local tool missing=()
  for tool in systemd-nspawn debootstrap nsenter jq cpack dpkg-deb flock sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing on this host: ${missing[*]} (scripts/setup installs them)"
}

# The Debian archives apt already uses on this host, main suite first.
archive_urls() {
  {
    # deb822 .sources: the URIs of the entries whose Suites name $SUITE.
    awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uris != "" && suites ~ "(^| )" suite "( |$)") print uris; uris = ""; suites = ""; next }
      /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      END { if (uris != "" && suites ~ "(^| )" suite "( |$)") print uris }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n'
    # one-line format: deb [options] URL SUITE components
    sed -n -E "s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+${SUITE}[[:space:]].*/\2/p" \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | awk 'NF && !seen[$0]++'
}

# The .deb of this build, made into $RUN/deb (fresh each run).
make_deb() {
  rm -rf "$RUN/deb"
  local out
  out=$(cd "$TANDEM_BUILD_DIR" && cpack -G DEB -B "$RUN/deb" 2>&1) ||
    die "cpack -G DEB failed: $(tail -n 20 <<<"$out")"
  DEB=$(ls "$RUN"/deb/tandem_*.deb 2>/dev/null | head -n 1)
  [ -n "$DEB" ] || die "cpack made no tandem_*.deb: $(tail -n 20 <<<"$out")"
}

# "Depends, Recommends" of the .deb: installed into the cached root
# filesystem, so that `apt install ./tandem_*.deb` needs no network.
deb_requirements() {
  local depends recommends
  depends=$(dpkg-deb -f "$DEB" Depends)
  recommends=$(dpkg-deb -f "$DEB" Recommends)
  echo "${depends}${recommends:+, $recommends}"
}

# Builds a root filesystem into $1 (which must not exist). Needs the network.
build_rootfs() {
  local dir=$1 requirements=$2 url built=""
  local log=$dir.log
  : >"$log"
  for url in $(archive_urls); do
    note "debootstrap $SUITE from $url"
    rm -rf "$dir"
    if debootstrap --variant=minbase --include="$(IFS=,; echo "${BASE_PACKAGES[*]}")" \
      "$SUITE" "$dir" "$url" >>"$log" 2>&1; then
      built=$url
      break
    fi
  done
  [ -n "$built" ] || die "debootstrap of $SUITE failed from every archive in apt's sources ($(archive_urls | tr '\n' ' ')): $(tail -n 15 "$log")"
  # apt's own sources (with their keyrings), so that the container has this
  # host's point release and security updates: the .deb's dependencies.
  rm -f "$dir/etc/apt/sources.list"
  local f key
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    cp "$f" "$dir$f"
    for key in $(sed -n -E 's/^Signed-By:[[:space:]]*(\/[^[:space:]]+)$/\1/p; s/.*signed-by=(\/[^] ]+).*/\1/p' "$f"); do
      [ -f "$key" ] && install -D -m 644 "$key" "$dir$key"
    done
  done
  # Packages are installed, not started (as in a chroot).
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 755 "$dir/usr/sbin/policy-rc.d"
  note "installing ${SERVER_PACKAGES[*]} and the package's dependencies"
  if ! systemd-nspawn --quiet --register=no --keep-unit --pipe -D "$dir" \
    --setenv=DEBIAN_FRONTEND=noninteractive --setenv=REQUIREMENTS="$requirements" -- \
    /bin/sh -euc '
      apt-get -q update
      apt-get -q -y upgrade
      apt-get -q -y install --no-install-recommends "$@"
      apt-get -q -y satisfy --no-install-recommends "$REQUIREMENTS"
      apt-get clean' sh "${SERVER_PACKAGES[@]}" >>"$log" 2>&1 </dev/null; then
    die "installing packages into the container's root filesystem failed: $(tail -n 15 "$log")"
  fi
  rm -f "$dir/usr/sbin/policy-rc.d"
}

# Copies the cached root filesystem for this package list to $ROOT, making
# it first when there is none. Entries are keyed on the list; entries beyond
# the two most recently used are removed (under the same lock, so never one
# that another build is copying).
copy_rootfs() {
  local requirements key
  requirements=$(deb_requirements)
  key=$(printf '%s\n' "$SUITE" "$RECIPE_VERSION" "${BASE_PACKAGES[*]}" \
    "${SERVER_PACKAGES[*]}" "$requirements" | sha256sum | cut -c1-16)
  ROOTFS=$CACHE/rootfs-$key
  mkdir -p "$CACHE"
  (
    flock 9
    if [ ! -f "$ROOTFS/.complete" ]; then
      note "no cached root filesystem for this package list: making $ROOTFS"
      rm -rf "$ROOTFS.new" "$ROOTFS"
      build_rootfs "$ROOTFS.new" "$requirements"
      touch "$ROOTFS.new/.complete"
      mv "$ROOTFS.new" "$ROOTFS"
      rm -f "$ROOTFS.new.log"
    fi
    touch "$ROOTFS/.complete"  # most recently used
    ls -1dt "$CACHE"/rootfs-*/.complete 2>/dev/null | tail -n +3 | while read -r old; do
      rm -rf "$(dirname "$old")"
    done
    note "copying $ROOTFS"
    cp -a --reflink=auto "$ROOTFS" "$ROOT" || die "copying $ROOTFS to $ROOT failed"
    rm -f "$ROOT/.complete"
  ) 9>"$CACHE/lock" || exit 1
}

# The systemd-nspawn processes that run a container on $ROOT (normally one:
# the pid this run recorded; more only after a crash of the test itself).
nspawn_pids() {
  local file argv0
  # Each argument of a cmdline is a NUL-terminated "line" for grep -z.
  for file in $(grep -s -l -z -x -F -e "--directory=$ROOT" /proc/[0-9]*/cmdline); do
    argv0=$({ head -z -n 1 "$file" | tr -d '\0'; } 2>/dev/null)
    [[ $argv0 == *systemd-nspawn ]] && basename "$(dirname "$file")"
  done
  return 0
}

# Of those, the first: systemd-nspawn forks helpers that carry its command
# line until they exec the container's init.
nspawn_main_pid() {
  local pids pid ppid
  pids=$(nspawn_pids)
  for pid in $pids; do
    ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    grep -qx -- "$ppid" <<<"$pids" || { echo "$pid"; return 0; }
  done
  return 0
}

nspawn_pid() { cat "$RUN/nspawn.pid" 2>/dev/null; }

# The processes that run inside $ROOT (the container's), by their root.
container_pids() {
  find /proc/[0-9]*/root -maxdepth 0 -lname "$ROOT" 2>/dev/null | cut -d/ -f3
  return 0
}

# Whether the recorded systemd-nspawn process runs on $ROOT.
container_running() {
  local pid
  pid=$(nspawn_pid) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && nspawn_pids | grep -qx "$pid"
}

# The container's init (its systemd), the target of nsenter.
leader_pid() {
  local pid
  pid=$(ps -o pid= --ppid "$(nspawn_pid)" 2>/dev/null | head -n 1 | tr -d ' ')
  [ -n "$pid" ] || die "the container has no init process (systemd-nspawn: $(tail -n 5 "$RUN/console.log" 2>/dev/null))"
  echo "$pid"
}

# Runs a command inside the container (all its namespaces), with a clean
# environment and no terminal.
in_ct() {
  nsenter -t "$(leader_pid)" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@" </dev/null
}

# Runs shell text inside the container, stopping at the first failure.
ct_sh() { in_ct bash -euo pipefail -c "$1"; }

# Boots $ROOT and waits until its systemd says it is up.
boot() {
  note "booting the container"
  : >>"$RUN/console.log"
  # Its own session, its output in a file: it outlives this test process.
  [ -z "$(nspawn_pids)" ] || die "a container already runs on $ROOT"
  setsid systemd-nspawn --register=no --keep-unit --boot --directory="$ROOT" \
    --private-network --console=passive --machine=tandem-system \
    </dev/null >>"$RUN/console.log" 2>&1 &
  local launched=$! deadline=$((SECONDS + BOOT_TIMEOUT)) state="" pid=""
  while :; do
    pid=$(nspawn_main_pid)
    [ -z "$pid" ] || break
    kill -0 "$launched" 2>/dev/null ||
      die "systemd-nspawn exited: $(tail -n 20 "$RUN/console.log")"
    [ $SECONDS -lt $deadline ] || die "systemd-nspawn did not start: $(tail -n 20 "$RUN/console.log")"
    sleep 0.1
  done
  echo "$pid" >"$RUN/nspawn.pid"
  while [ $SECONDS -lt $deadline ]; do
    container_running || die "systemd-nspawn exited while booting: $(tail -n 20 "$RUN/console.log")"
    if [ -n "$(ps -o pid= --ppid "$(nspawn_pid)" 2>/dev/null)" ]; then
      state=$(in_ct systemctl is-system-running 2>/dev/null || true)
      case $state in
        running) return 0 ;;
        degraded)
          note "the container is up with failed units: $(in_ct systemctl --failed --plain --no-legend 2>&1 | tr '\n' ';')"
          return 0 ;;
      esac
    fi
    sleep 0.2
  done
  die "the container did not boot within ${BOOT_TIMEOUT}s (systemctl is-system-running: ${state:-no answer}; failed units: $(in_ct systemctl --failed --plain --no-legend 2>&1 | tr '\n' ';'); console: $(tail -n 10 "$RUN/console.log" | tr '\n' ' '))"
}

# Shuts the container down and waits for systemd-nspawn to exit; kills
# that process (by its pid) only when the shutdown hangs.
power_off() {
  container_running || return 0
  local pid deadline
  pid=$(nspawn_pid)
  note "powering the container off"
  in_ct systemctl poweroff >/dev/null 2>&1 || true
  local started=$SECONDS reported=""
  deadline=$((SECONDS + 120))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    if [ -z "$reported" ] && [ $((SECONDS - started)) -ge 15 ]; then
      reported=1
      note "still shutting down after 15s: $(in_ct systemctl list-jobs --no-pager --no-legend 2>&1 | head -n 5 | tr '\n' ';')"
    fi
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    note "the container did not power off within 120s: killing systemd-nspawn (pid $pid)"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    return 1
  fi
  rm -f "$RUN/nspawn.pid"
}

# Stops a container left by an earlier run and removes its files.
teardown() {
  power_off || true
  local pid
  for pid in $(nspawn_pids); do
    # Not the recorded one (a run that crashed before recording it).
    note "killing systemd-nspawn pid $pid, left on $ROOT"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  done
  [ -z "$(nspawn_pids)" ] || die "a container still runs on $ROOT"
  # A killed systemd-nspawn's container may take a moment to die with it.
  local deadline=$((SECONDS + 30))
  while [ -n "$(container_pids)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  [ -z "$(container_pids)" ] ||
    die "processes still run in $ROOT after its systemd-nspawn ended: $(container_pids | tr '\n' ' ')"
  if findmnt -rn -o TARGET | grep -q "^$RUN/"; then
    die "mounts left under $RUN: $(findmnt -rn -o TARGET | grep "^$RUN/" | tr '\n' ' ')"
  fi
  rm -rf "$RUN"
}

# A fresh copy of the cached root filesystem, booted, with the .deb in /root.
bring_up() {
  teardown
  mkdir -p "$RUN"
  make_deb
  copy_rootfs
  cp "$DEB" "$ROOT/root/"
  boot
}

# ---------------------------------------------------------------- README

README=${TANDEM_SOURCE_DIR:?TANDEM_SOURCE_DIR is not set}/README.md

# The shell block of README.md that follows `<!-- system-test: NAME -->`.
snippet() {
  local name=$1 text count
  count=$(grep -c -x -F "<!-- system-test: $name -->" "$README" || true)
  [ "$count" = 1 ] || die "README.md has $count blocks marked system-test: $name (want 1)"
  text=$(awk -v marker="<!-- system-test: $name -->" '
    $0 == marker { found = 1; next }
    found && !open && /^```sh$/ { open = 1; next }
    found && !open { print "no ```sh block right after the marker" > "/dev/stderr"; exit 1 }
    open && /^```$/ { exit }
    open { print }' "$README") || die "README.md: system-test: $name: bad block"
  [ -n "$text" ] || die "README.md: system-test: $name is empty"
  printf '%s\n' "$text"
}

# Runs README block NAME in the container, in /root (where the .deb is),
# after the replacements given as SED expressions (a third node from the
# second node's block).
run_snippet() {
  local name=$1 text expr
  shift
  text=$(snippet "$name") || exit 1
  for expr in "$@"; do text=$(sed -e "$expr" <<<"$text"); done
  note "README block $name${*:+ (with $*)}"
  ct_sh "cd /root
$text" || die "README block $name failed"
}
