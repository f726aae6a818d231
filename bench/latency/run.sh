#!/usr/bin/env bash
# Line -> nftables element latency (issue 8): the real `mxward serve` with [nftables] enabled, in a
# network namespace of its own, fed SASL failure bursts over TCP under a background load of other
# mail log lines; latency.py measures from the triggering line's send() to the kernel's netlink
# notification of the new set element, and prints p50/p90/p99 over the bans.
#
#   bench/latency/run.sh BUILD_DIR [--bans N] [--background-rate LINES_PER_S] [--preload N]
#                        [--flood N [--flood-seconds S] [--flood-spread S]] [--rt]
#                        [--parse-threads N|auto] [--perf FILE] [--keep]
#
# --perf FILE records the daemon with `perf record` (-F 999, no call graphs: the libraries have
# no frame pointers) while the measurement runs; read it with
# `perf report -i FILE --no-children --sort comm,dso,sym`.
# --flood N replaces the one-at-a-time bans with N new attackers within --flood-seconds (60):
# each sends its 20 SASL failures over --flood-spread seconds (2), all on one connection, and
# every threshold line's write is timed to its element (issue 20: all within 2 s). It prints the
# latency by tenth of the schedule, what the measurer cost, and the daemon's CPU per thread.
#
# --preload N puts N bans in the store before serve starts (90% IPv4 addresses in 11.0.0.0/8, 10%
# IPv6, 1-2 h left), so the set already holds N elements when the measured bans arrive; the
# daemon's restore of them at start is printed from its log.
# --rt runs the daemon and the measurer with SCHED_FIFO priority 20 (chrt), so that other work on
# a shared machine (parallel compiles) does not decide the tail; on a dedicated MX it changes
# little. --parse-threads sets [engine] parse_threads (default: the daemon's, 0: none).
# Needs root (network namespace, nftables), nft, python3. Target: p99 < 5 ms.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=""
bans=300
rate=5000
preload=0
flood=0
flood_seconds=60
flood_spread=2
keep=0
rt=0
perf_out=""
parse_threads=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bans) bans=$2; shift 2 ;;
    --background-rate) rate=$2; shift 2 ;;
    --preload) preload=$2; shift 2 ;;
    --flood) flood=$2; shift 2 ;;
    --flood-seconds) flood_seconds=$2; shift 2 ;;
    --flood-spread) flood_spread=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --rt) rt=1; shift ;;
    --perf) perf_out=$(realpath -m "$2"); shift 2 ;;
    --parse-threads) parse_threads=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
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
  args=("$build" --bans "$bans" --background-rate "$rate" --preload "$preload" --flood "$flood"
        --flood-seconds "$flood_seconds" --flood-spread "$flood_spread")
  [ "$keep" = 1 ] && args+=(--keep)
  [ -n "$perf_out" ] && args+=(--perf "$perf_out")
  [ -n "$parse_threads" ] && args+=(--parse-threads "$parse_threads")
  if [ "$rt" = 1 ]; then
    command -v chrt >/dev/null || { echo "run.sh: chrt missing (util-linux)" >&2; exit 2; }
    exec chrt -f 20 unshare -n "$0" "${args[@]}"
  fi
  exec unshare -n "$0" "${args[@]}"
fi
ip link set lo up

