#!/usr/bin/env bash
# The Debian package: built with cpack from packaging/deb/package.cmake around the given binary,
# then checked as dpkg and lintian see it, unpacked into a throw-away root, and its maintainer
# scripts run against stub commands that record what they would do.
#
#   bash tests/integration/package_test.sh MXWARD_BINARY SOURCE_DIR
#
# Needs cmake/cpack, dpkg-deb, dpkg-shlibdeps, lintian, hardening-check (devscripts) and
# systemd-analyze (packaging/install-deps.sh test); a missing tool is a failure, not a skip.
set -euo pipefail

binary=$(readlink -f "$1")
src=$(readlink -f "$2")
fail() { echo "package_test: FAIL: $*" >&2; exit 1; }
for tool in cmake cpack dpkg-deb dpkg-shlibdeps lintian hardening-check systemd-analyze gzip man; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (packaging/install-deps.sh test)"
done
[ -x "$binary" ] || fail "no mxward binary at $1"

tmp=$(mktemp -d /tmp/mxward-package-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
checks=0
ok() { checks=$((checks + 1)); }

version=$(sed -n 's/^project(mxward VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$version" ] || fail "cannot read the version from $src/CMakeLists.txt"

# --- build the .deb around the existing binary (no rebuild of the tree) ----------------------
mkdir -p "$tmp/proj"
cat >"$tmp/proj/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.25)
project(mxward VERSION $version LANGUAGES C)
set(MXWARD_PREBUILT_BINARY "$binary")
include("$src/packaging/deb/package.cmake")
EOF
cmake -S "$tmp/proj" -B "$tmp/build" >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "cmake"; }
(cd "$tmp/build" && cpack -G DEB >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; fail "cpack"; }
deb=$(ls "$tmp"/build/mxward_"$version"-1_*.deb 2>/dev/null | head -1)
[ -f "$deb" ] || { cat "$tmp/cpack.log"; fail "cpack made no mxward_${version}-1_*.deb"; }
echo "package_test: built $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# --- control data -----------------------------------------------------------------------------
dpkg-deb --info "$deb" >"$tmp/info" || fail "dpkg-deb --info"
field() { sed -n "s/^ $1: //p" "$tmp/info"; }
[ "$(field Package)" = mxward ] || fail "Package: $(field Package)"; ok
[ "$(field Version)" = "$version-1" ] || fail "Version: $(field Version)"; ok
[ "$(field Section)" = admin ] || fail "Section: $(field Section)"; ok
depends=$(field Depends)
for d in adduser nftables libc6 libsqlite3-0 libnftables1; do
  [[ "$depends" == *"$d"* ]] || fail "Depends lacks $d: $depends"; ok
done

mkdir "$tmp/control"
dpkg-deb --control "$deb" "$tmp/control"
for s in postinst prerm postrm; do
  [ -f "$tmp/control/$s" ] || fail "no $s"
  [ "$(stat -c %a "$tmp/control/$s")" = 755 ] || fail "$s is not 0755"
  sh -n "$tmp/control/$s" || fail "$s: syntax"
  ok
done

# --- files: the layout of docs/operations.md -----------------------------------------------
dpkg-deb --contents "$deb" | awk '{print $1, $2, $NF}' | sed 's| \./| /|' >"$tmp/contents"
has() { grep -q " $1\$" "$tmp/contents" || fail "package lacks $1"; ok; }
has /usr/sbin/mxward
has /etc/mxward/mxward.toml
has /etc/mxward/rules.d/
has /etc/mxward/rules.d/parsers/
has /lib/systemd/system/mxward.service
has /usr/share/man/man8/mxward.8.gz
has /usr/share/doc/mxward/copyright
has /usr/share/doc/mxward/changelog.Debian.gz
has /usr/share/doc/mxward/README.md
has /usr/share/doc/mxward/examples/rsyslog/61-mxward-tls-gtls.conf
has /usr/share/doc/mxward/examples/rsyslog/61-mxward-tls-ossl.conf
has /usr/share/doc/mxward/examples/dovecot/95-mxward-policy.conf
has /usr/share/doc/mxward/examples/postfix/main.cf.mxward-policy
grep -q ' /etc/rsyslog.d/61-mxward-tls' "$tmp/contents" && fail "a TLS sender snippet under /etc/rsyslog.d"
if [ -f "$src/packaging/rsyslog/60-mxward.conf" ]; then
  has /etc/rsyslog.d/60-mxward.conf.disabled
  grep -q ' /etc/rsyslog.d/60-mxward.conf$' "$tmp/contents" && fail "rsyslog snippet shipped enabled"
fi
has /etc/rsyslog.d/60-mxward-trusted.conf.disabled
grep -q ' /etc/rsyslog.d/60-mxward-trusted.conf$' "$tmp/contents" &&
  fail "trusted rsyslog snippet shipped enabled"
if [ -f "$src/docs/operations.md" ]; then has /usr/share/doc/mxward/operations.md; fi
if [ -f "$src/packaging/grafana/mxward-dashboard.json" ]; then
  has /usr/share/doc/mxward/examples/mxward-dashboard.json
fi
for f in "$src"/rules.d/*.toml "$src"/rules.d/parsers/*.toml; do
  [ -e "$f" ] || continue
  has "/etc/mxward/rules.d/${f#"$src"/rules.d/}"
done
grep -q "^-rwxr-xr-x root/root /usr/sbin/mxward$" "$tmp/contents" ||
  fail "/usr/sbin/mxward is not root-owned 0755: $(grep /usr/sbin/mxward "$tmp/contents")"
ok
grep -q "^-rw-r--r-- root/root /etc/mxward/mxward.toml$" "$tmp/contents" ||
  fail "mxward.toml is not 0644 root in the package (postinst restricts it)"
ok

# Every file under /etc is a conffile (upgrades keep local edits), and every conffile is shipped.
grep '^-' "$tmp/contents" | awk '{print $3}' | grep '^/etc/' | sort >"$tmp/etc-files"
sort "$tmp/control/conffiles" >"$tmp/conffiles"
diff -u "$tmp/etc-files" "$tmp/conffiles" || fail "conffiles differ from the files under /etc"
ok

# --- unpack into a throw-away root and use what is there --------------------------------------
root=$tmp/root
dpkg-deb -x "$deb" "$root"
"$root/usr/sbin/mxward" --version | grep -qx "mxward $version" || fail "unpacked binary --version"
ok
# Debian's hardening (CMakeLists.txt: MXWARD_HARDENING, flags from dpkg-buildflags): the packaged
# binary has each of these. Stack clash and CET are not in Debian 12's defaults, so not required.
hardening-check "$root/usr/sbin/mxward" >"$tmp/hardening.log" 2>&1 || true
for feature in "Position Independent Executable" "Stack protected" "Fortify Source functions" \
  "Read-only relocations" "Immediate binding"; do
  grep -q "^ $feature: yes" "$tmp/hardening.log" ||
    { cat "$tmp/hardening.log"; fail "hardening-check: $feature"; }
  ok
done
python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' \
  "$root/etc/mxward/mxward.toml" || fail "mxward.toml is not valid TOML"
ok
# The shipped config and the shipped playbooks and parsers are accepted by mxward itself.
"$root/usr/sbin/mxward" --config "$root/etc/mxward/mxward.toml" --db "$tmp/state.db" \
  --rules "$root/etc/mxward/rules.d" check >"$tmp/check.out" 2>"$tmp/check.err" ||
  { cat "$tmp/check.out" "$tmp/check.err"; fail "mxward check rejects the shipped files"; }
ok
# The man page renders without groff warnings.
zcat "$root/usr/share/man/man8/mxward.8.gz" >"$tmp/mxward.8"
warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$tmp/mxward.8" 2>&1 >/dev/null || true)
[ -z "$warnings" ] || fail "man page warnings: $warnings"
ok
# The unit verifies (with ExecStart pointing at the unpacked binary; its man: link resolves in
# the unpacked man tree).
sed "s|/usr/sbin/mxward|$root/usr/sbin/mxward|" "$root/lib/systemd/system/mxward.service" \
  >"$tmp/mxward.service"
MANPATH="$root/usr/share/man:" systemd-analyze verify "$tmp/mxward.service" \
  >"$tmp/verify.log" 2>&1 || { cat "$tmp/verify.log"; fail "systemd-analyze verify"; }
[ ! -s "$tmp/verify.log" ] || { cat "$tmp/verify.log"; fail "systemd-analyze verify warnings"; }
ok
# A memory ceiling, so a runaway mxward is killed (and restarted) before Postfix or Dovecot is.
grep -qE '^MemoryMax=[0-9]+[KMG]$' "$tmp/mxward.service" || fail "the unit sets no MemoryMax"
ok

# --- maintainer scripts against recording stubs ----------------------------------------------
# PATH holds only stubs, so nothing on this machine is changed: each stub logs its argv.
stubs=$tmp/stubs
mkdir "$stubs"
cat >"$stubs/stub" <<'EOF'
#!/bin/bash
echo "${0##*/} $*" >>"$STUB_LOG"
case "${0##*/}" in
  getent) [ "${STUB_USER_EXISTS:-0}" = 1 ] || exit 2 ;;
  dpkg-statoverride) exit 1 ;;  # no override registered
  deb-systemd-helper) [ "$1" != --quiet ] || [ "$2" != was-enabled ] || exit 0 ;;
