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
import errno
import multiprocessing
import resource
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
SO_RCVBUFFORCE = 33


def attrs(data):
    """(type, payload) of each netlink attribute in data."""
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        yield kind & ~NLA_F_NESTED & 0x3FFF, data[off + 4 : off + length]
        off += (length + 3) & ~3


def new_element_values(payload):
    """The 4-byte (IPv4) keys of the elements in one NFT_MSG_NEWSETELEM message (after
    nfgenmsg), as bytes."""
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
                        keys.append(data)
    return keys


def new_element_keys(payload):
    """IPv4 keys of the elements in one NFT_MSG_NEWSETELEM message, as dotted text."""
    return [socket.inet_ntoa(k) for k in new_element_values(payload)]


def element_messages(data):
    """The payloads (after the netlink header) of the NFT_MSG_NEWSETELEM messages in data."""
    off = 0
    while off + 16 <= len(data):
        length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        if kind >> 8 == NFNL_SUBSYS_NFTABLES and kind & 0xFF == NFT_MSG_NEWSETELEM:
            yield data[off + 16 : off + length]
        off += (length + 3) & ~3


def netlink_element_socket():
    """A netlink socket subscribed to nftables' notifications, with a receive buffer large enough
    for a burst (SO_RCVBUFFORCE as root, above net.core.rmem_max)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((0, 0))
    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
    return sock


class ElementWatcher(threading.Thread):
    """Timestamps every new IPv4 set element the kernel announces."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = netlink_element_socket()
        self.seen = {}  # address -> monotonic ns of the first notification
        self.cv = threading.Condition()

    def run(self):
        while True:
            data = self.sock.recv(1 << 20)
            now = time.monotonic_ns()
            for payload in element_messages(data):
                keys = new_element_keys(payload)
                if keys:
                    with self.cv:
                        for k in keys:
                            self.seen.setdefault(k, now)
                        self.cv.notify_all()

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


# --- the flood (--flood N): N new attackers within --flood-seconds --------------------------------
#
# Attacker i (0 <= i < N) starts at i * seconds / N and sends its 20 SASL failures evenly over
# --flood-spread seconds, so about N * spread / seconds attackers are mid-burst at any time and
# their lines interleave; the 20th is the threshold line (postfix-sasl: 20 in 10 minutes). Each
# attacker is alone in its /24 (the valve's per-prefix bucket and any aggregation never apply):
# FLOOD_FIRST_OCTET + (i >> 16) . (i >> 8) & 255 . i & 255 . 7.
#
# Three processes, so that no interpreter lock couples the clocks: the sender (one TCP
# connection, all attack lines, in chunks every FLOOD_TICK seconds), the watcher (netlink) and
# the background lines. Sender and watcher write CLOCK_MONOTONIC nanoseconds into shared arrays:
# sent_at[i] is taken just before the write of the chunk holding i's threshold line (the line
# cannot be processed earlier), seen[i] just after the recv() that returned i's element.

FLOOD_FIRST_OCTET = 60
FLOOD_THRESHOLD = 20
FLOOD_TICK = 0.005


def flood_address(i):
    return f"{FLOOD_FIRST_OCTET + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.7"


def flood_watch(n, seen, stats, ready, stop):
    """The watcher process: seen[i] = when attacker i's element was announced."""
    sock = netlink_element_socket()
    sock.settimeout(0.2)
    ready.set()
    overruns = found = messages = 0
    first = FLOOD_FIRST_OCTET
    while not stop.is_set():
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError as e:
            if e.errno == errno.ENOBUFS:  # the kernel dropped notifications: the measurer lost
                overruns += 1
                continue
            raise
        now = time.monotonic_ns()
        for payload in element_messages(data):
            messages += 1
            for key in new_element_values(payload):
                if key[3] != 7 or not first <= key[0] < first + 256:
                    continue
                i = ((key[0] - first) << 16) | (key[1] << 8) | key[2]
                if i < n and seen[i] == 0:
                    seen[i] = now
                    found += 1
    ru = resource.getrusage(resource.RUSAGE_SELF)
    stats[0] = overruns
    stats[1] = found
    stats[2] = messages
    stats[3] = int((ru.ru_utime + ru.ru_stime) * 1e9)


