#!/usr/bin/env python3
"""Cluster decision latency with MariaDB as the engine (issue 18): cluster_bench.py's measurement
with a real MariaDB of its own instead of PostgreSQL. Three `mxward serve` nodes (a, b, c), each
in a network namespace of its own with its own nftables table and `[cluster] engine = "mariadb"`
over the server's unix socket; the nodes poll the log every poll_interval (no doorbell).

1. Decision -> kernel: N bans by hand on node a (bans.add on a's control socket); for each, the
   time from just before the request is written to the moment c's kernel announces the new set
   element on netlink (watched from inside c's namespace). Prints p50/p90/p99/max.
2. With --catchup M: c stopped, M decisions of another node written to the log in one
   transaction (the counter row locked first, as a node publishing them would), c started again;
   the time until all M are done in its store.

Before the bans, the server's load while the three nodes only poll (--idle seconds): prepared
statements per second and mariadbd's CPU time (user + system) per second.

Needs root, mariadb-server (mariadb-install-db, mariadbd), nft, python3. Not a test: it prints
figures. Usage: bench/cluster/cluster_bench_mariadb.py BUILD_DIR [--decisions N]
                    [--poll-interval 250ms] [--back-to-back] [--idle S] [--catchup M] [--keep]
"""
import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cluster_bench as cb  # noqa: E402  (nodes, netlink watcher, percentiles)


