#!/usr/bin/env bash
# Installs the Debian packages mxward needs. This file is the only place the package list lives.
#
#   packaging/install-deps.sh run    what building and running mxward needs
#   packaging/install-deps.sh test   the above plus what the test suite starts for real
#                                    (nft, rsyslogd with its TLS drivers, MariaDB, PostgreSQL,
#                                    fail2ban, clang fuzzers, systemd-journal-remote,
#                                    Postfix, Dovecot and Roundcube, policyd-spf (Python and
#                                    Perl), OpenDKIM, OpenDMARC and dnsmasq, Prometheus's
#                                    promtool)
#
# Packages already installed are left alone; apt-get runs only when something is missing.
set -euo pipefail

profile=${1:-run}

build_pkgs=(
  build-essential cmake pkg-config dpkg-dev
  libboost-dev libre2-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev
  libtomlplusplus-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libnftables-dev libmariadb-dev libpq-dev libsystemd-dev zlib1g-dev
  libgtest-dev libgmock-dev
)
run_pkgs=(nftables sqlite3)
test_pkgs=(
  nftables iproute2 util-linux bsdutils procps python3 python3-aiosmtpd openssl sqlite3
  rsyslog mariadb-server mariadb-client postgresql postgresql-client fail2ban
  rsyslog-gnutls rsyslog-openssl   # rsyslog_tls_test: the two TLS drivers as senders
  systemd-journal-remote           # journal files written from export format (journal input)
  clang libclang-rt-14-dev
  lintian time devscripts          # package_test: hardening-check on the packaged binary
  lld                              # the linker of the test builds (CMakeLists.txt: MXWARD_USE_LLD)
  postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-submissiond dovecot-managesieved  # real_mail_servers_test
  roundcube-core roundcube-sqlite3 php-cli php-sqlite3  # real_mail_servers_test: Roundcube, php -S
  postfix-policyd-spf-python postfix-policyd-spf-perl dnsmasq-base  # policyd_spf_real_test
  opendkim opendkim-tools opendmarc  # sender_auth_milters_real_test: the milters, opendkim-genkey
  clamav-daemon clamdscan          # clamd_real_test: a real clamd and its client
  prometheus                       # cli_status_test: promtool check metrics on a real /metrics
)

case "$profile" in
  run) want=("${build_pkgs[@]}" "${run_pkgs[@]}") ;;
  test) want=("${build_pkgs[@]}" "${run_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "mxward: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "mxward: installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# Services that apt would start (mariadb, postgresql, rsyslog) are not wanted running system-wide:
# tests start their own instances in temp dirs. policy-rc.d 101 tells invoke-rc.d not to start them.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
  trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi
# roundcube-core's dbconfig-common would otherwise set up a system database (MySQL by default)
# and a web server; the test gives Roundcube its own config and SQLite file instead.
if [[ " ${missing[*]} " == *" roundcube-core "* ]]; then
  printf '%s\n' 'roundcube-core roundcube/dbconfig-install boolean false' \
    'roundcube-core roundcube/reconfigure-webserver multiselect' \
    'roundcube-core roundcube/restart-webserver boolean false' |
    "${sudo[@]}" debconf-set-selections
fi
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