esac
exit 0
EOF
chmod 755 "$stubs/stub"
for c in getent addgroup adduser install chown chmod dpkg-statoverride deb-systemd-helper \
  deb-systemd-invoke systemctl nft rm; do
  ln -s stub "$stubs/$c"
done
# Real text tools for postrm's reading of the config.
for c in awk sed tail; do ln -s "$(command -v $c)" "$stubs/$c"; done
run_script() {  # NAME ARGS...: runs a control script with the stubs, log in $STUB_LOG
  local name=$1
  shift
  env -i PATH="$stubs" STUB_LOG="$STUB_LOG" STUB_USER_EXISTS="${STUB_USER_EXISTS:-0}" \
    /bin/sh "$tmp/control/$name" "$@"
}

export STUB_LOG=$tmp/first-install.log
: >"$STUB_LOG"
run_script postinst configure || fail "postinst configure (first install)"
expect() { grep -qxF -- "$1" "$STUB_LOG" || { cat "$STUB_LOG"; fail "expected: $1"; }; ok; }
expect "addgroup --system --quiet mxward"
expect "adduser --system --quiet --ingroup mxward --home /var/lib/mxward --no-create-home --shell /usr/sbin/nologin --gecos mxward abuse response mxward"
expect "chown root:mxward /etc/mxward/mxward.toml"
expect "chmod 0640 /etc/mxward/mxward.toml"
expect "deb-systemd-helper enable mxward.service"