work=$(mktemp -d "${TMPDIR:-/tmp}/mxward-latency-XXXXXX")
daemon=""
perf_pid=""
cleanup() {
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; fi
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
if [ -n "$parse_threads" ]; then
  [ "$parse_threads" = auto ] && parse_threads='"auto"'
  printf '[engine]\nparse_threads = %s\n' "$parse_threads" >> "$work/mxward.toml"
fi

if [ "$preload" -gt 0 ]; then
  command -v sqlite3 >/dev/null || { echo "run.sh: sqlite3 missing (apt-get install sqlite3)" >&2; exit 2; }
  # A replay of nothing into --db creates the store (read-only commands refuse a missing one).
  "$mxward" --db "$work/state.db" --config "$work/mxward.toml" --rules "$src/rules.d" \
    replay -q /dev/null >/dev/null
  now_us=$(($(date +%s) * 1000000))
  v4=$((preload - preload / 10))
  sqlite3 "$work/state.db" "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < $preload - 1)
    INSERT INTO bans (prefix, created_at, until, incident_id, reason)
    SELECT CASE WHEN i < $v4 THEN
      ((184549376 + 7 * i) >> 24) || '.' || (((184549376 + 7 * i) >> 16) & 255) || '.' ||
      (((184549376 + 7 * i) >> 8) & 255) || '.' || ((184549376 + 7 * i) & 255)
    ELSE printf('2001:db8:%x:%x::1', (i - $v4) / 65536, (i - $v4) % 65536) END,
    $now_us, $now_us + (3600 + i % 3600) * 1000000, i, 'preload' FROM s"
fi

"$mxward" serve --config "$work/mxward.toml" --db "$work/state.db" --rules "$src/rules.d" \
  --socket "$work/control.sock" >"$work/serve.log" 2>&1 &
daemon=$!
for _ in $(seq 1 300); do
  grep -q "ready:" "$work/serve.log" && break
  kill -0 "$daemon" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "ready:" "$work/serve.log" || { echo "run.sh: mxward did not get ready" >&2; cat "$work/serve.log" >&2; exit 1; }
if [ "$preload" -gt 0 ]; then
  # The nftables executor restores the stored bans when its worker starts, just after ready.
  for _ in $(seq 1 6000); do
    grep -q "stored ban(s)" "$work/serve.log" && break
    kill -0 "$daemon" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  grep "stored ban(s)" "$work/serve.log" || { echo "run.sh: no restore in 600 s" >&2; exit 1; }
fi

# CPU time (user + system, clock ticks) of each of the daemon's threads, by thread name.
thread_cpu() {
  for t in /proc/"$daemon"/task/*; do
    [ -r "$t/stat" ] || continue
    # comm may hold spaces: the fields after ") " are fixed.
    sed -E 's/^[0-9]+ \((.*)\) [A-Za-z] (.*)$/\1|\2/' "$t/stat" |
      awk -F'|' '{ split($2, f, " "); print $1 "|" f[11] + f[12] }'
  done | sort | awk -F'|' '{ s[$1] += $2 } END { for (k in s) print k "|" s[k] }'
}
cpu_before=$(thread_cpu)

what="$bans bans"
[ "$flood" -gt 0 ] && what="flood of $flood in $flood_seconds s"
echo "$("$mxward" --version 2>/dev/null | head -1), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)," \
  "$what, $preload in place, background $rate lines/s, $(grep -o '[0-9]* parse threads' "$work/serve.log"), scheduling $(chrt -p $$ | head -1 | sed 's/.*: //')"
status=0
if [ -n "$perf_out" ]; then
  perf record -q -F 999 -o "$perf_out" -p "$daemon" 2>"$work/perf.log" &
  perf_pid=$!
fi
if [ "$flood" -gt 0 ]; then
  python3 "$here/latency.py" --port 5514 --background-rate "$rate" --flood "$flood" \
    --flood-seconds "$flood_seconds" --flood-spread "$flood_spread" || status=$?
else
  python3 "$here/latency.py" --port 5514 --bans "$bans" --background-rate "$rate" || status=$?
fi
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  perf_pid=""
  echo "perf data: $perf_out"
fi
hz=$(getconf CLK_TCK)
echo "daemon CPU during the run, by thread (s):" $(join -t'|' -a1 -e0 -o 0,1.2,2.2 \
  <(thread_cpu | sort) <(echo "$cpu_before" | sort) |
  awk -F'|' -v hz="$hz" '$2 - $3 > 0 { printf "%s %.2f; ", $1, ($2 - $3) / hz }')
echo "mxward: $(grep -c . "$work/serve.log") log lines; last: $(tail -1 "$work/serve.log")"
exit $status
