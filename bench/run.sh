#!/usr/bin/env bash
# Side-by-side benchmark: mxward replay (every shipped playbook) against fail2ban-regex with the
# four filters of fail2ban's mail jails, on the same generated mail logs: three corpora (issue 20).
#
#   bench/run.sh BUILD_DIR [--lines N] [--seed S] [--corpus NAME]... [--work DIR]
#                          [--skip-mxward] [--skip-fail2ban]
#
# Corpora (bench/generate_maillog.py, seed S, about N lines each; default N = 1000000, S = 1):
#   default  the generator's default day (the figures of docs/benchmarks.md before issue 20)
#   heavy    a heavy attack: N/500 addresses (2,000 at the default) whose abuse events are 40%
#            of the lines (--attackers N/500 --attack-share 0.40)
#   botnet   N/10 distinct attacking addresses (100,000 at the default) whose abuse events are
#            36% of the lines (--attackers N/10 --attack-share 0.36)
# --corpus NAME (repeatable) runs only those. fail2ban takes ~4 min of CPU per corpus of 1,000,000
# lines (its 4 filters) and mxward a few seconds, so the default run takes 15-30 minutes;
# --lines 200000 scales every corpus (and its attacker count) down to a few minutes. Below about
# 100,000 lines the fixed scenario attacks and the partner's mail (~30,000 lines) dilute the shares.
#
# BUILD_DIR holds the mxward binary (cmake build dir). Prints, per corpus, wall time, CPU time
# (user + sys, GNU time -v), lines per CPU second and peak RSS of each tool, the CPU-time ratio,
# and detections against the generator's ground truth (mxward: `incidents list --json`;
# fail2ban: what its jails would ban with Debian's defaults); then one table of all corpora.
# Exits non-zero when a tool fails, or mxward misses an attack or acts on a benign key.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=""
lines=1000000
seed=1
work=""
corpora=()
run_mxward=1
run_f2b=1
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --corpus) corpora+=("$2"); shift 2 ;;
    --skip-mxward) run_mxward=0; shift ;;
    --skip-fail2ban) run_f2b=0; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
[ ${#corpora[@]} -gt 0 ] || corpora=(default heavy botnet)
for c in "${corpora[@]}"; do
  case "$c" in default | heavy | botnet) ;; *) echo "run.sh: unknown corpus $c" >&2; exit 2 ;; esac
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
summary=$work/summary.jsonl
rm -f "$summary"
status=0

run_corpus() {
  local name=$1
  local dir=$work/$1
  local gen_args=(--lines "$lines" --seed "$seed")
  case "$name" in
    heavy) gen_args+=(--attackers $((lines / 500)) --attack-share 0.40) ;;
    botnet) gen_args+=(--attackers $((lines / 10)) --attack-share 0.36) ;;
  esac
  mkdir -p "$dir"
  local log=$dir/mail.log
  local truth=$dir/truth.json
  echo "== $name: generating (${gen_args[*]}) in $dir" >&2
  python3 "$here/generate_maillog.py" "${gen_args[@]}" --out "$log" --truth "$truth"
  local actual
  actual=$(wc -l <"$log")
  cat "$log" >/dev/null # warm the page cache so neither tool pays for the first read

  local eval_args=(--truth "$truth" --lines "$actual" --corpus "$name" --summary "$summary")

  if [ "$run_mxward" = 1 ]; then
    rm -f "$dir"/mxward.db*
    printf '%s\n' "# bench config: everything as shipped, state in the bench dir" \
      "[store]" "path = \"$dir/mxward.db\"" "[rules]" "dirs = [\"$src/rules.d\"]" \
      "[metrics]" "enabled = false" >"$dir/mxward.toml"
    echo "== $name: mxward replay" >&2
    set +e
    # --db names the store: without it replay writes to a scratch store it removes afterwards.
    /usr/bin/time -v -o "$dir/mxward.time" "$mxward" --config "$dir/mxward.toml" \
      --db "$dir/mxward.db" replay -q "$log" 2>"$dir/mxward.stderr"
    set -e
    tail -1 "$dir/mxward.stderr" >&2
    "$mxward" --config "$dir/mxward.toml" incidents list --json --limit 1000000 \
      >"$dir/incidents.json" 2>"$dir/incidents.stderr" || cat "$dir/incidents.stderr" >&2
    eval_args+=(--mxward-time "$dir/mxward.time" --incidents "$dir/incidents.json")
  fi

  if [ "$run_f2b" = 1 ]; then
    # The filters of Debian's postfix-sasl, postfix, dovecot and roundcube-auth jails: a fail2ban
    # server running those four jails runs each filter over every line, so their times add up.
    local filter fname
    for filter in "postfix[mode=auth]" postfix dovecot roundcube-auth; do
      fname=${filter//[^a-z0-9=-]/_}
      echo "== $name: fail2ban-regex $filter" >&2
      set +e
      /usr/bin/time -v -o "$dir/f2b-$fname.time" fail2ban-regex -o row "$log" "$filter" \
        >"$dir/f2b-$fname.rows" 2>"$dir/f2b-$fname.stderr"
      set -e
      eval_args+=(--f2b "$filter::$dir/f2b-$fname.time::$dir/f2b-$fname.rows")
    done
  fi

  echo
  echo "### corpus $name"
  echo
  python3 "$here/evaluate.py" "${eval_args[@]}" || status=1
}

for c in "${corpora[@]}"; do
  run_corpus "$c"
done

echo
echo "### all corpora ($(date -u +%Y-%m-%d), seed $seed)"
echo
python3 "$here/evaluate.py" --table "$summary"
exit $status
