#!/usr/bin/env bash
# Side-by-side benchmark: mxward replay (every shipped playbook) against fail2ban-regex with the
# four filters of fail2ban's mail jails, on the same generated 1,000,000-line mail log.
#
#   bench/run.sh BUILD_DIR [--lines N] [--seed S] [--work DIR] [--skip-mxward] [--skip-fail2ban]
#
# BUILD_DIR holds the mxward binary (cmake build dir). Prints wall time, lines/s and peak RSS of
# each tool (GNU time -v), the ratio, and detections against the generator's ground truth
# (mxward: `incidents list --json`; fail2ban: what its jails would ban with Debian's defaults).
# Exits non-zero when a tool fails, or mxward misses an attack or acts on a benign key.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=""
lines=1000000
seed=1
work=""
run_mxward=1
run_f2b=1
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --skip-mxward) run_mxward=0; shift ;;
    --skip-fail2ban) run_f2b=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
if [ "$run_mxward" = 1 ]; then
  [ -n "$build" ] || { echo "usage: bench/run.sh BUILD_DIR [options] (see --help)" >&2; exit 2; }
  mxward=$(cd "$build" && pwd)/mxward
  [ -x "$mxward" ] || { echo "run.sh: no mxward binary in $build" >&2; exit 2; }
fi
[ -x /usr/bin/time ] || { echo "run.sh: /usr/bin/time missing (apt-get install time)" >&2; exit 2; }
if [ "$run_f2b" = 1 ] && ! command -v fail2ban-regex >/dev/null; then
  echo "run.sh: fail2ban-regex missing (apt-get install fail2ban)" >&2
  exit 2
fi

if [ -z "$work" ]; then
  work=$(mktemp -d /tmp/mxward-bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
log=$work/mail.log
truth=$work/truth.json

echo "== generating $lines lines (seed $seed) in $work" >&2
python3 "$here/generate_maillog.py" --lines "$lines" --seed "$seed" --out "$log" --truth "$truth"
actual=$(wc -l <"$log")
cat "$log" >/dev/null  # warm the page cache so neither tool pays for the first read

eval_args=(--truth "$truth" --lines "$actual")

if [ "$run_mxward" = 1 ]; then
  rm -f "$work"/mxward.db*
  cat >"$work/mxward.toml" <<EOF
# bench config: everything as shipped, state in the bench dir
[store]
path = "$work/mxward.db"
[rules]
dirs = ["$src/rules.d"]
[metrics]
enabled = false
EOF
  echo "== mxward replay" >&2
  set +e
  # --db names the store: without it replay writes to a scratch store it removes afterwards.
  /usr/bin/time -v -o "$work/mxward.time" "$mxward" --config "$work/mxward.toml" \
    --db "$work/mxward.db" replay "$log" 2>"$work/mxward.stderr"
  set -e
  cat "$work/mxward.stderr" >&2
  "$mxward" --config "$work/mxward.toml" incidents list --json --limit 1000000 \
    >"$work/incidents.json" 2>"$work/incidents.stderr" || cat "$work/incidents.stderr" >&2
  eval_args+=(--mxward-time "$work/mxward.time" --incidents "$work/incidents.json")
fi

if [ "$run_f2b" = 1 ]; then
  # The filters of Debian's postfix-sasl, postfix, dovecot and roundcube-auth jails: a fail2ban
  # server running those four jails runs each filter over every line, so their times add up.
  for filter in "postfix[mode=auth]" postfix dovecot roundcube-auth; do
    name=${filter//[^a-z0-9=-]/_}
    echo "== fail2ban-regex $filter" >&2
    set +e
    /usr/bin/time -v -o "$work/f2b-$name.time" fail2ban-regex -o row "$log" "$filter" \
      >"$work/f2b-$name.rows" 2>"$work/f2b-$name.stderr"
    set -e
    eval_args+=(--f2b "$filter::$work/f2b-$name.time::$work/f2b-$name.rows")
  done
fi

python3 "$here/evaluate.py" "${eval_args[@]}"
