#!/usr/bin/env python3
"""Sends a log file to a running `mxward serve` over N TCP (or TLS) connections at once and
measures how fast the daemon processes it: wall time from the first byte sent until
mxward_lines_total (its /metrics) has counted every line, and the daemon's CPU time over that
interval (utime + stime of its /proc/PID/stat, all its threads).

The file is cut into N contiguous ranges of lines, one per connection, each sent as fast as the
daemon reads it (sendall of 256 KiB chunks: TCP backpressure paces the sender).

  send.py --pid PID --file mail.log [--connections N] [--port 5514] [--metrics 9580]
          [--tls CA CERT KEY]
"""
import argparse
import os
import socket
import ssl
import threading
import time
import urllib.request


def metric(port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--port", type=int, default=5514)
    ap.add_argument("--metrics", type=int, default=9580)
    ap.add_argument("--tls", nargs=3, metavar=("CA", "CERT", "KEY"))
    a = ap.parse_args()

    with open(a.file, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    n = len(lines)
    per = (n + a.connections - 1) // a.connections
    parts = [b"".join(lines[i * per:(i + 1) * per]) for i in range(a.connections)]
    del lines

    ctx = None
    if a.tls:
        ctx = ssl.create_default_context(cafile=a.tls[0])
        ctx.load_cert_chain(a.tls[1], a.tls[2])
        ctx.check_hostname = False
    socks = []
    for _ in parts:
        s = socket.create_connection(("127.0.0.1", a.port))
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="mxward.test")
        socks.append(s)

    base = metric(a.metrics, "mxward_lines_total")
    cpu0 = cpu_seconds(a.pid)
    t0 = time.monotonic()

    def send(s, data):
        view = memoryview(data)
        for off in range(0, len(view), 256 * 1024):
            s.sendall(view[off:off + 256 * 1024])
        s.close()

    threads = [threading.Thread(target=send, args=(s, d)) for s, d in zip(socks, parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Counted: every line went through the pipeline. Polled every 10 ms (the sender is done).
    deadline = time.monotonic() + 600
    while metric(a.metrics, "mxward_lines_total") - base < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {metric(a.metrics, 'mxward_lines_total') - base:.0f} of {n}")
        time.sleep(0.01)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(a.pid) - cpu0
    print(f"{n} lines over {a.connections} {'tls' if a.tls else 'tcp'} connection(s): "
          f"wall {wall:.2f} s = {n / wall:,.0f} lines/s; daemon CPU {cpu:.2f} s = "
          f"{n / cpu:,.0f} lines per CPU second")


if __name__ == "__main__":
    main()
