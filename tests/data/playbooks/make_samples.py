#!/usr/bin/env python3
"""Writes the annotated sample logs for the shipped playbooks (tests/data/playbooks/<name>.log).

Lines starting with '#' are annotations for people; the replay test skips them. Everything else
is a syslog line in the formats Postfix, Dovecot, Roundcube, OpenDKIM and Rspamd write to
/var/log/mail.log (OpenDMARC, policyd-spf, Amavis and clamd too; RFC 3164, year-less, read as UTC in November 2026). The expected incidents are
asserted in tests/unit/shipped_playbooks_test.cpp and stated in each file's header.
Run it from anywhere: python3 tests/data/playbooks/make_samples.py
"""
import datetime as dt
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DAY = dt.datetime(2026, 11, 23)


def ts(t):
    return t.strftime("%b %d %H:%M:%S").replace(" 0", "  ", 1) if t.day < 10 else t.strftime("%b %d %H:%M:%S")


class Log:
    def __init__(self, name, header):
        self.name = name
        self.header = header
        self.lines = []  # (time, order, text)
        self.n = 0

    def add(self, t, prog, msg):
        self.n += 1
        self.lines.append((t, self.n, f"{ts(t)} mx1 {prog}: {msg}"))

    def note(self, t, text):
        self.n += 1
        self.lines.append((t, self.n, "# " + text))

    def write(self):
        self.lines.sort()
        with open(os.path.join(HERE, self.name + ".log"), "w") as f:
            for h in self.header.strip().splitlines():
                f.write("# " + h + "\n" if h else "#\n")
            for _, _, text in self.lines:
                f.write(text + "\n")


def at(h, m=0, s=0, day=DAY):
    return day.replace(hour=h, minute=m, second=s)


def sec(n):
    return dt.timedelta(seconds=n)


def sasl_fail(log, t, ip, service="smtpd", pid=4101, method="LOGIN"):
    prog = "postfix/smtpd" if service == "smtpd" else f"postfix/{service}/smtpd"
    host = f"unknown[{ip}]"
    reason = "UGFzc3dvcmQ6" if method == "LOGIN" else "authentication failure"
    log.add(t, f"{prog}[{pid}]", f"warning: {host}: SASL {method} authentication failed: {reason}")


def relay_traffic(log, start, n, spacing=45):
    for i in range(n):
        t = start + sec(i * spacing)
        ip = f"198.51.100.{10 + i % 5}"
        q = f"ABCDEF{i:04X}"
        log.add(t, "postfix/smtpd[4606]", f"connect from mail-relay.example.org[{ip}]")
        log.add(t + sec(1), "postfix/smtpd[4606]", f"{q}: client=mail-relay.example.org[{ip}]")
        log.add(t + sec(2), "postfix/qmgr[1200]", f"{q}: from=<news@example.org>, size=2345, nrcpt=1 (queue active)")
        log.add(t + sec(3), "postfix/smtpd[4606]", f"disconnect from mail-relay.example.org[{ip}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")


def dovecot_fail(log, t, ip, user, service="imap", attempts=1):
    plural = "attempt" if attempts == 1 else "attempts"
    log.add(t, "dovecot[812]", f"{service}-login: Disconnected (auth failed, {attempts} {plural} in 4 secs): user=<{user}>, method=PLAIN, rip={ip}, lip=192.0.2.1, TLS, session=<Xk{abs(hash((t, ip))) % 10**8:08d}>")


def dovecot_login(log, t, ip, user):
    log.add(t, "dovecot[812]", f"imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=192.0.2.1, mpid=20{t.minute:02d}, TLS, session=<Lg{t.minute:02d}{t.second:02d}>")


def postfix_sasl():
    log = Log("postfix-sasl", """
postfix-sasl sample: SMTP AUTH failures on smtpd, submission and smtps (2026-11-23, UTC).
Expected incidents (all playbooks of rules.d/):
  postfix-sasl 203.0.113.7       20 failures on submission in 9m30s
  postfix-sasl 2001:db8:dead::7  25 failures on smtps in 4 minutes (one incident: cooldown)
  postfix-sasl 192.0.2.51        20 failures, first and 20th exactly 10:00 apart (window is closed)
No incident:
  198.51.100.23  19 failures in 4m30s, one below the threshold
  192.0.2.50     20 failures, first and 20th 10:01 apart: never 20 inside 10 minutes
  192.0.2.99     30 "Connection lost to authentication server": a server fault
  127.0.0.1      40 failures from the webmail on localhost: never acted on
  198.51.100.10-14 ordinary relay traffic
""")
    for i in range(20):
        sasl_fail(log, at(9, 0) + sec(30 * i), "203.0.113.7", "submission")
    for i in range(19):
        sasl_fail(log, at(9, 1) + sec(15 * i), "198.51.100.23", "smtpd", 4202, "PLAIN")
    for i in range(25):
        sasl_fail(log, at(9, 20) + sec(10 * i), "2001:db8:dead::7", "smtps", 4303)
    for i in range(19):
        sasl_fail(log, at(10, 0) + sec(30 * i), "192.0.2.50", "smtpd", 4404)
    sasl_fail(log, at(10, 10, 1), "192.0.2.50", "smtpd", 4404)
    for i in range(19):
        sasl_fail(log, at(10, 30) + sec(30 * i), "192.0.2.51", "smtpd", 4405)
    sasl_fail(log, at(10, 40, 0), "192.0.2.51", "smtpd", 4405)
    for i in range(30):
        log.add(at(11, 0) + sec(5 * i), "postfix/smtpd[4505]", "warning: unknown[192.0.2.99]: SASL LOGIN authentication failed: Connection lost to authentication server")
    for i in range(40):
        sasl_fail(log, at(11, 30) + sec(3 * i), "127.0.0.1", "submission", 4606)
    relay_traffic(log, at(9, 0, 7), 40)
    log.write()


