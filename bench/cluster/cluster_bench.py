#!/usr/bin/env python3
"""Cluster decision latency and catch-up (issue 18): real PostgreSQL, three `mxward serve` nodes
(a, b, c), each in a network namespace of its own with its own nftables table.

1. Decision -> kernel: N bans by hand on node a (a bans.add request written straight to a's
   control socket); for each, the time from just before the request is written to the moment the
   kernel of node c announces the new set element on netlink (NFNLGRP_NFTABLES, watched from inside
   c's namespace). Prints p50/p90/p99/max.
2. Catch-up: c is stopped, M decisions of another node are written to the decision log (one SQL
   transaction, as a node publishing them would), c is started again; the time from its start to
   the moment all M are done in its store, the number of elements then in its kernel set, and the
   CPU time c used meanwhile (user + system, all threads): on a shared machine the wall-clock
   time depends on the load, the CPU time much less.

Needs root (network namespaces, nftables), postgresql-15, nft, python3. Not a test: it prints
figures. Usage: bench/cluster/cluster_bench.py BUILD_DIR [--decisions N] [--catchup M] [--claim-batch B]
                                                [--keep]
"""
import argparse
import ctypes
import json
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "..", "latency"))
from latency import ElementWatcher  # noqa: E402  (netlink set-element notifications)

PG_BIN = "/usr/lib/postgresql/15/bin"
CLONE_NEWNET = 0x40000000


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)  # polling a condition in a benchmark driver, not synchronising a test
    sys.exit(f"timed out waiting for {what}")