class Mariadb:
    def __init__(self, work):
        self.dir = os.path.join(work, "mariadb")
        os.makedirs(self.dir + "/tmp")
        self.sock = os.path.join(self.dir, "mysqld.sock")
        subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + self.dir + "/data",
                        "--user=root", "--auth-root-authentication-method=normal",
                        "--skip-test-db", "--tmpdir=" + self.dir + "/tmp"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The Debian package's defaults but for the binary log (a cluster log's writes would
        # otherwise be written twice) and a small buffer pool; durability as packaged
        # (innodb_flush_log_at_trx_commit = 1).
        self.proc = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", "--datadir=" + self.dir + "/data",
             "--socket=" + self.sock, "--tmpdir=" + self.dir + "/tmp", "--skip-networking",
             "--user=root", "--pid-file=" + self.dir + "/mariadbd.pid", "--skip-log-bin",
             "--innodb-buffer-pool-size=64M", "--log-error=" + self.dir + "/mariadbd.err"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cb.wait_for(lambda: self.sql("SELECT 1", check=False) == "1", 60, "mariadbd")
        self.sql("CREATE DATABASE mxward; CREATE USER 'mxward'@'localhost'; "
                 "GRANT ALL ON mxward.* TO 'mxward'@'localhost'")

    def sql(self, text, db="", check=True):
        argv = ["mariadb", "--no-defaults", "--protocol=socket", "--socket=" + self.sock,
                "--user=root", "--batch", "--skip-column-names", "--execute=" + text]
        if db:
            argv.append("--database=" + db)
        r = subprocess.run(argv, capture_output=True, text=True)
        if check and r.returncode != 0:
            sys.exit(f"mariadb: {r.stderr}")
        return r.stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def mariadb_node(work, name, binary, db, rules, poll_interval):
    # cluster_bench's Node, its [cluster] written for MariaDB instead.
    class NoPostgres:
        sock, port = "", 0
    n = cb.Node(work, name, binary, NoPostgres, rules, 0)
    with open(n.config, "w") as f:
        f.write("[nftables]\nenabled = true\n"
                f"[cluster]\nnode = \"{name}\"\nengine = \"mariadb\"\nsocket = \"{db.sock}\"\n"
                f"user = \"mxward\"\ndatabase = \"mxward\"\npoll_interval = \"{poll_interval}\"\n")
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--decisions", type=int, default=300)
    ap.add_argument("--poll-interval", default="250ms")
    ap.add_argument("--catchup", type=int, default=0)
    ap.add_argument("--back-to-back", action="store_true",
                    help="no random pause between bans: each ban then lands just after c's "
                         "poll, the worst case (a whole poll_interval)")
    ap.add_argument("--idle", type=int, default=30,
                    help="seconds of idle polling over which the server's load is measured")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    binary = os.path.abspath(os.path.join(args.build, "mxward"))
    work = tempfile.mkdtemp(prefix="mxward-cluster-bench-mariadb-")
    os.chmod(work, 0o755)
    rules = os.path.join(work, "rules.d")
    shutil.copytree(os.path.join(cb.SRC, "rules.d", "parsers"), os.path.join(rules, "parsers"))
    db = Mariadb(work)
    nodes = [mariadb_node(work, n, binary, db, rules, args.poll_interval) for n in ("a", "b", "c")]
    try:
        # The server alone first (its own background threads), then with the nodes polling.
        def server_counts():
            out = db.sql("SHOW GLOBAL STATUS WHERE Variable_name IN "
                         "('Com_stmt_execute', 'Questions')")
            counts = dict(line.split("\t") for line in out.splitlines())
            return int(counts["Com_stmt_execute"]), int(counts["Questions"])

        def measure_idle(what):
            cpu0, (exec0, q0) = cb.cpu_seconds(db.proc.pid), server_counts()
            time.sleep(args.idle)  # the measured interval itself, not a synchronisation
            cpu1, (exec1, q1) = cb.cpu_seconds(db.proc.pid), server_counts()
            print(f"{what} for {args.idle} s: {(exec1 - exec0) / args.idle:.1f} prepared "
                  f"statements/s ({(q1 - q0) / args.idle:.1f} queries/s incl. the measurement's "
                  f"own), mariadbd CPU {1000 * (cpu1 - cpu0) / args.idle:.1f} ms/s")
        if args.idle > 0:
            measure_idle("server alone, no node")
        for n in nodes:
            n.start()
        a, c = nodes[0], nodes[2]
        cb.setns(c.proc.pid)  # from here on, this process's netlink socket is c's
        watcher = cb.ElementWatcher()
        watcher.start()
        if args.idle > 0:
            measure_idle(f"idle, 3 nodes polling every {args.poll_interval}")

        pi = args.poll_interval
        interval_s = float(pi[:-2]) / 1000 if pi.endswith("ms") else float(pi.rstrip("s"))
        lat = []
        rng = random.Random(18)
        for i in range(args.decisions):
            addr = f"10.77.{i >> 8}.{i & 255}"
            if not args.back_to_back:
                # Bans come at random moments relative to c's polls, as on a real platform: a
                # pause of up to one poll interval after the last one arrived, just after a poll.
                time.sleep(rng.uniform(0, interval_s))
            t0 = time.monotonic_ns()
            r = a.request({"op": "bans.add", "address": addr, "duration_s": 7200,
                           "reason": "bench"})
            if not r.get("ok"):
                sys.exit(f"bans.add: {r}")
            seen = watcher.wait(addr, 10)
            if seen is None:
                sys.exit(f"{addr} never reached node c")
            lat.append((seen - t0) / 1e6)
        spacing = "back to back" if args.back_to_back else "at random moments"
        print(f"MariaDB, poll_interval {args.poll_interval}, bans {spacing}: decision on a -> "
              f"element in c's "
              f"kernel set, {len(lat)} bans (ms): p50 {cb.pct(lat, 50):.2f}  "
              f"p90 {cb.pct(lat, 90):.2f}  p99 {cb.pct(lat, 99):.2f}  max {max(lat):.2f}  "
              f"min {min(lat):.2f}; load average {os.getloadavg()[0]:.1f}")

        if args.catchup > 0:
            c.stop()
            m = args.catchup
            t = time.monotonic()
            db.sql("START TRANSACTION; "
                   "SELECT last INTO @k FROM mxward_decision_counter WHERE id = 1 FOR UPDATE; "
                   f"UPDATE mxward_decision_counter SET last = last + {m} WHERE id = 1; "
                   "INSERT INTO mxward_decisions (seq, uuid, kind, scope, created_at, expires_at, "
                   "node, origin_action_id) SELECT @k + seq, UUID(), 'ban', "
                   "CONCAT('11.', seq >> 16, '.', (seq >> 8) & 255, '.', seq & 255), "
                   "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL 2 HOUR, 'bench', seq "
                   f"FROM seq_1_to_{m}; COMMIT;", db="mxward")
            print(f"{m} decisions written to the log in {time.monotonic() - t:.2f} s")
            t0 = time.monotonic()
            c.start()
            ready = time.monotonic()

            def done():
                con = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True)
                try:
                    return con.execute(
                        "SELECT count(*) FROM actions WHERE status = 'done' AND "
                        "json_extract(params, '$.address') LIKE '11.%'").fetchone()[0]
                except sqlite3.OperationalError:
                    return 0
                finally:
                    con.close()
            while done() < m:
                if time.monotonic() - t0 > 600:
                    sys.exit("catch-up incomplete after 600 s")
                time.sleep(0.1)  # polling a condition in a benchmark driver
            t1 = time.monotonic()
            print(f"catch-up of {m} missed decisions on c: {t1 - t0:.2f} s from start "
                  f"({t1 - ready:.2f} s after ready)")
        print(f"work dir: {work}")
    finally:
        for n in nodes:
            if n.proc and n.proc.poll() is None:
                n.stop()
        db.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
