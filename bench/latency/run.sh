#!/usr/bin/env bash
# Line -> nftables element latency (issue 8): the real `mxward serve` with [nftables] enabled, in a
# network namespace of its own, fed SASL failure bursts over TCP under a background load of other
# mail log lines; latency.py measures from the triggering line's send() to the kernel's netlink
# notification of the new set element, and prints p50/p90/p99 over the bans.
#
#   bench/latency/run.sh BUILD_DIR [--bans N] [--background-rate LINES_PER_S] [--rt] [--keep]
#
# --rt runs the daemon and the measurer with SCHED_FIFO priority 20 (chrt), so that other work on
# a shared machine (parallel compiles) does not decide the tail; on a dedicated MX it changes
# little. Needs root (network namespace, nftables), nft, python3. Target: p99 < 5 ms.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=""
bans=300
rate=5000
keep=0
rt=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bans) bans=$2; shift 2 ;;
    --background-rate) rate=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --rt) rt=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
[ -n "$build" ] || { echo "usage: bench/latency/run.sh BUILD_DIR [options] (see --help)" >&2; exit 2; }
mxward=$(cd "$build" && pwd)/mxward
[ -x "$mxward" ] || { echo "run.sh: no mxward binary in $build" >&2; exit 2; }
command -v nft >/dev/null || { echo "run.sh: nft missing (apt-get install nftables)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "run.sh: python3 missing" >&2; exit 2; }

# Everything below runs in a fresh network namespace: fixed ports are free, the ruleset is ours.
if [ "${MXWARD_LATENCY_IN_NETNS:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespace, nftables)" >&2; exit 2; }
  export MXWARD_LATENCY_IN_NETNS=1
  args=("$build" --bans "$bans" --background-rate "$rate")
  [ "$keep" = 1 ] && args+=(--keep)
  if [ "$rt" = 1 ]; then
    command -v chrt >/dev/null || { echo "run.sh: chrt missing (util-linux)" >&2; exit 2; }
    exec chrt -f 20 unshare -n "$0" "${args[@]}"
  fi
  exec unshare -n "$0" "${args[@]}"
fi
ip link set lo up

work=$(mktemp -d "${TMPDIR:-/tmp}/mxward-latency-XXXXXX")
daemon=""
cleanup() {
  if [ -n "$daemon" ]; then kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  if [ "$keep" = 1 ]; then echo "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

cat > "$work/mxward.toml" <<TOML
[[input]]
type = "tcp"
address = "127.0.0.1:5514"

[nftables]
enabled = true

[dispatcher]
per_minute_cap = 0
TOML

"$mxward" serve --config "$work/mxward.toml" --db "$work/state.db" --rules "$src/rules.d" \
  --socket "$work/control.sock" >"$work/serve.log" 2>&1 &
daemon=$!
for _ in $(seq 1 300); do
  grep -q "ready:" "$work/serve.log" && break
  kill -0 "$daemon" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "ready:" "$work/serve.log" || { echo "run.sh: mxward did not get ready" >&2; cat "$work/serve.log" >&2; exit 1; }

echo "$("$mxward" --version 2>/dev/null | head -1), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)," \
  "$bans bans, background $rate lines/s, scheduling $(chrt -p $$ | head -1 | sed 's/.*: //')"
status=0
python3 "$here/latency.py" --port 5514 --bans "$bans" --background-rate "$rate" || status=$?
echo "mxward: $(grep -c . "$work/serve.log") log lines; last: $(tail -1 "$work/serve.log")"
exit $status
