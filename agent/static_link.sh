#!/usr/bin/env bash
# Linker launcher for the engine agents (CMake's CXX_LINKER_LAUNCHER, see
# agent/CMakeLists.txt): the link line CMake made, with the shared gRPC,
# protobuf, Abseil, RE2, c-ares, upb and yaml-cpp libraries replaced by
# Debian's static archives of the same version, linked as one group. gRPC
# is its TLS build (libgrpc, libgrpc++): every link of the agent is mutual
# TLS. OpenSSL stays shared: libpq loads it too, and a process must hold
# one copy of it only.
#
# Why: mapping those shared libraries costs an agent about 6 MiB of resident
# memory (relocated tables, whole-library text); linked statically with
# --gc-sections it keeps only the code it uses. The project's other
# binaries keep the shared libraries.
#
# After linking, it checks that none of those libraries, nor libstdc++ when
# -static-libstdc++ was asked for, is still loaded by the binary (a second
# copy of gRPC or Abseil in one process would break it): a failure of the
# build, never a silent one.
#   static_link.sh COMPILER ARG...
set -euo pipefail

cxx=$1
shift

# The archive that replaces lib$1.so, or nothing when it stays shared.
archive_for() {
  local base
  case "$1" in
    grpc | grpc++ | gpr | upb | protobuf | protobuf-lite | re2 | cares | address_sorting | yaml-cpp | absl_*)
      base="lib$1.a"
      ;;
    *) return 0 ;;
  esac
  if [ -n "${2:-}" ] && [ -f "$2/$base" ]; then
    echo "$2/$base"
  else
    "$cxx" -print-file-name="$base"
  fi
}

out=""
prev=""
static_libstdcxx=0
args=()
archives=()
shared=()
for arg in "$@"; do
  [ "$prev" = "-o" ] && out=$arg
  prev=$arg
  [ "$arg" = "-static-libstdc++" ] && static_libstdcxx=1
  name=""
  dir=""
  case "$arg" in
    -l* | /*.so | /*.so.*) shared+=("$arg") ;;
  esac
  case "$arg" in
    -l*) name=${arg#-l} ;;
    /*.so | /*.so.*)
      name=${arg##*/lib}
      name=${name%%.so*}
      dir=${arg%/*}
      ;;
  esac
  if [ -n "$name" ]; then
    archive=$(archive_for "$name" "$dir")
    if [ -n "$archive" ]; then
      if [ ! -f "$archive" ]; then
        echo "static_link.sh: no static archive for $arg (looked for $archive)" >&2
        exit 1
      fi
      case " ${archives[*]} " in
        *" $archive "*) ;;
        *) archives+=("$archive") ;;
      esac
      unset 'shared[-1]'
      continue
    fi
  fi
  args+=("$arg")
done

if [ -z "$out" ]; then
  echo "static_link.sh: no -o OUTPUT on the link line" >&2
  exit 1
fi
# The group goes last, since every project archive before it may need any
# of them; the shared libraries that stay follow it again, since the group
# needs some of them (zlib, libm) and the compiler links --as-needed.
"$cxx" "${args[@]}" -Wl,--start-group "${archives[@]}" -Wl,--end-group "${shared[@]}"

pattern='lib(grpc|gpr|upb|protobuf|re2|cares|address_sorting|yaml-cpp|absl_)'
[ "$static_libstdcxx" = 1 ] && pattern="$pattern|libstdc\\+\\+"
if loaded=$(ldd "$out" | grep -E "$pattern"); then
  echo "static_link.sh: $out still loads shared libraries it should have linked statically:" >&2
  echo "$loaded" >&2
  rm -f "$out"
  exit 1
fi
