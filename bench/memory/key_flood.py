#!/usr/bin/env python3
"""A log of many distinct attacking addresses, each failing once per service: what fills the
playbooks' key tables (issue 20, "Memory: 1,000,000 active keys").

    bench/memory/key_flood.py [--addresses N] [--hours H] > flood.log

Each of N IPv4 addresses (11.0.0.0/8, 13 apart, so /24 keys fill too) sends one Postfix SASL
failure, one Dovecot IMAP login failure (one of 5,000 user names) and one Roundcube failure (one of
7,000), spread evenly over H hours with RFC 3339 stamps. No address reaches any threshold, so
every key stays until its window lets it go: the keys held at once are the arrival rate times the
windows. Then, for example:

    /usr/bin/time -v build/release/mxward --config /dev/null replay --rules rules.d \\
        --db /tmp/flood.db flood.log

prints "keys held N (at most M)" and the peak RSS. With the shipped max_keys (250,000 per
playbook, less where a playbook says so) the tables stop growing at their caps; docs/benchmarks.md
says how the 1,000,000-key figure was taken with the caps raised.
"""
import argparse
import datetime
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addresses", type=int, default=1_000_000)
    ap.add_argument("--hours", type=float, default=14.0)
    args = ap.parse_args()
    base = datetime.datetime(2026, 12, 1, 8, 0, 0)
    span = args.hours * 3600.0
    out = sys.stdout
    for i in range(args.addresses):
        a = (11 << 24) + i * 13
        ip = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
        t = base + datetime.timedelta(seconds=i * span / args.addresses)
        stamp = t.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00")
        out.write(f"{stamp} mx1 postfix/submission/smtpd[4101]: warning: unknown[{ip}]: "
                  "SASL LOGIN authentication failed: UGFzc3dvcmQ6\n")
        out.write(f"{stamp} mx1 dovecot: imap-login: Disconnected: Connection closed (auth "
                  f"failed, 1 attempts in 2 secs): user=<u{i % 5000}@example.org>, method=PLAIN, "
                  f"rip={ip}, lip=192.0.2.1, session=<abc{i}>\n")
        out.write(f"{stamp} mx1 roundcube: FAILED login for w{i % 7000}@example.org from {ip}\n")


if __name__ == "__main__":
    main()
