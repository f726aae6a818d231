#!/usr/bin/env python3
"""Line -> nftables element latency of a running `mxward serve` (issue 8).

Sends Postfix SASL failure bursts over TCP (postfix-sasl bans at the 20th failure in 10 minutes)
while another connection keeps a background load of other mail log lines flowing, and listens
on netlink (NFNLGRP_NFTABLES) for the kernel's own "new set element" notifications. For every
ban, the latency is the time from just before the triggering 20th line is written to the socket
to the moment the notification for that address arrived. Both timestamps are
CLOCK_MONOTONIC in this process; the notification is sent by the kernel when the element is
committed, so it is when the ban is in force.

Run inside the daemon's network namespace (bench/latency/run.sh does it all).
"""
import argparse
import multiprocessing
import socket
import struct
import sys
import threading
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWSETELEM = 12
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_DATA_VALUE = 1
NLA_F_NESTED = 0x8000


def attrs(data):
    """(type, payload) of each netlink attribute in data."""
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        yield kind & ~NLA_F_NESTED & 0x3FFF, data[off + 4 : off + length]
        off += (length + 3) & ~3


def new_element_keys(payload):
    """IPv4 keys of the elements in one NFT_MSG_NEWSETELEM message (after nfgenmsg)."""
    keys = []
    for kind, value in attrs(payload[4:]):
        if kind != NFTA_SET_ELEM_LIST_ELEMENTS:
            continue
        for k2, elem in attrs(value):
            if k2 != NFTA_LIST_ELEM:
                continue
            for k3, key in attrs(elem):
                if k3 != NFTA_SET_ELEM_KEY:
                    continue
                for k4, data in attrs(key):
                    if k4 == NFTA_DATA_VALUE and len(data) == 4:
                        keys.append(socket.inet_ntoa(data))
    return keys


class ElementWatcher(threading.Thread):
    """Timestamps every new IPv4 set element the kernel announces."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        self.seen = {}  # address -> monotonic ns of the first notification
        self.cv = threading.Condition()

    def run(self):
        while True:
            data = self.sock.recv(1 << 20)
            now = time.monotonic_ns()
            off = 0
            while off + 16 <= len(data):
                length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    break
                if kind >> 8 == NFNL_SUBSYS_NFTABLES and kind & 0xFF == NFT_MSG_NEWSETELEM:
                    keys = new_element_keys(data[off + 16 : off + length])
                    if keys:
                        with self.cv:
                            for k in keys:
                                self.seen.setdefault(k, now)
                            self.cv.notify_all()
                off += (length + 3) & ~3

    def wait(self, address, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while address not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)
            return self.seen[address]


def stamp():
    return time.strftime("%b %e %H:%M:%S", time.localtime())


def background(port, rate, stop, counter):
    """Other mail log lines at `rate` lines/s over their own connection. Runs in a process of its
    own, so formatting them never holds the measuring threads' interpreter lock."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    n = 0
    next_t = time.monotonic()
    while not stop.is_set():
        st = stamp()
        chunk = []
        for _ in range(per_tick):
            n += 1
            a, b = (n >> 8) & 255, n & 255
            kind = n % 4
            if kind == 0:
                chunk.append(f"<22>{st} mx1 postfix/smtpd[{n % 30000}]: connect from "
                             f"mail{n}.example.net[192.0.{a}.{b}]\n")
            elif kind == 1:
                chunk.append(f"<22>{st} mx1 postfix/smtpd[{n % 30000}]: {n:010X}: "
                             f"client=mail{n}.example.net[192.0.{a}.{b}]\n")
            elif kind == 2:
                chunk.append(f"<22>{st} mx1 postfix/qmgr[812]: {n:010X}: from=<news@example.net>, "
                             f"size=4242, nrcpt=1 (queue active)\n")
            else:
                chunk.append(f"<22>{st} mx1 dovecot: imap-login: Login: user=<u{n % 500}@example.org>"
                             f", method=PLAIN, rip=192.0.{a}.{b}, lip=192.0.2.1, mpid={n % 60000}, "
                             f"TLS, session=<abc{n}>\n")
        s.sendall("".join(chunk).encode())
        with counter.get_lock():
            counter.value += per_tick
        next_t += tick
        delay = next_t - time.monotonic()
        if delay > 0:
            stop.wait(delay)
    s.close()


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=5514)
    ap.add_argument("--bans", type=int, default=300)
    ap.add_argument("--background-rate", type=int, default=5000, help="other lines per second")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one ban")
    args = ap.parse_args()

    # The watcher thread must get the interpreter as soon as its recv() returns.
    sys.setswitchinterval(0.0001)
    watcher = ElementWatcher()
    watcher.start()
    stop = multiprocessing.Event()
    counter = multiprocessing.Value("q", 0)
    bg = multiprocessing.Process(target=background,
                                 args=(args.port, args.background_rate, stop, counter), daemon=True)
    bg.start()

    attack = socket.create_connection(("127.0.0.1", args.port))
    attack.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latencies_ms = []
    missing = 0
    started = time.monotonic()
    for i in range(args.bans):
        # 198.18.0.0/15 is the benchmarking range; one /24 each, so no aggregation applies.
        addr = f"198.{18 + (i >> 8)}.{i & 255}.7"
        st = stamp()
        line = (f"<22>{st} mx1 postfix/submission/smtpd[4101]: warning: unknown[{addr}]: "
                f"SASL LOGIN authentication failed: UGFzc3dvcmQ6\n").encode()
        attack.sendall(line * 19)
        # Let the 19 be read on their own, so the 20th is the one that triggers (the wait is
        # for the daemon to have counted them, not a timing assumption).
        time.sleep(0.002)
        # Stamped before the write: the line cannot be processed earlier, so a descheduled
        # measurer can only make a latency look longer, never shorter.
        t0 = time.monotonic_ns()
        attack.sendall(line)
        t1 = watcher.wait(addr, args.timeout)
        if t1 is None:
            missing += 1
            continue
        latencies_ms.append((t1 - t0) / 1e6)
    elapsed = time.monotonic() - started
    stop.set()
    bg.join()
    attack.close()

    lat = sorted(latencies_ms)
    third = len(latencies_ms) // 3
    if third > 0:
        # Does it grow with the size of the set (interval sets: nft reads the elements back)?
        first = sorted(latencies_ms[:third])
        last = sorted(latencies_ms[-third:])
        print(f"p50 of the first {third} bans {percentile(first, 50):.2f} ms, "
              f"of the last {third} {percentile(last, 50):.2f} ms")
    print(f"bans measured: {len(lat)} of {args.bans} (missing {missing}) in {elapsed:.1f} s, "
          f"background load {counter.value / elapsed:.0f} lines/s")
    if lat:
        print(f"line -> nft element latency ms: p50 {percentile(lat, 50):.2f}  "
              f"p90 {percentile(lat, 90):.2f}  p99 {percentile(lat, 99):.2f}  "
              f"max {lat[-1]:.2f}  min {lat[0]:.2f}")
    return 0 if missing == 0 and len(lat) >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
