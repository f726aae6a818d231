#!/bin/bash
# `mxward check` golden test: every problem of every broken playbook under
# tests/data/playbooks/broken/ at once, in file:line:col form, exit 1; the shipped rules.d/ is
# clean (exit 0, one summary line); a bad mxward.toml and bad playbooks are reported in one run.
# Usage: check_golden_test.sh MXWARD_BINARY SOURCE_DIR
set -u
BIN=$1
SRC=$2
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$SRC/tests/data/playbooks" || exit 1
"$BIN" check --config /dev/null --rules broken >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 1 ]; then echo "FAIL: broken playbooks: exit $rc, want 1"; fail=1; fi
if [ -s "$tmp/out" ]; then echo "FAIL: broken playbooks: unexpected stdout"; cat "$tmp/out"; fail=1; fi
if ! diff -u check-broken.golden "$tmp/err"; then
  echo "FAIL: diagnostics differ from tests/data/playbooks/check-broken.golden"; fail=1
fi

cd "$SRC" || exit 1
"$BIN" check --config /dev/null --rules rules.d >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 0 ]; then echo "FAIL: shipped rules.d: exit $rc"; cat "$tmp/err"; fail=1; fi
if [ "$(wc -l <"$tmp/out")" -ne 1 ] || ! grep -q '^ok: [0-9]* playbooks and [0-9]* parsers' "$tmp/out"; then
  echo "FAIL: shipped rules.d: want one summary line, got:"; cat "$tmp/out"; fail=1
fi

printf '[store]\nretention = "forever"\n' >"$tmp/mxward.toml"
"$BIN" check --config "$tmp/mxward.toml" --rules tests/data/playbooks/broken >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 1 ]; then echo "FAIL: bad config: exit $rc, want 1"; fail=1; fi
if ! head -1 "$tmp/err" | grep -q "^$tmp/mxward.toml:2:13: error: "; then
  echo "FAIL: bad config: first line should be the config's problem:"; head -2 "$tmp/err"; fail=1
fi
if ! grep -q 'broken/wrong-type.toml:11:13: error:' "$tmp/err"; then
  echo "FAIL: bad config: the playbooks' problems must be reported in the same run"; fail=1
fi

# Playbook actions are checked the way their executors will run them (issue 21, "configuration
# that lies"): a mail recipient that is not an address, a webhook target with no section, a ban's
# port group that [nftables] does not define (issue 15). The shipped rules.d passes with a [mail] that has a recipient.
mkdir -p "$tmp/acts"
cat >"$tmp/acts/notify.toml" <<'TOML'
description = "actions that would fail when they run"
key = "client_ip"

[match]
events = ["auth_failure"]

[trigger]
type = "count"
threshold = 3
window = "10m"

[[action]]
type = "mail"
to = "postmaster"

[[action]]
type = "webhook"
target = "nope"

[[action]]
type = "ban"
ports = ["web", "imaps"]
TOML
cat >"$tmp/actions.toml" <<'TOML'
[mail]
url = "smtp://127.0.0.1:25"
from = "mxward@example.org"
to = ["admin@example.org"]

[webhook.ops]
url = "https://chat.example.org/hooks/abc"
TOML
"$BIN" check --config "$tmp/actions.toml" --rules "$tmp/acts" >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 1 ]; then echo "FAIL: bad actions: exit $rc, want 1"; cat "$tmp/err"; fail=1; fi
if ! grep -q "acts/notify.toml:12:1: error: mail action: to = \"postmaster\" is not an address" "$tmp/err"; then
  echo "FAIL: bad actions: the mail recipient must be refused at its [[action]]:"; cat "$tmp/err"; fail=1
fi
if ! grep -q "acts/notify.toml:16:1: error: webhook action: no \[webhook.nope\] in mxward.toml (configured: ops)" "$tmp/err"; then
  echo "FAIL: bad actions: the webhook target must be refused at its [[action]]:"; cat "$tmp/err"; fail=1
fi
if ! grep -q "acts/notify.toml:20:1: error: ban action: ports: unknown port group 'imaps' (known: all, mail, web, or port numbers)" "$tmp/err"; then
  echo "FAIL: bad actions: a port group [nftables] does not define must be refused at its [[action]]:"; cat "$tmp/err"; fail=1
fi
printf '[mail]\nurl = "smtp://127.0.0.1:25"\nfrom = "mxward@example.org"\nto = ["admin@example.org"]\n' >"$tmp/actions.toml"
if ! "$BIN" check --config "$tmp/actions.toml" --rules rules.d >/dev/null 2>"$tmp/err"; then
  echo "FAIL: shipped rules.d with a [mail] recipient:"; cat "$tmp/err"; fail=1
fi

"$BIN" check --config /dev/null --rules "$tmp/no-such-dir" >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 1 ] || ! grep -q "no-such-dir: error: rules directory does not exist" "$tmp/err"; then
  echo "FAIL: missing rules dir: exit $rc"; cat "$tmp/err"; fail=1
fi

[ "$fail" -eq 0 ] && echo "PASS"
exit "$fail"