export STUB_LOG=$tmp/upgrade.log STUB_USER_EXISTS=1
: >"$STUB_LOG"
run_script postinst configure 0.0.9 || fail "postinst configure (upgrade)"
! grep -qE '^(adduser|addgroup) ' "$STUB_LOG" || fail "upgrade re-created the user"
ok
expect "chown root:mxward /etc/mxward/mxward.toml"

if run_script postinst bogus 2>/dev/null; then fail "postinst accepted an unknown argument"; fi
ok

export STUB_LOG=$tmp/remove.log
: >"$STUB_LOG"
run_script prerm remove || fail "prerm remove"
run_script postrm remove || fail "postrm remove"
expect "nft delete table inet mxward"
! grep -q '^rm ' "$STUB_LOG" || fail "remove deleted state (only purge may)"
ok

# A renamed table is the one removed; a name nft would not take is not passed on.
export STUB_LOG=$tmp/remove-renamed.log
: >"$STUB_LOG"
printf '[store]\npath = "/var/lib/mxward/x.db"\n[nftables]\nfamily = "ip"\ntable = "mx_bans"\n' \
  >"$tmp/renamed.toml"
env -i PATH="$stubs" STUB_LOG="$STUB_LOG" MXWARD_CONFIG="$tmp/renamed.toml" \
  /bin/sh "$tmp/control/postrm" remove || fail "postrm remove (renamed table)"
expect "nft delete table ip mx_bans"
export STUB_LOG=$tmp/remove-hostile.log
: >"$STUB_LOG"
printf '[nftables]\ntable = "x; rm -rf /"\n' >"$tmp/hostile.toml"
env -i PATH="$stubs" STUB_LOG="$STUB_LOG" MXWARD_CONFIG="$tmp/hostile.toml" \
  /bin/sh "$tmp/control/postrm" remove || fail "postrm remove (hostile table)"
expect "nft delete table inet mxward"

export STUB_LOG=$tmp/purge.log
: >"$STUB_LOG"
run_script postrm purge || fail "postrm purge"
expect "rm -rf /var/lib/mxward"
expect "deb-systemd-helper purge mxward.service"
! grep -q '^deluser' "$STUB_LOG" || fail "purge removed the system user"
ok

# --- lintian ----------------------------------------------------------------------------------
# Errors fail the test; warnings are printed. Tags overridden with reasons are in
# packaging/deb/lintian-overrides (shipped in the package).
lintian --fail-on error --tag-display-limit 0 "$deb" >"$tmp/lintian.log" 2>&1 ||
  { cat "$tmp/lintian.log"; fail "lintian reports errors"; }
ok
# Its hardening tags are warnings to lintian; the package must have none of them.
! grep -E 'hardening-no-' "$tmp/lintian.log" || fail "lintian finds the binary unhardened"
ok
if [ -s "$tmp/lintian.log" ]; then
  echo "package_test: lintian says:"
  sed 's/^/  /' "$tmp/lintian.log"
fi

echo "package_test: $checks checks passed"