def postfix_rbl():
    log = Log("postfix-rbl", """
postfix-rbl sample: clients rejected because a DNS blocklist lists them, and coming back.
Expected incidents:
  postfix-rbl 192.0.2.10      smtpd reject (zen.spamhaus.org) for three recipients: one incident
  postfix-rbl 198.51.100.30   postscreen DNSBL rank and reject, then back 20 minutes later
No incident:
  198.51.100.31   one postscreen connection (DNSBL rank + reject): postscreen handled it
  198.51.100.32   two postscreen connections two hours apart
  ordinary relay traffic from 198.51.100.10-14.
""")
    for i in range(3):
        log.add(at(12, 0) + sec(20 * i), "postfix/smtpd[5101]", f"NOQUEUE: reject: RCPT from unknown[192.0.2.10]: 554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.10; from=<spam@bulk.example> to=<alice@example.org> proto=ESMTP helo=<bulk.example>")

    def postscreen(t, ip, port, pid):
        log.add(t, f"postfix/postscreen[{pid}]", f"CONNECT from [{ip}]:{port} to [192.0.2.1]:25")
        log.add(t + sec(6), f"postfix/postscreen[{pid}]", f"DNSBL rank 4 for [{ip}]:{port}")
        log.add(t + sec(7), f"postfix/postscreen[{pid}]", f"NOQUEUE: reject: RCPT from [{ip}]:{port}: 550 5.7.1 Service unavailable; client [{ip}] blocked using zen.spamhaus.org; from=<spam@bulk.example>, to=<alice@example.org>, proto=ESMTP, helo=<User>")
        log.add(t + sec(8), f"postfix/postscreen[{pid}]", f"DISCONNECT [{ip}]:{port}")

    postscreen(at(12, 5), "198.51.100.30", 51234, 5102)
    postscreen(at(12, 25), "198.51.100.30", 51240, 5102)
    postscreen(at(12, 6), "198.51.100.31", 40001, 5103)
    postscreen(at(12, 10), "198.51.100.32", 40100, 5104)
    postscreen(at(14, 10), "198.51.100.32", 40200, 5104)
    relay_traffic(log, at(12, 0, 30), 10)
    log.write()


def postfix_rejects():
    log = Log("postfix", """
postfix sample: relay attempts, unknown recipients, HELO and sender rejects.
Expected incidents:
  postfix 203.0.113.20   5 relay attempts in 2 minutes
  postfix 203.0.113.22   2 HELO rejects and 3 sender rejects in 8 minutes (kinds add up)
No incident:
  203.0.113.21    4 unknown recipients: below 5
  198.51.100.40   5 unknown recipients, one every 15 minutes (a sender with a stale list)
""")
    for i in range(5):
        log.add(at(13, 0) + sec(30 * i), "postfix/smtpd[6101]", f"NOQUEUE: reject: RCPT from unknown[203.0.113.20]: 554 5.7.1 <victim{i}@elsewhere.example>: Relay access denied; from=<x@spam.example> to=<victim{i}@elsewhere.example> proto=ESMTP helo=<spam.example>")
    for i in range(4):
        log.add(at(13, 10) + sec(40 * i), "postfix/smtpd[6102]", f"NOQUEUE: reject: RCPT from unknown[203.0.113.21]: 550 5.1.1 <guess{i}@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<x@spam.example> to=<guess{i}@example.org> proto=ESMTP helo=<spam.example>")
    for i in range(2):
        log.add(at(13, 20) + sec(60 * i), "postfix/smtpd[6103]", "NOQUEUE: reject: RCPT from unknown[203.0.113.22]: 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname; from=<a@b.example> to=<alice@example.org> proto=ESMTP helo=<localhost>")
    for i in range(3):
        log.add(at(13, 24) + sec(120 * i), "postfix/smtpd[6103]", "NOQUEUE: reject: RCPT from unknown[203.0.113.22]: 553 5.7.1 <root@example.org>: Sender address rejected: not logged in; from=<root@example.org> to=<alice@example.org> proto=ESMTP helo=<mx.example.net>")
    for i in range(5):
        log.add(at(14, 0) + sec(900 * i), "postfix/smtpd[6104]", f"NOQUEUE: reject: RCPT from mail.partner.example[198.51.100.40]: 550 5.1.1 <old{i}@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<list@partner.example> to=<old{i}@example.org> proto=ESMTP helo=<mail.partner.example>")
    log.write()


