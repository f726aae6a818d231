#!/usr/bin/env bash
# `mxward serve` throughput with every shipped playbook (issue 20): the real daemon in a network
# namespace of its own, fed a generated mail log over TCP (or TLS) by send.py, which prints
# lines/s wall clock and lines per CPU second of the daemon. Each [engine] parse_threads value
# given runs against a fresh store, on the same log.
#
#   bench/serve/run.sh BUILD_DIR [--lines N] [--connections N] [--threads "0 1 2"] [--tls]
#                      [--log FILE] [--rt] [--keep]
#
# The log is bench/generate_maillog.py's (--lines, seed 1) unless --log names one. [clock]
# max_age is set to 400 days so that its November lines are believed, not skipped as stale.
# --rt runs the daemon and the sender with SCHED_FIFO priority 20 (chrt), as bench/latency's
# --rt: on a machine shared with compiles, their threads then take the cores when they can run,
# which approximates a quiet machine for the wall-clock figures.
# Needs root (network namespace), python3; --tls needs openssl.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=""
lines=1000000
connections=1
threads="0 1"
tls=0
log=""
keep=0
rt=0
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --tls) tls=1; shift ;;
    --log) log=$(realpath "$2"); shift 2 ;;
    --keep) keep=1; shift ;;
    --rt) rt=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
[ -n "$build" ] || { echo "usage: bench/serve/run.sh BUILD_DIR [options] (see --help)" >&2; exit 2; }
mxward=$(cd "$build" && pwd)/mxward
[ -x "$mxward" ] || { echo "run.sh: no mxward binary in $build" >&2; exit 2; }

if [ "${MXWARD_SERVE_BENCH_IN_NETNS:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespace)" >&2; exit 2; }
  export MXWARD_SERVE_BENCH_IN_NETNS=1
  args=("$build" --lines "$lines" --connections "$connections" --threads "$threads")
  [ "$tls" = 1 ] && args+=(--tls)
  [ -n "$log" ] && args+=(--log "$log")
  [ "$keep" = 1 ] && args+=(--keep)
  [ "$rt" = 1 ] && exec chrt -f 20 unshare -n "$0" "${args[@]}"
  exec unshare -n "$0" "${args[@]}"
fi
ip link set lo up

work=$(mktemp -d "${TMPDIR:-/tmp}/mxward-serve-bench-XXXXXX")
daemon=""
cleanup() {
  if [ -n "$daemon" ]; then kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  if [ "$keep" = 1 ]; then echo "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

if [ -z "$log" ]; then
  log="$work/mail.log"
  python3 "$src/bench/generate_maillog.py" --lines "$lines" --seed 1 --out "$log" \
    --truth "$work/truth.json" >/dev/null
fi

input='type = "tcp"'
send_tls=()
if [ "$tls" = 1 ]; then
  command -v openssl >/dev/null || { echo "run.sh: openssl missing" >&2; exit 2; }
  (
    cd "$work"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=bench CA" -keyout ca.key -out ca.crt 2>/dev/null
    for who in server client; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=mxward.test" \
        -keyout "$who.key" -out "$who.csr" 2>/dev/null
      printf 'subjectAltName=DNS:mxward.test\n' > "$who.ext"
      openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$who.ext" -out "$who.crt" 2>/dev/null
    done
  )
  input="type = \"tls\"
cert_file = \"$work/server.crt\"
key_file = \"$work/server.key\"
ca_file = \"$work/ca.crt\"
allowed_peers = [\"mxward.test\"]"
  send_tls=(--tls "$work/ca.crt" "$work/client.crt" "$work/client.key")
fi

echo "$("$mxward" --version 2>/dev/null | head -1), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $(wc -l < "$log") lines, scheduling $(chrt -p $$ | head -1 | sed 's/.*: //')"
for t in $threads; do
  cat > "$work/mxward.toml" <<TOML
dry_run = true
[engine]
parse_threads = $t
[clock]
max_age = "400d"
[[input]]
address = "127.0.0.1:5514"
max_connections_per_peer = 64
$input
TOML
  rm -f "$work/state.db"*
  "$mxward" serve --config "$work/mxward.toml" --db "$work/state.db" --rules "$src/rules.d" \
    --socket "$work/control.sock" >"$work/serve.log" 2>&1 &
  daemon=$!
  for _ in $(seq 1 300); do
    grep -q "ready:" "$work/serve.log" && break
    kill -0 "$daemon" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "ready:" "$work/serve.log" || { echo "run.sh: mxward did not get ready" >&2; cat "$work/serve.log" >&2; exit 1; }
  printf 'parse_threads = %s: ' "$t"
  python3 "$here/send.py" --pid "$daemon" --file "$log" --connections "$connections" "${send_tls[@]}"
  kill -TERM "$daemon"; wait "$daemon" || true; daemon=""
  grep -o "stopped: .*" "$work/serve.log" | sed 's/^/    /'
done
