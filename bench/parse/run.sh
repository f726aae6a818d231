#!/usr/bin/env bash
# Parser throughput: SyslogParser + EventExtractor (the parser pack, folding, queue-id
# correlation) on one thread, against Debian's fail2ban-regex with its postfix and dovecot
# filters on the same generated log. A benchmark, not a test: it prints figures, and exits
# non-zero only when a tool fails.
#
#   bench/parse/run.sh BUILD_DIR [--lines N] [--seed S] [--work DIR] [--rounds R] [--skip-fail2ban]
#
# BUILD_DIR is a cmake build dir in which mxward_engine is built (libmxward_engine.a); the bench
# program is compiled against it here. Both wall time and CPU time are reported: on a shared
# machine wall time also counts the time other processes held the core.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=""
lines=1000000
seed=1
work=""
rounds=3
run_f2b=1
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --skip-fail2ban) run_f2b=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
[ -n "$build" ] || { echo "usage: bench/parse/run.sh BUILD_DIR [options] (see --help)" >&2; exit 2; }
build=$(cd "$build" && pwd)
[ -f "$build/libmxward_engine.a" ] || { echo "run.sh: no libmxward_engine.a in $build" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "run.sh: /usr/bin/time missing (apt-get install time)" >&2; exit 2; }
if [ "$run_f2b" = 1 ] && ! command -v fail2ban-regex >/dev/null; then
  echo "run.sh: fail2ban-regex missing (apt-get install fail2ban)" >&2
  exit 2
fi
if [ -z "$work" ]; then
  work=$(mktemp -d /tmp/mxward-parse-bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"

if [ -x "$build/bench/mxward_parse_bench" ] && \
   [ "$build/bench/mxward_parse_bench" -nt "$build/libmxward_engine.a" ]; then
  # Built by CMake (-DMXWARD_BENCH=ON) with the tree's own flags.
  cp "$build/bench/mxward_parse_bench" "$work/parse_bench"
else
  echo "== compiling parse_bench (configure with -DMXWARD_BENCH=ON to build it with CMake)" >&2
  c++ -std=c++20 -O2 -DNDEBUG -I"$src/include" -I"$build/generated" "$here/parse_bench.cpp" \
    "$build/libmxward_engine.a" $(pkg-config --libs re2) -lfmt -ltomlplusplus -lspdlog -lsqlite3 \
    -lsystemd -pthread -o "$work/parse_bench"
fi

log="$work/mail.log"
if [ ! -s "$log" ]; then
  echo "== generating $lines lines (seed $seed)" >&2
  python3 "$src/bench/generate_maillog.py" --lines "$lines" --seed "$seed" --out "$log" \
    --truth "$work/truth.json" >&2
fi
nlines=$(wc -l <"$log")

echo "== mxward parse_bench" >&2
"$work/parse_bench" "$src/rules.d/parsers" "$log" --rounds "$rounds" | tee "$work/mxward.out"
mx_wall=$(sed -n 's/^MXWARD_LINES_PER_SECOND=//p' "$work/mxward.out")
mx_cpu=$(sed -n 's/^MXWARD_CPU_LINES_PER_SECOND=//p' "$work/mxward.out")

[ "$run_f2b" = 1 ] || exit 0
total_wall=0
total_cpu=0
printf '\n%-22s %10s %12s %10s %12s\n' "fail2ban-regex filter" "wall s" "lines/s" "cpu s" "lines/s"
for filter in postfix dovecot; do
  /usr/bin/time -f '%e %U %S' -o "$work/f2b-$filter.time" \
    fail2ban-regex -o row "$log" "$filter" >"$work/f2b-$filter.out" 2>"$work/f2b-$filter.err" || {
    echo "run.sh: fail2ban-regex $filter failed:" >&2
    tail -5 "$work/f2b-$filter.err" >&2
    exit 1
  }
  read -r wall user sys <"$work/f2b-$filter.time"
  cpu=$(python3 -c "print($user + $sys)")
  printf '%-22s %10.2f %12.0f %10.2f %12.0f\n' "$filter" "$wall" \
    "$(python3 -c "print($nlines / $wall)")" "$cpu" "$(python3 -c "print($nlines / $cpu)")"
  total_wall=$(python3 -c "print($total_wall + $wall)")
  total_cpu=$(python3 -c "print($total_cpu + $cpu)")
done
python3 - "$nlines" "$mx_wall" "$mx_cpu" "$total_wall" "$total_cpu" <<'PY'
import sys
n, mx_wall, mx_cpu, f_wall, f_cpu = (float(x) for x in sys.argv[1:])
f_wall_rate, f_cpu_rate = n / f_wall, n / f_cpu
print(f"\nfail2ban postfix+dovecot (both filters over every line): "
      f"{f_wall_rate:,.0f} lines/s wall, {f_cpu_rate:,.0f} lines/s CPU")
print(f"mxward parser pack (every parser):                     "
      f"{mx_wall:,.0f} lines/s wall, {mx_cpu:,.0f} lines/s CPU")
print(f"ratio mxward / fail2ban: {mx_wall / f_wall_rate:,.1f}x (wall), "
      f"{mx_cpu / f_cpu_rate:,.1f}x (CPU)")
PY
