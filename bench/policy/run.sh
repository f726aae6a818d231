#!/bin/bash
# Latency of the policy servers in a real `mxward serve` (docs/policy.md, benchmark table).
#   bench/policy/run.sh [BUILD_DIR] [RATE] [SECONDS]    (default: build, 2000/s, 10 s)
# Starts the daemon with the shipped rules, [policy.dovecot] on 127.0.0.1:19581 and
# [policy.postfix] on a unix socket in a temporary directory, then drives each at RATE requests/s
# (open loop, latency from when each request was due) and prints p50/p99/p99.9/max.
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$src/build}"
rate="${2:-2000}"
seconds="${3:-10}"
bin="$build/mxward"
[ -x "$bin" ] || { echo "no $bin: build mxward first" >&2; exit 1; }
bench="$build/bench/policy_bench"
mkdir -p "$build/bench"
if [ ! -x "$bench" ] || [ "$src/bench/policy/policy_bench.cpp" -nt "$bench" ]; then
  g++ -std=c++20 -O2 -pthread "$src/bench/policy/policy_bench.cpp" -o "$bench"
fi
tmp="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
echo bench-secret > "$tmp/secret"
chmod 600 "$tmp/secret"
cat > "$tmp/mxward.toml" <<TOML
dry_run = true
[[input]]
type = "udp"
address = "127.0.0.1:0"
[metrics]
enabled = false
[policy.dovecot]
enabled = true
listen = "127.0.0.1:19581"
secret_file = "$tmp/secret"
[policy.postfix]
enabled = true
socket = "$tmp/postfix-policy"
TOML
"$bin" serve --config "$tmp/mxward.toml" --db "$tmp/state.db" --rules "$src/rules.d" \
  --socket "$tmp/control.sock" > "$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  grep -q "ready:" "$tmp/serve.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log"; exit 1; }
  sleep 0.1  # polling the daemon's log for readiness
done
grep -q "ready:" "$tmp/serve.log" || { cat "$tmp/serve.log"; exit 1; }
"$bench" dovecot 19581 "$rate" "$seconds"
"$bench" postfix "$tmp/postfix-policy" "$rate" "$seconds"