def flood_send(port, n, seconds, spread, sent_at, stats):
    """The sender process: the schedule above over one connection."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    addrs = [flood_address(i) for i in range(n)]
    gap = spread / (FLOOD_THRESHOLD - 1)
    next_line = [0] * FLOOD_THRESHOLD  # per line number k: the next attacker to send it
    lines = 0
    max_late = 0.0  # how far a threshold line's write fell behind its schedule
    blocked = 0.0  # time spent in sendall (the daemon's socket buffer full: back-pressure)
    start = time.monotonic()
    next_tick = start
    while next_line[FLOOD_THRESHOLD - 1] < n:
        now = time.monotonic() - start
        st = stamp()
        head = f"<22>{st} mx1 postfix/submission/smtpd[4101]: warning: unknown["
        parts = []
        thresholds = None
        for k in range(FLOOD_THRESHOLD):
            t = now - k * gap
            if t < 0:
                break
            hi = min(n, int(t * n / seconds) + 1)
            lo = next_line[k]
            if hi <= lo:
                continue
            for i in range(lo, hi):
                parts.append(head)
                parts.append(addrs[i])
                parts.append("]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n")
            lines += hi - lo
            next_line[k] = hi
            if k == FLOOD_THRESHOLD - 1:
                thresholds = (lo, hi)
        if parts:
            data = "".join(parts).encode()
            t0 = time.monotonic_ns()
            s.sendall(data)
            blocked += time.monotonic_ns() - t0
            if thresholds:
                lo, hi = thresholds
                for i in range(lo, hi):
                    sent_at[i] = t0
                late = (t0 / 1e9 - start) - ((lo * seconds / n) + spread)
                max_late = max(max_late, late)
        next_tick += FLOOD_TICK
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the schedule, not waiting for the daemon
    elapsed = time.monotonic() - start
    s.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    stats[0] = lines
    stats[1] = elapsed
    stats[2] = max_late
    stats[3] = blocked / 1e9
    stats[4] = ru.ru_utime + ru.ru_stime


def flood_main(args):
    n = args.flood
    seen = multiprocessing.RawArray("q", n)
    sent_at = multiprocessing.RawArray("q", n)
    wstats = multiprocessing.RawArray("q", 4)
    sstats = multiprocessing.RawArray("d", 5)
    ready = multiprocessing.Event()
    stop_watch = multiprocessing.Event()
    watcher = multiprocessing.Process(target=flood_watch,
                                      args=(n, seen, wstats, ready, stop_watch), daemon=True)
    watcher.start()
    if not ready.wait(10):
        print("flood: the netlink watcher did not start", file=sys.stderr)
        return 1
    stop = multiprocessing.Event()
    counter = multiprocessing.Value("q", 0)
    bg = multiprocessing.Process(target=background,
                                 args=(args.port, args.background_rate, stop, counter), daemon=True)
    bg.start()
    started = time.monotonic()
    sender = multiprocessing.Process(
        target=flood_send,
        args=(args.port, n, args.flood_seconds, args.flood_spread, sent_at, sstats), daemon=True)
    sender.start()
    sender.join()
    sent = time.monotonic()
    # The stragglers: until every element is in, or none came for --timeout seconds.
    last, last_change = -1, time.monotonic()
    while True:
        count = sum(1 for i in range(n) if seen[i])
        now = time.monotonic()
        if count == n:
            break
        if count != last:
            last, last_change = count, now
        elif now - last_change > args.timeout:
            break
        time.sleep(0.25)  # polling a count with a deadline
    done = time.monotonic()
    stop.set()
    bg.join()
    stop_watch.set()
    watcher.join()

    lat = []
    by_tenth = [[] for _ in range(10)]  # latencies by the attacker's place in the schedule
    never = early = 0
    for i in range(n):
        if seen[i] == 0 or sent_at[i] == 0:
            never += 1
            continue
        ms = (seen[i] - sent_at[i]) / 1e6
        if ms < 0:
            early += 1  # announced before its threshold line was written: a wrong measurement
        lat.append(ms)
        by_tenth[i * 10 // n].append(ms)
    lat.sort()
    within = sum(1 for v in lat if v <= 2000.0)
    print(f"flood: {n} attackers over {args.flood_seconds:.0f} s (each {FLOOD_THRESHOLD} lines over "
          f"{args.flood_spread:.1f} s), {int(sstats[0])} attack lines sent in {sstats[1]:.1f} s "
          f"({sstats[0] / max(sstats[1], 1e-9):.0f} lines/s), background "
          f"{counter.value / max(done - started, 1e-9):.0f} lines/s")
    print(f"measurer: sender {sstats[4]:.1f} s CPU, {sstats[3]:.2f} s blocked in send "
          f"(daemon back-pressure), threshold lines at most {sstats[2] * 1000:.0f} ms behind "
          f"schedule; watcher {wstats[3] / 1e9:.1f} s CPU, {wstats[2]} notifications, "
          f"{wstats[0]} receive overruns (ENOBUFS)")
    print(f"last element {done - sent:.1f} s after the last line was sent")
    for t, part in enumerate(by_tenth):
        part.sort()
        if part:
            print(f"  attackers {t * 10}-{t * 10 + 10}% of the schedule: p50 "
                  f"{percentile(part, 50):.1f} ms, p99 {percentile(part, 99):.1f} ms, max "
                  f"{part[-1]:.1f} ms")
    print(f"banned within 2 s of the threshold line: {within} of {n}; never: {never}"
          + (f"; {early} announced before their line (measurement error)" if early else ""))
    if lat:
        print(f"threshold line -> nft element ms: p50 {percentile(lat, 50):.1f}  "
              f"p90 {percentile(lat, 90):.1f}  p99 {percentile(lat, 99):.1f}  max {lat[-1]:.1f}  "
              f"min {lat[0]:.1f}")
    return 0 if never == 0 and wstats[0] == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=5514)
    ap.add_argument("--bans", type=int, default=300)
    ap.add_argument("--background-rate", type=int, default=5000, help="other lines per second")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one ban")
    ap.add_argument("--flood", type=int, default=0,
                    help="instead of --bans: this many new attackers within --flood-seconds")
    ap.add_argument("--flood-seconds", type=float, default=60.0)
    ap.add_argument("--flood-spread", type=float, default=2.0,
                    help="seconds over which each attacker sends its 20 lines")
    args = ap.parse_args()
    if args.flood > 0:
        if args.flood > 256 << 16:
            ap.error("--flood: at most 16,777,216 attackers (one /24 each)")
        return flood_main(args)

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