def dovecot_auth():
    log = Log("dovecot-auth", """
dovecot-auth sample: IMAP and POP3 login failures.
Expected incidents:
  dovecot-auth 203.0.113.30   4 lines of "auth failed, 3 attempts": 12 attempts in 3 minutes
No incident:
  198.51.100.31   9 single POP3 failures in 9 minutes
  127.0.0.1       20 IMAP failures from the webmail on localhost
""")
    for i in range(4):
        dovecot_fail(log, at(15, 0) + sec(60 * i), "203.0.113.30", "admin@example.org", "imap", 3)
    for i in range(9):
        dovecot_fail(log, at(15, 10) + sec(60 * i), "198.51.100.31", "carol@example.org", "pop3")
    for i in range(20):
        dovecot_fail(log, at(15, 30) + sec(10 * i), "127.0.0.1", "dave@example.org", "imap")
    log.write()


def sieve_auth():
    log = Log("sieve-auth", """
sieve-auth sample: ManageSieve login failures.
Expected incidents:
  sieve-auth 203.0.113.40   5 failures in 4 minutes
No incident:
  198.51.100.41   4 failures
""")
    for i in range(5):
        dovecot_fail(log, at(16, 0) + sec(60 * i), "203.0.113.40", "alice@example.org", "managesieve")
    for i in range(4):
        dovecot_fail(log, at(16, 10) + sec(60 * i), "198.51.100.41", "bob@example.org", "managesieve")
    log.write()


def roundcube_login():
    log = Log("roundcube-login", """
roundcube-login sample: failed webmail logins, counted per account, never banning an address.
Roundcube talks to Dovecot from 127.0.0.1; the browser's address is in X-Real-IP.
Expected incidents:
  roundcube-login alice@example.org   10 failures from 10 different addresses in 5 minutes
                                      (a mail to postmaster, no ban)
No incident:
  bob@example.org   9 failures
  127.0.0.1         Dovecot's own lines for these logins (rip=127.0.0.1)
""")
    for i in range(10):
        t = at(17, 0) + sec(30 * i)
        log.add(t, "roundcube[900]", f"<a1b2c3d4> IMAP Error: Login failed for alice@example.org against localhost from 127.0.0.1(X-Real-IP: 203.0.113.{100 + i}). AUTHENTICATE PLAIN: Authentication failed. in /usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)")
        dovecot_fail(log, t, "127.0.0.1", "alice@example.org", "imap")
    for i in range(9):
        t = at(17, 20) + sec(30 * i)
        log.add(t, "roundcube[900]", f"<e5f6a7b8> IMAP Error: Login failed for bob@example.org against localhost from 127.0.0.1(X-Real-IP: 198.51.100.50). AUTHENTICATE PLAIN: Authentication failed. in /usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)")
        dovecot_fail(log, t, "127.0.0.1", "bob@example.org", "imap")
    log.write()


