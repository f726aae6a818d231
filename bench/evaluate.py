#!/usr/bin/env python3
"""Scores one bench/run.sh run: speed, memory and detections against the ground truth.

Reads the ground truth written by generate_maillog.py, the /usr/bin/time -v reports of each tool,
`mxward incidents list --json` and the `fail2ban-regex -o row` output of each filter, and prints a
report (Markdown tables, ready for docs/benchmarks.md). Exits 1 when mxward missed an attack or
acted on a benign key, so run.sh can be used as a check once every piece has landed.

fail2ban's detections are what its jails would ban with Debian's defaults (maxretry = 5 within
findtime = 10m, per jail), computed from the matches fail2ban-regex reports.
"""

import argparse
import ast
import ipaddress
import json
import re
import sys


def parse_time_v(path):
    """(wall seconds, max RSS KiB, exit status, CPU seconds) from a GNU time -v report."""
    wall, rss, status, cpu = None, None, 0, 0.0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("User time (seconds)") or line.startswith("System time (seconds)"):
                cpu += float(line.rsplit(" ", 1)[1])
            elif line.startswith("Elapsed (wall clock) time"):
                v = line.rsplit(" ", 1)[1]
                parts = [float(p) for p in v.split(":")]
                wall = 0.0
                for p in parts:
                    wall = wall * 60 + p
            elif line.startswith("Maximum resident set size"):
                rss = int(line.rsplit(" ", 1)[1])
            elif line.startswith("Exit status"):
                status = int(line.rsplit(" ", 1)[1])
            elif line.startswith("Command exited with non-zero status"):
                status = int(line.rsplit(" ", 1)[1])
    return wall, rss, status, cpu


def f2b_bans(rows_path, maxretry=5, findtime=600):
    """Addresses a jail with these settings would ban, from fail2ban-regex -o row output."""
    hits = {}
    with open(rows_path) as f:
        for line in f:
            line = line.strip().rstrip(",")
            if not line.startswith("["):
                continue
            try:
                row = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                continue
            hits.setdefault(str(row[0]), []).append(float(row[1]))
    banned = set()
    for ip, ts in hits.items():
        ts.sort()
        lo = 0
        for hi in range(len(ts)):
            while ts[hi] - ts[lo] > findtime:
                lo += 1
            if hi - lo + 1 >= maxretry:
                banned.add(ip)
                break
    return banned, sum(len(v) for v in hits.values())


def ip_in(ip, key):
    """True when the IP text equals key or lies in the prefix key."""
    try:
        addr = ipaddress.ip_address(ip)
        return addr in ipaddress.ip_network(key, strict=False)
    except ValueError:
        return False


def incident_matches(inc, kind, key):
    ikind = inc.get("key_kind", "")
    ikey = str(inc.get("key", ""))
    if kind == "client_ip":
        return ikind.startswith("client_ip") and ip_in(key, ikey)
    if kind in ("sasl_user", "user"):
        return ikey.lower() == key.lower() and ("user" in ikind)
    if kind == "dkim_domain":
        return ikey.lower() == key.lower() and "domain" in ikind
    return ikey == key