class Postgres:
    def __init__(self, work):
        self.dir = os.path.join(work, "pg")
        self.sock = os.path.join(self.dir, "sock")
        os.makedirs(self.sock)
        subprocess.run(["chown", "-R", "nobody:", self.dir], check=True)
        self.port = free_port()
        subprocess.run(["runuser", "-u", "nobody", "--", f"{PG_BIN}/initdb", "-D",
                        self.dir + "/data", "--username=postgres", "--auth=trust",
                        "--no-sync"], check=True, stdout=subprocess.DEVNULL)
        nobody = pwd.getpwnam("nobody")
        self.proc = subprocess.Popen(
            [f"{PG_BIN}/postgres", "-D", self.dir + "/data", "-k", self.sock, "-p",
             str(self.port), "-c", "listen_addresses=", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "TimeZone=UTC"],
            user=nobody.pw_uid, group=nobody.pw_gid, stdout=subprocess.DEVNULL,
            stderr=open(self.dir + "/log", "w"))
        wait_for(lambda: self.sql("SELECT 1", check=False) == "1", 60, "postgres")
        self.sql("CREATE ROLE mxward LOGIN")
        self.sql("CREATE DATABASE mxward OWNER mxward")

    def sql(self, text, db="postgres", check=True):
        r = subprocess.run([f"{PG_BIN}/psql", "-h", self.sock, "-p",
                            str(self.port), "-U", "postgres", "-d", db, "-tAq", "-v",
                            "ON_ERROR_STOP=1", "-c", text],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            sys.exit(f"psql: {r.stderr}")
        return r.stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Node:
    def __init__(self, work, name, binary, pg, rules, claim_batch):
        self.name, self.binary, self.rules = name, binary, rules
        self.dir = os.path.join(work, "node-" + name)
        os.makedirs(self.dir)
        self.db = self.dir + "/state.db"
        self.sock = self.dir + "/control.sock"
        self.config = self.dir + "/mxward.toml"
        self.log = self.dir + "/serve.log"
        with open(self.config, "w") as f:
            if claim_batch:
                f.write(f"[dispatcher]\nclaim_batch = {claim_batch}\n")
            f.write("[nftables]\nenabled = true\n"
                    f"[cluster]\nnode = \"{name}\"\n"
                    f"dsn = \"host={pg.sock} port={pg.port} dbname=mxward user=mxward\"\n")
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        argv = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                self.binary, "--db", self.db, "--config", self.config, "--rules", self.rules,
                "--socket", self.sock, "serve"]
        self.proc = subprocess.Popen(argv, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        wait_for(lambda: open(self.log).read().count("ready:") >= self.starts, 60,
                 f"node {self.name}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()

    def request(self, req):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock)
        s.sendall((json.dumps(req) + "\n").encode())
        resp = s.makefile().readline()
        s.close()
        return json.loads(resp)


def setns(pid):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        sys.exit("setns failed: " + os.strerror(ctypes.get_errno()))
    os.close(fd)


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads) so far, from /proc: a figure that
    does not depend on what else the machine runs, unlike the wall-clock time."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--decisions", type=int, default=300)
    ap.add_argument("--catchup", type=int, default=100_000)
    ap.add_argument("--claim-batch", type=int, default=0,
                    help="[dispatcher] claim_batch of every node (default: mxward's default)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--perf", metavar="FILE",
                    help="perf record -g node c during the catch-up into FILE")
    args = ap.parse_args()
    binary = os.path.abspath(os.path.join(args.build, "mxward"))
    work = tempfile.mkdtemp(prefix="mxward-cluster-bench-")
    os.chmod(work, 0o755)
    rules = os.path.join(work, "rules.d")
    shutil.copytree(os.path.join(SRC, "rules.d", "parsers"), os.path.join(rules, "parsers"))
    pg = Postgres(work)
    nodes = [Node(work, n, binary, pg, rules, args.claim_batch) for n in ("a", "b", "c")]
    try:
        for n in nodes:
            n.start()
        a, c = nodes[0], nodes[2]
        setns(c.proc.pid)  # from here on, this process's netlink socket is c's
        watcher = ElementWatcher()
        watcher.start()
        lat = []
        for i in range(args.decisions):
            addr = f"10.77.{i >> 8}.{i & 255}"
            t0 = time.monotonic_ns()
            r = a.request({"op": "bans.add", "address": addr, "duration_s": 7200,
                           "reason": "bench"})
            if not r.get("ok"):
                sys.exit(f"bans.add: {r}")
            seen = watcher.wait(addr, 10)
            if seen is None:
                sys.exit(f"{addr} never reached node c")
            lat.append((seen - t0) / 1e6)
        print(f"decision on a -> element in c's kernel set, {len(lat)} bans (ms): "
              f"p50 {pct(lat, 50):.2f}  p90 {pct(lat, 90):.2f}  p99 {pct(lat, 99):.2f}  "
              f"max {max(lat):.2f}")

        c.stop()
        m = args.catchup
        t = time.monotonic()
        pg.sql("BEGIN; UPDATE mxward_decision_counter SET last = last + %d; "
               "INSERT INTO mxward_decisions (seq, kind, scope, expires_at, node, "
               "origin_action_id) SELECT k.last - %d + g, 'ban', "
               "'11.' || (g >> 16) || '.' || ((g >> 8) & 255) || '.' || (g & 255), "
               "now() + interval '2 hours', 'bench', g "
               "FROM generate_series(1, %d) g, mxward_decision_counter k; "
               "SELECT pg_notify('mxward_decisions', last::text) FROM mxward_decision_counter; "
               "COMMIT;" % (m, m, m), db="mxward")
        print(f"{m} decisions written to the log in {time.monotonic() - t:.2f} s")
        # What the decision log costs the database (for docs/cluster.md's 20-node estimate): the
        # table with its TOAST and indexes, after the bench's own N + M rows.
        size = pg.sql("SELECT count(*) || ' ' || pg_relation_size('mxward_decisions') || ' ' || "
                      "pg_indexes_size('mxward_decisions') || ' ' || "
                      "pg_total_relation_size('mxward_decisions') FROM mxward_decisions",
                      db="mxward").split()
        rows, heap, idx, total = (int(x) for x in size[-4:])
        print(f"mxward_decisions: {rows} rows, heap {heap} B, indexes {idx} B, total {total} B "
              f"({total / max(rows, 1):.0f} B per decision)")
        t0 = time.monotonic()
        c.start()
        ready = time.monotonic()
        cpu0 = cpu_seconds(c.proc.pid)
        perf = None
        if args.perf:
            perf = subprocess.Popen(["perf", "record", "-g", "-q", "-o", args.perf, "-p",
                                     str(c.proc.pid)], stdout=subprocess.DEVNULL)

        # Applied: a received decision's own action done (one outbox action each, before the
        # bulk path), or the bans of a cluster_batch action done (the bulk path: one per batch).
        def done():
            con = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True)
            try:
                one_each = con.execute(
                    "SELECT count(*) FROM actions WHERE status = 'done' AND "
                    "json_extract(params, '$.address') LIKE '11.%'").fetchone()[0]
                batched = con.execute(
                    "SELECT coalesce(sum(json_extract(params, '$.bans')), 0) FROM actions "
                    "WHERE type = 'cluster_batch' AND status = 'done'").fetchone()[0]
                return one_each + batched
            except sqlite3.OperationalError:
                return 0
            finally:
                con.close()
        queued_at = None
        while True:
            n = done()
            if queued_at is None and "cluster: node c connected" in open(c.log).read():
                queued_at = time.monotonic()
            if n >= m:
                break
            if time.monotonic() - t0 > 600:
                sys.exit(f"catch-up incomplete after 600 s: {n} of {m}")
            time.sleep(0.1)
        t1 = time.monotonic()
        cpu = cpu_seconds(c.proc.pid) - cpu0
        if perf:
            perf.send_signal(2)
            perf.wait()
        out = subprocess.run(["nsenter", f"--net=/proc/{c.proc.pid}/ns/net", "nft", "-j", "list",
                              "set", "inet", "mxward", "banned_v4"], capture_output=True,
                             text=True).stdout
        in_kernel = out.count('"11.')
        print(f"catch-up of {m} missed decisions on c: {t1 - t0:.2f} s from start "
              f"({t1 - ready:.2f} s after ready); {in_kernel} of them in c's kernel set; "
              f"c used {cpu:.2f} s of CPU (user+system, all threads) meanwhile; "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"work dir: {work}")
    finally:
        for n in nodes:
            if n.proc and n.proc.poll() is None:
                n.stop()
        pg.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