def roundcube_bruteforce():
    log = Log("roundcube-bruteforce", """
roundcube-bruteforce / roundcube-enumeration sample: failed webmail logins counted per client
address, banned from the web ports (ports = "web"). Roundcube sits behind nginx on 127.0.0.1
(a trusted proxy by default), which sets X-Real-IP and appends to X-Forwarded-For; Roundcube logs
with log_logins = true, so each attempt is an IMAP Error line and a "Failed login" line (one event).
Expected incidents:
  roundcube-bruteforce 203.0.113.77   42 failures in 7 minutes rotating between alice and bob:
                                      one ban (ports web) at the 20th; the other 22 fall in its
                                      cooldown
  roundcube-login alice@example.org   (per account: a mail, no ban)
  roundcube-login bob@example.org
  roundcube-bruteforce 198.51.100.66  a client talking to Roundcube directly (not a trusted proxy)
                                      with a forged "X-Forwarded-For: 192.0.2.99": its own address
                                      is banned, never 192.0.2.99
  roundcube-login carol@example.org
  roundcube-enumeration 198.51.100.90 one failure each for 12 accounts in 44 minutes (spraying)
No incident:
  203.0.113.200   an office behind NAT: 9 failures of 6 accounts over an hour
  127.0.0.1       Roundcube's own IMAP connections in Dovecot's log (rip=127.0.0.1)
""")
    def rc_fail(t, session, user, peer, headers):
        log.add(t, "roundcube[900]", f"<{session}> IMAP Error: Login failed for {user} against localhost from {peer}{headers}. AUTHENTICATE PLAIN: Authentication failed. in /usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)")
        log.add(t, "roundcube[900]", f"<{session}> Failed login for {user} from {peer}{headers} in session {session} (error: 0)")
        dovecot_fail(log, t, "127.0.0.1", user, "imap")
    for i in range(42):
        t = at(18, 0) + sec(10 * i)
        user = "alice@example.org" if i % 2 == 0 else "bob@example.org"
        rc_fail(t, "9f8e7d6c", user, "127.0.0.1", " (X-Real-IP: 203.0.113.77,X-Forwarded-For: 203.0.113.77)")
    for i in range(25):
        t = at(18, 30) + sec(15 * i)
        rc_fail(t, "0a1b2c3d", "carol@example.org", "198.51.100.66", " (X-Forwarded-For: 192.0.2.99)")
    for i in range(12):
        t = at(19, 0) + sec(240 * i)
        rc_fail(t, f"5e6f70{i:02d}", f"user{i}@example.org", "127.0.0.1", " (X-Real-IP: 198.51.100.90,X-Forwarded-For: 198.51.100.90)")
    office = ["dan", "erin", "frank", "dan", "gina", "hank", "erin", "ivan", "dan"]
    for i, name in enumerate(office):
        t = at(20, 0) + sec(400 * i)
        rc_fail(t, f"77aa88{i:02d}", f"{name}@example.org", "127.0.0.1", " (X-Real-IP: 203.0.113.200,X-Forwarded-For: 203.0.113.200)")
    log.write()


def slow_bruteforce():
    log = Log("slow-bruteforce", """
slow-bruteforce sample: password guessing paced under the 10-minute playbooks.
Expected incidents:
  slow-bruteforce 203.0.113.60   one SMTP AUTH failure every 10 minutes: the 30th (4h50m after
                                 the first) fires
No incident:
  198.51.100.61   one failure every 15 minutes for 8 hours: at most 25 in any 6 hours
""")
    for i in range(31):
        sasl_fail(log, at(1, 0) + sec(600 * i), "203.0.113.60", "submission")
    for i in range(33):
        sasl_fail(log, at(1, 3) + sec(900 * i), "198.51.100.61", "smtpd", 4202)
    log.write()


def user_enumeration():
    log = Log("user-enumeration", """
user-enumeration sample: one address trying many user names over hours (IMAP).
Expected incidents:
  user-enumeration 203.0.113.70   10 different user names, one every 20 minutes
No incident:
  198.51.100.71   the same 3 users (a family's stale passwords), 20 failures over 6 hours
""")
    for i in range(10):
        dovecot_fail(log, at(2, 0) + sec(1200 * i), "203.0.113.70", f"user{i}@example.org")
    for i in range(20):
        dovecot_fail(log, at(2, 5) + sec(1080 * i), "198.51.100.71", ["ann@example.org", "ben@example.org", "cat@example.org"][i % 3])
    log.write()


def user_enumeration_net():
    log = Log("user-enumeration-net", """
user-enumeration-net sample: a botnet's /24 spreading user names over its addresses.
Expected incidents:
  user-enumeration-net 203.0.113.0/24   25 user names from 25 addresses, each trying one
No incident:
  198.51.100.0/24   20 user names from 20 addresses
""")
    for i in range(25):
        dovecot_fail(log, at(3, 0) + sec(300 * i), f"203.0.113.{i + 1}", f"name{i}@example.org")
    for i in range(20):
        dovecot_fail(log, at(3, 2) + sec(300 * i), f"198.51.100.{i + 100}", f"who{i}@example.org")
    log.write()


def ipv6_net_bruteforce():
    log = Log("ipv6-net-bruteforce", """
ipv6-net-bruteforce sample: one account guessed at from addresses rotating inside one IPv6 /64.
Expected incidents:
  ipv6-net-bruteforce 2001:db8:99:6400::/64   a new address for every try, one every 2 minutes;
                                               fires at the 10th address
No incident:
  2001:db8:77:1::/64   a household: 3 devices with a stale password, 5 failures each
  198.51.100.0/24      IPv4 rotating over 12 addresses (user-enumeration-net's job, one user)
""")
    for i in range(14):
        sasl_fail(log, at(21, 0) + sec(120 * i), f"2001:db8:99:6400:{i * 7919 % 65536:x}::{i + 1:x}",
                  service="submission")
    for d in range(3):
        for k in range(5):
            sasl_fail(log, at(21, 1) + sec(600 * k + 7 * d), f"2001:db8:77:1::{d + 10:x}",
                      service="submission")
    for i in range(12):
        sasl_fail(log, at(21, 2) + sec(120 * i), f"198.51.100.{i + 1}", service="submission")
    log.write()


