#!/bin/sh
# scope_layouts.sh: the two kernel layouts considered for port-scoped bans (issue 15), measured
# with the nft program alone so both pay the same costs. Not a test: it prints figures.
#
#   sudo bench/nft/scope_layouts.sh [BANS] [PORTS] [NEW]
#
# BANS IPv4 hosts (default 1000000) banned for the ports PORTS (default "25, 465, 587, 110, 143,
# 993, 995, 4190": the mail group) in
#   sets:   one hash set of addresses per scope, rule `ip saddr @s tcp dport { PORTS } drop`
#           (mxward's layout)
#   concat: one hash set of `ipv4_addr . inet_service`, rule `ip saddr . tcp dport @s drop`,
#           holding one element per (address, port)
# For each: the restore (one `nft -f` of every element, wall time), then NEW (default 200) new
# bans one `nft -f` each with the set full (p50/p99 wall time per ban, process start included
# in both). Runs in a network namespace of its own (unshare -n): the host's ruleset is untouched.
set -eu
if [ "${SCOPE_LAYOUTS_IN_NETNS:-}" != 1 ]; then
  SCOPE_LAYOUTS_IN_NETNS=1 exec unshare -n "$0" "$@"
fi
BANS=${1:-1000000}
PORTS=${2:-25, 465, 587, 110, 143, 993, 995, 4190}
NEW=${3:-200}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
NPORTS=$(echo "$PORTS" | tr ',' '\n' | wc -l)

ms() { date +%s%N | awk '{ printf "%d", $1 / 1000000 }'; }

# address i (0-based) in 11.0.0.0/8 and the new ones in 198.18.0.0/15
python3 - "$BANS" "$PORTS" "$TMP" "$NEW" <<'PY'
import sys
n, ports, tmp, new = int(sys.argv[1]), [p.strip() for p in sys.argv[2].split(",")], sys.argv[3], int(sys.argv[4])
addr = lambda i: f"11.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
with open(f"{tmp}/sets.nft", "w") as f:
    f.write("add element inet bench s { ")
    f.write(", ".join(f"{addr(i)} timeout 3600s" for i in range(n)))
    f.write(" }\n")
with open(f"{tmp}/concat.nft", "w") as f:
    f.write("add element inet bench s { ")
    f.write(", ".join(f"{addr(i)} . {p} timeout 3600s" for i in range(n) for p in ports))
    f.write(" }\n")
for i in range(new):
    a = f"198.{18 + (i >> 16) % 2}.{(i >> 8) & 255}.{i & 255}"
    with open(f"{tmp}/new-sets-{i}.nft", "w") as f:
        f.write(f"add element inet bench s {{ {a} timeout 3600s }}\n")
    with open(f"{tmp}/new-concat-{i}.nft", "w") as f:
        f.write("add element inet bench s { " + ", ".join(f"{a} . {p} timeout 3600s" for p in ports) + " }\n")
PY

run() {
  layout=$1
  nft flush ruleset
  nft add table inet bench
  nft "add chain inet bench input { type filter hook input priority -10; policy accept; }"
  if [ "$layout" = sets ]; then
    nft "add set inet bench s { type ipv4_addr; flags timeout; }"
    nft "add rule inet bench input ip saddr @s tcp dport { $PORTS } counter drop"
  else
    nft "add set inet bench s { type ipv4_addr . inet_service; flags timeout; }"
    nft "add rule inet bench input ip saddr . tcp dport @s counter drop"
  fi
  t0=$(ms)
  nft -f "$TMP/$layout.nft"
  t1=$(ms)
  : > "$TMP/lat"
  i=0
  while [ $i -lt "$NEW" ]; do
    a=$(date +%s%N)
    nft -f "$TMP/new-$layout-$i.nft"
    b=$(date +%s%N)
    echo $(( (b - a) / 1000 )) >> "$TMP/lat"
    i=$((i + 1))
  done
  elements=$BANS
  [ "$layout" = concat ] && elements=$((BANS * NPORTS))
  sort -n "$TMP/lat" | awk -v layout="$layout" -v bans="$BANS" -v el="$elements" -v restore=$((t1 - t0)) '
    { v[NR] = $1 } END {
      p50 = v[int(NR * 0.50 + 0.5)]; p99 = v[int(NR * 0.99 + 0.5)];
      printf "%-6s bans=%d kernel_elements=%d restore_ms=%d new_ban_p50_ms=%.2f new_ban_p99_ms=%.2f\n",
             layout, bans, el, restore, p50 / 1000, p99 / 1000 }'
  nft flush ruleset
}

echo "ports: $PORTS ($NPORTS)"
run sets
run concat