def print_table(path):
    """One row per corpus of a bench/run.sh run, from the --summary lines."""
    rows = [json.loads(line) for line in open(path)]
    print("| corpus | lines | abuse events | mxward wall | mxward CPU | lines per CPU second | "
          "peak RSS | fail2ban (4 filters) CPU | CPU-time ratio | detections |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = f"{100 * r['abuse_share']:.0f}%" if "abuse_share" in r else "-"
        if "mx_cpu" in r:
            mx = (f"{r['mx_wall']:.2f} s | {r['mx_cpu']:.2f} s | "
                  f"{r['lines'] / r['mx_cpu']:,.0f} | {r['mx_rss_mib']:.0f} MiB")
        else:
            mx = "- | - | - | -"
        f2b = f"{r['f2b_cpu']:.1f} s" if "f2b_cpu" in r else "-"
        ratio = f"{r['f2b_cpu'] / r['mx_cpu']:.0f}x" if "f2b_cpu" in r and r.get("mx_cpu") else "-"
        det = "-"
        if "caught" in r:
            det = f"{r['caught']}/{r['attacks']} attacks, {r['false_positives']} FP"
            if "botnet_addresses" in r:
                det += (f"; acted on {r['botnet_acted']:,} of {r['botnet_addresses']:,} attacking "
                        f"addresses ({r['botnet_20']:,} tried >= 20 times)")
        print(f"| {r['corpus']} | {r['lines']:,} | {share} | {mx} | {f2b} | {ratio} | {det} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--truth")
    ap.add_argument("--lines", type=int)
    ap.add_argument("--mxward-time")
    ap.add_argument("--incidents", help="mxward incidents list --json output")
    ap.add_argument("--f2b", action="append", default=[],
                    help="FILTER::TIMEFILE::ROWSFILE, once per fail2ban filter")
    ap.add_argument("--corpus", default="", help="name of the corpus, for --summary")
    ap.add_argument("--summary", help="append this run's figures as one JSON line to this file")
    ap.add_argument("--table", help="only print the table of the corpora in this --summary file")
    args = ap.parse_args()
    if args.table:
        print_table(args.table)
        return 0
    if not args.truth or args.lines is None:
        ap.error("--truth and --lines are required")

    truth = json.load(open(args.truth))
    attacks, benign = truth["attacks"], truth["benign"]
    ok = True
    botnet = truth.get("botnet")
    summary = {"corpus": args.corpus, "lines": args.lines}
    if botnet:
        summary["abuse_share"] = botnet["abuse_event_lines"] / args.lines
        print(f"botnet: {botnet['addresses']:,} distinct attacking addresses, "
              f"{botnet['abuse_event_lines']:,} abuse event lines "
              f"({100 * summary['abuse_share']:.1f}% of the log)")
    print(f"log: {args.lines} lines, {len(attacks)} attacks, {len(benign)} benign look-alikes "
          f"(seed {truth['seed']})\n")

    # CPU time (user + sys, every thread) is the figure that holds on a shared machine: wall time
    # also counts the time other processes held the cores.
    print("| tool | wall time | lines/s (wall) | CPU time | lines/s (CPU) | peak RSS |")
    print("|---|---|---|---|---|---|")
    mx_rate = mx_cpu_rate = None
    if args.mxward_time:
        wall, rss, status, cpu = parse_time_v(args.mxward_time)
        if status != 0:
            print(f"| mxward replay | FAILED (exit {status}) | | | | |")
            ok = False
        else:
            mx_rate = args.lines / wall if wall else float("inf")
            mx_cpu_rate = args.lines / cpu if cpu else float("inf")
            print(f"| mxward replay, all shipped playbooks | {wall:.2f} s | {mx_rate:,.0f} | "
                  f"{cpu:.2f} s | {mx_cpu_rate:,.0f} | {rss / 1024:.0f} MiB |")
            summary.update(mx_wall=wall, mx_cpu=cpu, mx_rss_mib=rss / 1024)
    f2b_total, f2b_cpu, f2b_rss, f2b_banned = 0.0, 0.0, 0, {}
    for spec in args.f2b:
        name, tfile, rfile = spec.split("::")
        wall, rss, status, cpu = parse_time_v(tfile)
        if status != 0:
            print(f"| fail2ban-regex {name} | FAILED (exit {status}) | | | | |")
            ok = False
            continue
        f2b_total += wall
        f2b_cpu += cpu
        f2b_rss = max(f2b_rss, rss)
        banned, matches = f2b_bans(rfile)
        f2b_banned[name] = banned
        print(f"| fail2ban-regex {name} ({matches} matches) | {wall:.2f} s | "
              f"{args.lines / wall:,.0f} | {cpu:.2f} s | {args.lines / cpu if cpu else 0:,.0f} | "
              f"{rss / 1024:.0f} MiB |")
    f2b_rate = f2b_cpu_rate = None
    if args.f2b:
        f2b_rate = args.lines / f2b_total if f2b_total else None
        f2b_cpu_rate = args.lines / f2b_cpu if f2b_cpu else None
        print(f"| fail2ban, the {len(args.f2b)} filters together (sum) | {f2b_total:.2f} s | "
              f"{f2b_rate:,.0f} | {f2b_cpu:.2f} s | {f2b_cpu_rate or 0:,.0f} | "
              f"{f2b_rss / 1024:.0f} MiB (max) |")
    if args.f2b and f2b_cpu:
        summary.update(f2b_wall=f2b_total, f2b_cpu=f2b_cpu, f2b_rss_mib=f2b_rss / 1024)
    if mx_rate and f2b_rate:
        print(f"\nmxward / fail2ban lines/s: {mx_rate / f2b_rate:.1f}x (wall), "
              f"{mx_cpu_rate / f2b_cpu_rate:.1f}x (CPU time; target 50x)")

    incidents = None
    if args.incidents:
        try:
            incidents = json.load(open(args.incidents))
        except (OSError, ValueError) as e:
            print(f"\ncannot read mxward incidents: {e}")
            ok = False
    all_f2b = set().union(*f2b_banned.values()) if f2b_banned else None

    print("\n| scenario | key | events | mxward | fail2ban |")
    print("|---|---|---|---|---|")
    missed = 0
    for a in attacks:
        mx = "-"
        if incidents is not None:
            hit = [i for i in incidents if incident_matches(i, a["key_kind"], a["key"])]
            mx = ("caught (" + ", ".join(sorted({i.get("playbook", "?") for i in hit})) + ")"
                  if hit else "MISSED")
            if not hit:
                missed += 1
        fb = "-"
        if all_f2b is not None:
            ip = a["key"] if a["key_kind"] == "client_ip" else a.get("client_ip")
            jails = [n for n, b in f2b_banned.items() if ip in b] if ip else []
            if jails:
                fb = ("banned (" + ", ".join(jails) + ")" if ip == a["key"] else
                      f"banned its address {ip} ({', '.join(jails)})")
            elif a["key_kind"] == "client_ip":
                fb = "missed"
            else:
                fb = "cannot (not an address)"
        print(f"| {a['scenario']} | {a['key_kind']} {a['key']} | {a['events']} | {mx} | {fb} |")

    if incidents is not None:
        fps = []
        for b in benign:
            fps += [i for i in incidents if incident_matches(i, b["key_kind"], b["key"])]
        matched_attack = lambda i: any(incident_matches(i, a["key_kind"], a["key"]) for a in attacks)
        tries = botnet["tries"] if botnet else {}
        # Incidents on an attacking address, or on a network holding one (IPv6 /64 and the like):
        # per prefix length, the attacking addresses' networks of that length.
        botnet_keys = set()  # attacking addresses acted on
        incident_on_botnet = set()  # incident keys (address or prefix) on them
        by_len = {}
        for i in incidents:
            key = str(i.get("key", ""))
            if not i.get("key_kind", "").startswith("client_ip"):
                continue
            if key in tries:
                botnet_keys.add(key)
                incident_on_botnet.add(key)
            elif "/" in key:
                try:
                    net = ipaddress.ip_network(key, strict=False)
                except ValueError:
                    continue
                by_len.setdefault((net.version, net.prefixlen), set()).add(str(net))
        for (version, plen), nets in by_len.items():
            for ip in tries:
                addr = ipaddress.ip_address(ip)
                if addr.version != version:
                    continue
                net = str(ipaddress.ip_network(f"{ip}/{plen}", strict=False))
                if net in nets:
                    botnet_keys.add(ip)
                    incident_on_botnet.add(net)
        others = [i for i in incidents
                  if not matched_attack(i) and i not in fps
                  and str(i.get("key")) not in incident_on_botnet]
        print(f"\nmxward: {len(attacks) - missed}/{len(attacks)} attacks caught, "
              f"{len(fps)} false positive(s) on benign keys, {len(others)} other incident(s) "
              f"(background traffic such as DNSBL-listed senders), {len(incidents)} incidents in all")
        for i in fps[:20]:
            print(f"  false positive: {i.get('playbook')} {i.get('key_kind')} {i.get('key')}")
        by_pb = {}
        for i in others:
            by_pb[i.get("playbook", "?")] = by_pb.get(i.get("playbook", "?"), 0) + 1
        for pb, n in sorted(by_pb.items(), key=lambda x: -x[1])[:10]:
            print(f"  other: {n} from playbook {pb}")
        summary.update(caught=len(attacks) - missed, attacks=len(attacks), false_positives=len(fps),
                       incidents=len(incidents))
        if botnet:
            # Not every botnet address is an attack a playbook should act on: most try a few
            # times. Scored by how often each tried in all (the playbooks count in windows).
            for lo, hi in ((1, 4), (5, 19), (20, None)):
                keys = [k for k, n in tries.items() if n >= lo and (hi is None or n <= hi)]
                got = sum(1 for k in keys if k in botnet_keys)
                f2b = sum(1 for k in keys if all_f2b is not None and k in all_f2b)
                label = f"{lo}-{hi}" if hi else f">= {lo}"
                print(f"  botnet addresses with {label} tries: {len(keys):,}; mxward acted on "
                      f"{got:,}" + (f", fail2ban would ban {f2b:,}" if all_f2b is not None else ""))
            summary.update(botnet_addresses=len(tries), botnet_acted=len(botnet_keys),
                           botnet_20=sum(1 for n in tries.values() if n >= 20))
        if missed or fps:
            ok = False
    if all_f2b is not None:
        ip_attacks = [a for a in attacks if a["key_kind"] == "client_ip"]
        caught = sum(1 for a in ip_attacks if a["key"] in all_f2b)
        fp = sum(1 for b in benign if b["key_kind"] == "client_ip" and b["key"] in all_f2b)
        print(f"\nfail2ban (maxretry 5 / findtime 10m): {caught}/{len(ip_attacks)} address-keyed "
              f"attacks banned ({len(attacks) - len(ip_attacks)} attacks are on accounts or "
              f"domains), {fp} benign address(es) banned, {len(all_f2b)} addresses banned in all")
    if args.summary:
        with open(args.summary, "a") as f:
            f.write(json.dumps(summary) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