def outbound_anomaly():
    log = Log("outbound-anomaly", """
outbound-anomaly sample: accounts sending to recipient domains they never used before.
Nov 14: the baseline is learned from ordinary mail; nothing is judged during the 7-day warm-up.
Nov 23: judged.
Expected incidents:
  outbound-anomaly bob@example.org   webmail (127.0.0.1) submissions to 120 new domains within
                                     40 minutes: fires at the 101st new-domain delivery; sending
                                     suspended, queue held, password change required, admin mailed
No incident:
  alice@example.org   a newsletter: 300 deliveries to the 5 domains she has used before
  carol@example.org   60 deliveries to new domains: below the threshold
""")
    day1 = DAY.replace(day=14)
    q = [0]

    def message(t, user, client, rcpts):
        q[0] += 1
        qid = f"4Q{q[0]:06X}"
        log.add(t, "postfix/submission/smtpd[7101]", f"{qid}: client={client}, sasl_method=PLAIN, sasl_username={user}")
        log.add(t + sec(1), "postfix/qmgr[1200]", f"{qid}: from=<{user}>, size=4100, nrcpt={len(rcpts)} (queue active)")
        for j, r in enumerate(rcpts):
            log.add(t + sec(2), "postfix/smtp[7201]", f"{qid}: to=<{r}>, relay=mx.{r.split('@')[1]}[192.0.2.{200 + j % 50}]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)")
        log.add(t + sec(3), "postfix/qmgr[1200]", f"{qid}: removed")

    alice_domains = [f"customer{i}.example" for i in range(5)]
    for i, d in enumerate(alice_domains):
        message(day1.replace(hour=9, minute=i), "alice@example.org", "office.example.org[198.51.100.80]", [f"info@{d}"])
    message(day1.replace(hour=10), "bob@example.org", "localhost[127.0.0.1]", ["mum@family.example", "friend@pals.example"])
    message(day1.replace(hour=11), "carol@example.org", "localhost[127.0.0.1]", ["team@work.example"])
    for i in range(30):
        message(at(8, 0) + sec(20 * i), "alice@example.org", "office.example.org[198.51.100.80]",
                [f"reader{i * 10 + k}@{alice_domains[k % 5]}" for k in range(10)])
    for i in range(12):
        message(at(9, 0) + sec(200 * i), "bob@example.org", "localhost[127.0.0.1]",
                [f"x{i * 10 + k}@target{i * 10 + k}.example" for k in range(10)])
    for i in range(6):
        message(at(10, 0) + sec(300 * i), "carol@example.org", "localhost[127.0.0.1]",
                [f"y{i * 10 + k}@prospect{i * 10 + k}.example" for k in range(10)])
    log.write()


def dkim_failures():
    log = Log("dkim-failures", """
dkim-failures sample: per-signature DKIM verdicts (OpenDKIM with LogResults, Rspamd, Amavis).
Expected incidents:
  dkim-failures forged.example.net   10 failures in a row
No incident:
  news.example.com    9 failures, a pass, 9 failures: the pass resets the run
  flaky.example       30 messages, failures interleaved with passes (never more than 3 in a
                      row), the passes seen by OpenDKIM, Rspamd and Amavis in turn
  nolog.example       12 failures from an OpenDKIM without LogResults: its verdicts name no
                      domain on a pass, so none is counted (no alert on passes it cannot see)
""")
    n = [0]

    def qid():
        n[0] += 1
        return f"5D{n[0]:06X}"

    def opendkim(t, domain, ok):
        q = qid()
        result = "no signature error" if ok else "signature verification failed"
        if not ok:
            log.add(t, "opendkim[610]", f"{q}: s=sel1 d={domain} SSL error:04091068:rsa routines:int_rsa_verify:bad signature")
        log.add(t, "opendkim[610]", f'{q}: signature=Ab{n[0]}x domain={domain} selector=sel1 result="{result}"')
        log.add(t, "opendkim[610]", f"{q}: " + ("DKIM verification successful" if ok else "bad signature data"))

    def opendkim_without_logresults(t, domain):
        q = qid()
        log.add(t, "opendkim[610]", f"{q}: s=sel1 d={domain} SSL error:04091068:rsa routines:int_rsa_verify:bad signature")
        log.add(t, "opendkim[610]", f"{q}: bad signature data")

    def rspamd_pass(t, domain):
        q = qid()
        log.add(t, "rspamd[700]", f"<{n[0]:06x}>; task; rspamd_task_write_log: id: <m{n[0]}@{domain}>, qid: <{q}>, ip: 198.51.100.30, from: <list@{domain}>, (default: F (no action): [-0.30/15.00] [R_DKIM_ALLOW(-0.20){{{domain}:s=sel1;}},R_SPF_ALLOW(-0.20){{+ip4:198.51.100.30;}}]), len: 2000, time: 20ms, dt: 10ms, dns req: 4, digest: <ab>, rcpts: <carol@example.org>")

    def amavis_pass(t, domain):
        q = qid()
        log.add(t, "amavis[800]", f"({n[0]}-01) Passed CLEAN {{RelayedInbound}}, [198.51.100.30]:40000 [198.51.100.30] <list@{domain}> -> <carol@example.org>, Queue-ID: {q}, Message-ID: <m{n[0]}@{domain}>, mail_id: x{n[0]}, Hits: -0.5, size: 2000, queued_as: 6E{n[0]:06X}, dkim_id=@{domain},{domain}, 30 ms")

    t = at(18, 0)
    for i in range(9):
        opendkim(t + sec(60 * i), "news.example.com", False)
    opendkim(t + sec(60 * 9), "news.example.com", True)
    for i in range(9):
        opendkim(t + sec(60 * (10 + i)), "news.example.com", False)
    for i in range(10):
        opendkim(t + sec(30 + 60 * i), "forged.example.net", False)
    passes = [lambda tt: opendkim(tt, "flaky.example", True), lambda tt: rspamd_pass(tt, "flaky.example"),
              lambda tt: amavis_pass(tt, "flaky.example")]
    for i in range(30):
        tt = t + sec(15 + 40 * i)
        if i % 4 == 3:
            passes[(i // 4) % 3](tt)
        else:
            opendkim(tt, "flaky.example", False)
    for i in range(12):
        opendkim_without_logresults(t + sec(45 + 60 * i), "nolog.example")
    log.write()


def sender_auth():
    log = Log("sender-auth", """
sender-auth sample: policyd-spf and OpenDMARC on an MX whose own domain is example.org
(the replay sets [rules] local_domains = ["example.org"]).
Expected incidents:
  spoofing-own-domain  203.0.113.66     4 messages From: example.org failing DMARC (fires at the 3rd)
  dmarc-own-domain     example.org      the forger's 4 and a CRM's 2 DMARC failures (fires at the 5th)
  internal-spf-fail    bob@example.org  3 softfails from his home ISP in a day (DMARC fails too:
                                        counted by dmarc-own-domain, 1 an hour is below spoofing-own-domain)
No incident:
  a forwarder (192.0.2.90) relaying alice@example.org's signed mail: SPF fails twice, DMARC passes
  foreign.example failing DMARC 10 times from one address: not our domain
  ordinary mail: SPF and DMARC passes, SPF none for domains without a record
""")
    n = [0]

    def message(t, ip, sender, rcpt, spf, dmarc_from, dmarc):
        n[0] += 1
        q = f"7A{n[0]:06X}"
        log.add(t, "postfix/smtpd[900]", f"connect from unknown[{ip}]")
        domain = sender.split("@")[1] if "@" in sender else ""
        log.add(t, "policyd-spf[901]", f": prepend Received-SPF: {spf} (mailfrom) identity=mailfrom; client-ip={ip}; helo=h{n[0]}.example; envelope-from={sender}; receiver={rcpt.split('@')[1]} ")
        log.add(t + sec(1), "postfix/smtpd[900]", f"{q}: client=unknown[{ip}]")
        log.add(t + sec(2), "postfix/cleanup[902]", f"{q}: message-id=<m{n[0]}@{domain or 'x'}>")
        log.add(t + sec(2), "opendmarc[903]", f"{q}: {dmarc_from} {dmarc}")
        log.add(t + sec(3), "postfix/qmgr[904]", f"{q}: from=<{sender}>, size=2000, nrcpt=1 (queue active)")

    t = at(9, 0)
    for i in range(4):
        message(t + sec(600 * i), "203.0.113.66", f"ceo{i}@bulk{i}.example", "bob@example.org", "Pass", "example.org", "fail")
    for i in range(2):
        message(t + sec(3600 + 1800 * i), "198.51.100.77", "news@crm.example", "carol@example.org", "Pass", "example.org", "fail")
    for i in range(2):
        message(t + sec(300 + 900 * i), "192.0.2.90", "alice@example.org", "alice.fwd@example.org", "Fail", "example.org", "pass")
    for i in range(3):
        message(t + sec(7200 + 3600 * i), "198.18.7.7", "bob@example.org", "dave@example.net", "Softfail", "example.org", "fail")
    for i in range(10):
        message(t + sec(120 + 60 * i), "192.0.2.200", f"x{i}@foreign.example", "carol@example.org", "Fail", "foreign.example", "fail")
    for i in range(20):
        message(t + sec(30 + 200 * i), "198.51.100.20", "news@example.net", "carol@example.org", "Pass", "example.net", "pass")
        message(t + sec(40 + 200 * i), f"192.0.2.{10 + i}", f"a{i}@nospf{i}.example", "dave@example.org", "None", f"nospf{i}.example", "none")
    log.write()


def outbound_spam_scores():
    log = Log("outbound-spam-scores", """
outbound-spam-scores sample: Rspamd verdicts on authenticated submissions.
Expected incidents:
  outbound-spam-scores mallory@example.org   5 messages scoring 6 or more within 30 minutes
No incident:
  dave@example.org   4 high scores and 20 ordinary ones
""")
    n = [0]

    def verdict(t, user, score):
        n[0] += 1
        action = "add header" if score >= 6 else "no action"
        log.add(t, "rspamd[3300]", f"<a1b2c3>; task; rspamd_task_write_log: id: <m{n[0]}@example.org>, qid: <6R{n[0]:06X}>, ip: 127.0.0.1, user: {user}, from: <{user}>, (default: {'T' if score >= 6 else 'F'} ({action}): [{score:.2f}/15.00] [BAYES_SPAM(5.10){{97.0%;}},MIME_GOOD(-0.10){{text/plain;}}]), len: 2100, time: 87.1ms, dns req: 12, digest: <0123456789abcdef>, rcpts: <r{n[0]}@somewhere.example>, mime_rcpts: <r{n[0]}@somewhere.example>")

    for i in range(5):
        verdict(at(19, 0) + sec(360 * i), "mallory@example.org", 8.5 + i * 0.25)
    for i in range(24):
        verdict(at(19, 1) + sec(120 * i), "dave@example.org", 7.0 if i % 6 == 0 else 1.2)
    log.write()


def login_spread():
    log = Log("login-spread", """
login-spread sample: successful IMAP logins per account from distinct /16 networks.
Expected incidents:
  login-spread erin@example.org   logins from 4 different /16s within 40 minutes
No incident:
  frank@example.org   home (198.51.0.0/16) all day, phone network, one trip: 3 /16s in an hour
""")
    for i, ip in enumerate(["203.0.113.5", "198.18.7.9", "192.0.2.77", "100.64.3.3"]):
        dovecot_login(log, at(20, 0) + sec(600 * i), ip, "erin@example.org")
    for i in range(12):
        dovecot_login(log, at(20, 0) + sec(300 * i), f"198.51.100.{i + 1}", "frank@example.org")
    dovecot_login(log, at(20, 20), "172.16.5.5", "frank@example.org")
    dovecot_login(log, at(20, 40), "10.9.8.7", "frank@example.org")
    log.write()


def outbound_virus():
    log = Log("outbound-virus", """
outbound-virus sample: Amavis (ORIGINATING policy bank, clamd behind it) flags mail our own
authenticated users submit; the SASL user comes from smtpd's client= line of the same queue id.
Expected incidents:
  outbound-virus eve@example.org          her first infected message (mail only)
  outbound-virus-spread eve@example.org   infected mail to 10 different recipients within
                                          18 minutes: sending suspended at the 10th
  outbound-virus dave@example.org         forwards one suspicious attachment to the help desk,
                                          then resends it 3 times: one mail, no suspension
  outbound-virus frank@example.org        infected mail to 9 different recipients within an
                                          hour: one mail, below the spread threshold
No incident:
  inbound viruses from outside (no SASL user), 15 to different users from one client
  clamd's own FOUND lines (no account), and our users' clean mail
""")
    q = [0]

    def submit(t, user, rcpt, virus, ip="198.51.100.140"):
        q[0] += 1
        qid = f"5V{q[0]:06X}"
        log.add(t, "postfix/submission/smtpd[7301]", f"{qid}: client=client.example.net[{ip}], sasl_method=PLAIN, sasl_username={user}")
        log.add(t + sec(1), "postfix/cleanup[7302]", f"{qid}: message-id=<v{q[0]}@example.org>")
        log.add(t + sec(1), "postfix/qmgr[1200]", f"{qid}: from=<{user}>, size=52000, nrcpt=1 (queue active)")
        if virus:
            log.add(t + sec(2), "amavis[8100]", f"({q[0]}-01) Blocked INFECTED ({virus}) {{DiscardedOutbound,Quarantined}}, MYNETS/ORIGINATING LOCAL [{ip}]:41305 <{user}> -> <{rcpt}>, quarantine: virus-Q{q[0]}, Queue-ID: {qid}, Message-ID: <v{q[0]}@example.org>, mail_id: Q{q[0]}, Hits: -, size: 52000, 15 ms")
            log.add(t + sec(2), "clamd[8200]", f"/var/lib/amavis/tmp/amavis-20261123T1{q[0]:05d}/parts/p002: {virus} FOUND")
        else:
            log.add(t + sec(2), "amavis[8100]", f"({q[0]}-01) Passed CLEAN {{RelayedOutbound}}, ORIGINATING LOCAL [{ip}]:41305 <{user}> -> <{rcpt}>, Queue-ID: {qid}, Message-ID: <v{q[0]}@example.org>, mail_id: Q{q[0]}, Hits: -1.2, size: 52000, queued_as: 6C{q[0]:06X}, 120 ms")
        log.add(t + sec(3), "postfix/qmgr[1200]", f"{qid}: removed")

    for i in range(12):
        submit(at(21, 0) + sec(120 * i), "eve@example.org", f"contact{i}@victims{i}.example", "Win.Trojan.Emotet-9953338-0")
    submit(at(21, 5), "dave@example.org", "helpdesk@example.org", "Doc.Dropper.Agent-6418536-0")
    for i in range(3):
        submit(at(21, 10) + sec(300 * i), "dave@example.org", "helpdesk@example.org", "Doc.Dropper.Agent-6418536-0")
    for i in range(9):
        submit(at(21, 0) + sec(400 * i), "frank@example.org", f"member{i}@club.example", "Xls.Downloader.Agent-7003283-0", ip="203.0.113.150")
    for i in range(20):
        submit(at(21, 1) + sec(150 * i), "grace@example.org", f"partner{i}@customer{i}.example", None, ip="198.51.100.141")
    for i in range(15):
        q[0] += 1
        qid = f"5V{q[0]:06X}"
        t = at(21, 2) + sec(100 * i)
        log.add(t, "postfix/smtpd[7401]", f"{qid}: client=bad.example.com[192.0.2.160]")
        log.add(t + sec(2), "amavis[8100]", f"({q[0]}-01) Blocked INFECTED (Win.Trojan.Emotet-9953338-0) {{DiscardedInbound,Quarantined}}, [192.0.2.160]:52000 [192.0.2.160] <invoice@bad.example.com> -> <user{i}@example.org>, quarantine: virus-Q{q[0]}, Queue-ID: {qid}, Message-ID: <in{q[0]}@bad.example.com>, mail_id: Q{q[0]}, Hits: -, size: 48000, 14 ms")
        log.add(t + sec(3), "postfix/qmgr[1200]", f"{qid}: removed")
    log.write()


def connection_limits():
    log = Log("postfix-connection-limits", """
postfix-connection-limits sample: Postfix's anvil limits on port 25 (smtpd's warning, postscreen's
"too many connections"), one line per refused connection.
Expected incidents:
  postfix-connection-limits 203.0.113.90   a scanner reconnecting at once: 120 refusals in
                                           3 minutes; banned at the 100th
  postfix-connection-limits 203.0.113.91   postscreen's count limit: 100 refusals in under 7 minutes
No incident:
  198.51.100.120   a legitimate MTA: waves of 20 refused connections every 5 minutes for an hour
                   (it backs off; 60 in any 10 minutes)
  203.0.113.92     99 refusals in 10 minutes: one below the threshold
  198.51.100.121   "Message delivery request rate limit exceeded" 200 times: not counted
  198.51.100.140   one of our users on the submission port over the rate limit 150 times
""")
    def smtpd(t, ip, reason="Connection rate limit exceeded", prog="postfix/smtpd[7501]", n=31, svc="smtp"):
        log.add(t, prog, f"warning: {reason}: {n} from unknown[{ip}] for service {svc}")

    for i in range(120):
        smtpd(at(22, 0) + dt.timedelta(milliseconds=1500 * i), "203.0.113.90")
    for i in range(100):
        log.add(at(22, 10) + sec(4 * i + 3), "postfix/postscreen[7600]", f"NOQUEUE: reject: CONNECT from [203.0.113.91]:{40000 + i}: too many connections")
    for w in range(13):
        for k in range(20):
            smtpd(at(22, 0) + sec(300 * w + k), "198.51.100.120", reason="Connection concurrency limit exceeded", n=51)
    for i in range(99):
        smtpd(at(22, 20) + sec(6 * i), "203.0.113.92")
    for i in range(200):
        smtpd(at(22, 30) + sec(2 * i), "198.51.100.121", reason="Message delivery request rate limit exceeded")
    for i in range(150):
        smtpd(at(22, 40) + sec(2 * i), "198.51.100.140", prog="postfix/submission/smtpd[7502]", svc="submission")
    log.write()


for f in [postfix_sasl, postfix_rbl, postfix_rejects, dovecot_auth, sieve_auth, roundcube_login,
          roundcube_bruteforce, slow_bruteforce, user_enumeration, user_enumeration_net, ipv6_net_bruteforce, outbound_anomaly, dkim_failures, sender_auth,
          outbound_spam_scores, login_spread, outbound_virus, connection_limits]:
    f()
