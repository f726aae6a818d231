#!/usr/bin/env python3
"""Writes a realistic mail server log (RFC 3164, as /var/log/mail.log) and its ground truth.

The log mixes the traffic of a small self-hosted mail server over one day -- Postfix postscreen,
smtpd, submission, cleanup, qmgr, smtp and lmtp; Dovecot imap-login, pop3-login, auth and lmtp;
Roundcube; OpenDKIM; Amavis -- over IPv4 and IPv6, with attacks embedded in it:

  smtp_bruteforce      SASL failures on smtpd/submission from one address, fast
  imap_bruteforce      Dovecot imap/pop3 login failures from one address, fast
  webmail_bruteforce   Roundcube login failures for one account from one address
  slow_bruteforce      one SASL failure every 5-10 minutes for 12+ hours (under fail2ban's radar)
  compromised_account  on the last day, a real account logs in from a new address and sends
                       hundreds of messages to outside domains it never wrote to within an hour
                       (many bounce); the days before give playbooks a baseline to learn
  dkim_spoofing        messages claiming our own domain with failing DKIM and DMARC, from many
                       addresses

and benign look-alikes that must NOT be acted on (users who mistype their password twice, a
newsletter account that sends a lot but steadily, a partner domain whose DKIM signatures fail now
and then but never 10 times in a row).

OpenDKIM logs as with `LogResults yes` (opendkim.c mlfi_eom: "QID: signature=B domain=D
selector=S result=\"...\"" per signature, then "DKIM verification successful" or "bad signature
data"), OpenDMARC 1.4 its verdict ("QID: <From: domain> pass|fail|none"): the formats of
rules.d/parsers/opendkim.toml and opendmarc.toml, seen from the real milters by
tests/integration/sender_auth_milters_real_test.cpp. --local-traffic adds two more benign actors
(tests/integration/first_day_corpus_test.cpp): webmail users submitting through 127.0.0.1, and
the server's own reports delivered to it from its own address; without it the output for a seed
is what it always was.

The log covers --days days (default 8, ending 2026-11-23 00:00 UTC). The ground truth JSON lists
every attack with its key (client_ip, user, sasl_user or dkim_domain) and the benign keys. Output
is deterministic for a given --seed. 1,000,000 lines take about 5 s.

  bench/generate_maillog.py --lines 1000000 --seed 1 --out mail.log --truth truth.json
"""

import argparse
import calendar
import json
import random
import sys
import time

HOST = "mx1"
OUR_DOMAINS = ["example.org", "example.net", "mail-lab.example"]
OUR_V4 = "192.0.2.25"
OUR_V6 = "2001:db8:25::25"
START = 0  # set in main(): UTC midnight, --days before 2026-11-23
SPAN = 86400
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
         "xavier", "yolanda", "zoe", "info", "sales", "support", "office", "billing", "hr"]
EXTERNAL_DOMAINS = ["gmail.example", "outlook.example", "web.example", "mailbox.example",
                    "corp-%d.example", "shop-%d.example", "news-%d.example", "uni-%d.example"]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.events = []  # (time_float, seq, program_with_pid, message)
        self.seq = 0
        self.qid_counter = self.r.randrange(1 << 36)
        self.used_ips = set()
        # Legitimate populations.
        self.users = []
        for d in OUR_DOMAINS:
            for f in FIRST:
                self.users.append(f"{f}@{d}")
        self.user_home = {u: self.public_ip(v6=self.r.random() < 0.25) for u in self.users}
        self.mtas = [(self.mta_name(i), self.public_ip(v6=self.r.random() < 0.2))
                     for i in range(2500)]
        self.spam_ips = [self.public_ip(v6=self.r.random() < 0.1) for _ in range(4000)]
        self.pids = {p: self.r.randrange(1000, 60000) for p in
                     ["postscreen", "smtpd", "submission", "cleanup", "qmgr", "smtp", "lmtp",
                      "opendkim", "amavis", "dovecot", "roundcube", "anvil", "bounce"]}
        # Not drawn from self.r: the stream, and so every other line of a seed, stays as it was.
        self.pids["opendmarc"] = self.pids["opendkim"] + 1
        self.seed = seed

    # --- helpers -----------------------------------------------------------------------------
    def public_ip(self, v6=False):
        r = self.r
        while True:
            if v6:
                ip = "2a%02x:%x:%x:%x::%x" % (r.randrange(1, 16), r.randrange(1, 0xffff),
                                              r.randrange(0, 0xffff), r.randrange(0, 0xffff),
                                              r.randrange(1, 0xffff))
            else:
                a = r.choice([5, 23, 31, 37, 45, 46, 62, 77, 78, 80, 81, 82, 83, 85, 87, 88, 89,
                              91, 93, 94, 95, 103, 109, 113, 116, 122, 124, 139, 141, 151, 176,
                              178, 185, 188, 193, 194, 195, 197, 200, 201, 209, 212, 213, 217])
                ip = "%d.%d.%d.%d" % (a, r.randrange(256), r.randrange(256), r.randrange(1, 255))
            if ip not in self.used_ips:
                self.used_ips.add(ip)
                return ip

    def mta_name(self, i):
        d = self.r.choice(EXTERNAL_DOMAINS)
        if "%d" in d:
            d = d % self.r.randrange(1000)
        return f"mail{i % 7}.{d}" if self.r.random() < 0.8 else "unknown"

    def ext_addr(self):
        d = self.r.choice(EXTERNAL_DOMAINS)
        if "%d" in d:
            d = d % self.r.randrange(1000)
        return f"{self.r.choice(FIRST)}.{self.r.randrange(100)}@{d}"

    def qid(self):
        self.qid_counter = (self.qid_counter + self.r.randrange(1, 5000)) % (1 << 40)
        return "%010X" % self.qid_counter

    def sess(self):
        return "".join(self.r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                       for _ in range(16))

    def emit(self, t, program, msg):
        self.seq += 1
        self.events.append((t, self.seq, program, msg))

    def pid(self, name):
        # Postfix's per-connection daemons are recycled often: their pid drifts.
        if name in ("postscreen", "smtpd", "submission", "cleanup", "smtp", "lmtp", "bounce") \
                and self.r.random() < 0.01:
            self.pids[name] = self.r.randrange(1000, 60000)
        return self.pids[name]

    # --- benign traffic ----------------------------------------------------------------------
    def inbound_message(self, t, name=None, ip=None, sender=None, rcpt=None, dkim=True):
        r = self.r
        if name is None:
            name, ip = r.choice(self.mtas)
        port = r.randrange(1024, 65535)
        sender = sender or self.ext_addr()
        rcpt = rcpt or r.choice(self.users)
        q = self.qid()
        ps, sm = self.pid("postscreen"), self.pid("smtpd")
        lip = OUR_V6 if ":" in ip else OUR_V4
        self.emit(t, f"postfix/postscreen[{ps}]", f"CONNECT from [{ip}]:{port} to [{lip}]:25")
        self.emit(t + 0.01, f"postfix/postscreen[{ps}]", f"PASS OLD [{ip}]:{port}")
        self.emit(t + 0.02, f"postfix/smtpd[{sm}]", f"connect from {name}[{ip}]")
        self.emit(t + 0.3, f"postfix/smtpd[{sm}]", f"{q}: client={name}[{ip}]")
        mid = f"{r.randrange(1 << 48):012x}@{sender.split('@')[1]}"
        self.emit(t + 0.4, f"postfix/cleanup[{self.pid('cleanup')}]", f"{q}: message-id=<{mid}>")
        sdom = sender.split("@")[1]
        if dkim:
            self.emit(t + 0.45, f"opendkim[{self.pid('opendkim')}]",
                      f"{q}: {name} [{ip}] not internal")
            self.emit(t + 0.455, f"opendkim[{self.pid('opendkim')}]",
                      f"{q}: signature={q[2:10]} domain={sdom} selector=mail "
                      f'result="no signature error"')
            self.emit(t + 0.46, f"opendkim[{self.pid('opendkim')}]",
                      f"{q}: DKIM verification successful")
        self.emit(t + 0.47, f"opendmarc[{self.pids['opendmarc']}]",
                  f"{q}: {sdom} {'pass' if dkim else 'none'}")
        size = r.randrange(1500, 400000)
        self.emit(t + 0.5, f"postfix/qmgr[{self.pid('qmgr')}]",
                  f"{q}: from=<{sender}>, size={size}, nrcpt=1 (queue active)")
        self.emit(t + 0.51, f"postfix/smtpd[{sm}]",
                  f"disconnect from {name}[{ip}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
        q2 = self.qid()
        hits = "%.3f" % r.uniform(-3, 4)
        aid = self.pids["amavis"]
        self.emit(t + 1.2, f"amavis[{aid}]",
                  f"({aid}-{r.randrange(1, 99):02d}) Passed CLEAN {{RelayedInbound}}, [{ip}]:{port} "
                  f"[{ip}] <{sender}> -> <{rcpt}>, Queue-ID: {q}, Message-ID: <{mid}>, "
                  f"mail_id: {self.sess()[:12]}, Hits: {hits}, size: {size}, queued_as: {q2}, "
                  f"{r.randrange(200, 3000)} ms")
        self.emit(t + 1.25, f"postfix/qmgr[{self.pid('qmgr')}]", f"{q}: removed")
        self.emit(t + 1.3, f"postfix/qmgr[{self.pid('qmgr')}]",
                  f"{q2}: from=<{sender}>, size={size + 900}, nrcpt=1 (queue active)")
        self.emit(t + 1.4, f"dovecot[{self.pid('dovecot')}]",
                  f"lmtp({rcpt})<{r.randrange(1000, 60000)}><{self.sess()}>: msgid=<{mid}>: "
                  f"saved mail to INBOX")
        self.emit(t + 1.41, f"postfix/lmtp[{self.pid('lmtp')}]",
                  f"{q2}: to=<{rcpt}>, relay={HOST}.{OUR_DOMAINS[0]}[private/dovecot-lmtp], "
                  f"delay=0.15, delays=0.01/0.01/0.01/0.12, dsn=2.0.0, status=sent "
                  f"(250 2.0.0 <{rcpt}> {self.sess()[:12]} Saved)")
        self.emit(t + 1.42, f"postfix/qmgr[{self.pid('qmgr')}]", f"{q2}: removed")

    def rejected_client(self, t):
        r = self.r
        ip = r.choice(self.spam_ips)
        port = r.randrange(1024, 65535)
        ps = self.pid("postscreen")
        lip = OUR_V6 if ":" in ip else OUR_V4
        self.emit(t, f"postfix/postscreen[{ps}]", f"CONNECT from [{ip}]:{port} to [{lip}]:25")
        k = r.random()
        if k < 0.4:
            self.emit(t + 0.1, f"postfix/postscreen[{ps}]",
                      f"DNSBL rank {r.randrange(3, 9)} for [{ip}]:{port}")
            self.emit(t + 5.2, f"postfix/postscreen[{ps}]",
                      f"NOQUEUE: reject: RCPT from [{ip}]:{port}: 550 5.7.1 Service unavailable; "
                      f"client [{ip}] blocked using zen.spamhaus.org; from=<{self.ext_addr()}>, "
                      f"to=<{r.choice(self.users)}>, proto=ESMTP, helo=<{r.choice(['localhost', 'User', ip])}>")
            self.emit(t + 5.3, f"postfix/postscreen[{ps}]", f"DISCONNECT [{ip}]:{port}")
        elif k < 0.6:
            self.emit(t + 0.1, f"postfix/postscreen[{ps}]",
                      f"PREGREET {r.randrange(11, 40)} after 0.{r.randrange(10, 99)} from "
                      f"[{ip}]:{port}: EHLO {r.choice(['User', 'localhost', 'ylmf-pc'])}\\r\\n")
            self.emit(t + 0.2, f"postfix/postscreen[{ps}]", f"DISCONNECT [{ip}]:{port}")
        else:
            sm = self.pid("smtpd")
            self.emit(t + 0.01, f"postfix/postscreen[{ps}]", f"PASS NEW [{ip}]:{port}")
            self.emit(t + 0.02, f"postfix/smtpd[{sm}]", f"connect from unknown[{ip}]")
            rcpt = r.choice(self.users) if r.random() < 0.5 else f"nobody{r.randrange(999)}@{OUR_DOMAINS[0]}"
            if rcpt.startswith("nobody"):
                self.emit(t + 0.5, f"postfix/smtpd[{sm}]",
                          f"NOQUEUE: reject: RCPT from unknown[{ip}]: 550 5.1.1 <{rcpt}>: Recipient "
                          f"address rejected: User unknown in virtual mailbox table; "
                          f"from=<{self.ext_addr()}> to=<{rcpt}> proto=ESMTP helo=<{r.choice(['localhost', 'User'])}>")
            else:
                self.emit(t + 0.5, f"postfix/smtpd[{sm}]",
                          f"NOQUEUE: reject: RCPT from unknown[{ip}]: 450 4.7.1 Client host rejected: "
                          f"cannot find your hostname, [{ip}]; from=<{self.ext_addr()}> "
                          f"to=<{rcpt}> proto=ESMTP helo=<{r.choice(['localhost', 'User'])}>")
            self.emit(t + 0.6, f"postfix/smtpd[{sm}]",
                      f"disconnect from unknown[{ip}] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4")

    def imap_login(self, t, user=None, ip=None):
        r = self.r
        user = user or r.choice(self.users)
        ip = ip or self.user_home[user]
        svc = "imap" if r.random() < 0.85 else "pop3"
        s = self.sess()
        lip = OUR_V6 if ":" in ip else OUR_V4
        mp = r.randrange(1000, 60000)
        self.emit(t, f"dovecot[{self.pid('dovecot')}]",
                  f"{svc}-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip={lip}, "
                  f"mpid={mp}, TLS, session=<{s}>")
        self.emit(t + r.uniform(5, 900), f"dovecot[{self.pid('dovecot')}]",
                  f"{svc}({user})<{mp}><{s}>: Disconnected: Logged out in={r.randrange(50, 9000)} "
                  f"out={r.randrange(500, 900000)} deleted=0 expunged=0 trashed=0 hdr_count=0 "
                  f"hdr_bytes=0 body_count=0 body_bytes=0")

    def imap_fail(self, t, user, ip, svc="imap", attempts=1):
        s = self.sess()
        lip = OUR_V6 if ":" in ip else OUR_V4
        dv = self.pid("dovecot")
        self.emit(t, f"dovecot[{dv}]",
                  f"auth-worker({self.r.randrange(1000, 60000)}): sql({user},{ip},<{s}>): "
                  f"Password mismatch")
        self.emit(t + 2.0, f"dovecot[{dv}]",
                  f"{svc}-login: Disconnected: Connection closed (auth failed, {attempts} attempts "
                  f"in {2 + attempts * 2} secs): user=<{user}>, method=PLAIN, rip={ip}, lip={lip}, "
                  f"TLS, session=<{s}>")

    def submission(self, t, user=None, ip=None, rcpt=None, status="sent"):
        r = self.r
        user = user or r.choice(self.users)
        ip = ip or self.user_home[user]
        name = "unknown"
        sm = self.pid("submission")
        q = self.qid()
        rcpt = rcpt or self.ext_addr()
        self.emit(t, f"postfix/submission/smtpd[{sm}]", f"connect from {name}[{ip}]")
        self.emit(t + 0.4, f"postfix/submission/smtpd[{sm}]",
                  f"{q}: client={name}[{ip}], sasl_method=PLAIN, sasl_username={user}")
        mid = f"{r.randrange(1 << 48):012x}@{user.split('@')[1]}"
        self.emit(t + 0.5, f"postfix/cleanup[{self.pid('cleanup')}]", f"{q}: message-id=<{mid}>")
        self.emit(t + 0.55, f"opendkim[{self.pid('opendkim')}]",
                  f"{q}: DKIM-Signature field added (s=mail, d={user.split('@')[1]})")
        size = r.randrange(900, 90000)
        self.emit(t + 0.6, f"postfix/qmgr[{self.pid('qmgr')}]",
                  f"{q}: from=<{user}>, size={size}, nrcpt=1 (queue active)")
        self.emit(t + 0.65, f"postfix/submission/smtpd[{sm}]",
                  f"disconnect from {name}[{ip}] ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 "
                  f"quit=1 commands=8")
        dom = rcpt.split("@")[1]
        rip = self.r.choice(self.mtas)[1]
        if status == "sent":
            self.emit(t + 1.5, f"postfix/smtp[{self.pid('smtp')}]",
                      f"{q}: to=<{rcpt}>, relay=mx.{dom}[{rip}]:25, delay=1.1, "
                      f"delays=0.1/0.01/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 OK {self.sess()[:10]})")
        elif status == "bounced":
            self.emit(t + 1.5, f"postfix/smtp[{self.pid('smtp')}]",
                      f"{q}: to=<{rcpt}>, relay=mx.{dom}[{rip}]:25, delay=1.2, "
                      f"delays=0.1/0.01/0.5/0.6, dsn=5.1.1, status=bounced (host mx.{dom}[{rip}] "
                      f"said: 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown (in "
                      f"reply to RCPT TO command))")
            self.emit(t + 1.6, f"postfix/bounce[{self.pid('bounce')}]",
                      f"{q}: sender non-delivery notification: {self.qid()}")
        else:
            self.emit(t + 1.5, f"postfix/smtp[{self.pid('smtp')}]",
                      f"{q}: to=<{rcpt}>, relay=mx.{dom}[{rip}]:25, delay=31, "
                      f"delays=0.1/0.01/30/0.9, dsn=4.7.0, status=deferred (host mx.{dom}[{rip}] "
                      f"said: 421 4.7.0 Try again later, closing connection. (in reply to MAIL FROM command))")
        self.emit(t + 1.7, f"postfix/qmgr[{self.pid('qmgr')}]", f"{q}: removed")

    def smtp_auth_fail(self, t, ip, service="submission", mech="LOGIN", name="unknown"):
        prog = "postfix/submission/smtpd" if service == "submission" else "postfix/smtpd"
        pid = self.pid("submission" if service == "submission" else "smtpd")
        self.emit(t, f"{prog}[{pid}]", f"connect from {name}[{ip}]")
        reason = "UGFzc3dvcmQ6" if mech == "LOGIN" else "authentication failure"
        self.emit(t + 1.5, f"{prog}[{pid}]",
                  f"warning: {name}[{ip}]: SASL {mech} authentication failed: {reason}")
        self.emit(t + 1.6, f"{prog}[{pid}]",
                  f"disconnect from {name}[{ip}] ehlo=1 auth=0/1 quit=1 commands=2/3")

    def roundcube_login(self, t, user, ip, ok):
        s = self.sess()[:26].lower().replace("+", "a").replace("/", "b")
        if ok:
            self.emit(t, "roundcube", f"<{s[:8]}> Successful login for {user} (ID: "
                      f"{self.r.randrange(1, 500)}) from {ip} in session {s}")
        else:
            self.emit(t, "roundcube", f"<{s[:8]}> IMAP Error: Login failed for {user} against "
                      f"localhost from {ip}. AUTHENTICATE PLAIN: Authentication failed. in "
                      f"/usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 "
                      f"(POST /?_task=login&_action=login)")

    # --- scenarios -----------------------------------------------------------------------------
    def attacks(self, truth):
        r = self.r

        def add(scenario, key_kind, key, events, t0, t1, **extra):
            d = {"scenario": scenario, "key_kind": key_kind, "key": key, "events": events,
                 "first_seen": iso(t0), "last_seen": iso(t1)}
            d.update(extra)
            truth["attacks"].append(d)

        # Fast SMTP AUTH brute force: 4 IPv4 + 2 IPv6, 120-300 tries each, 2-8 s apart.
        for i in range(6):
            ip = self.public_ip(v6=i >= 4)
            n = r.randrange(120, 300)
            t0 = START + r.uniform(3600, SPAN - 7200)
            t = t0
            svc = "submission" if i % 2 == 0 else "smtpd"
            for _ in range(n):
                self.smtp_auth_fail(t, ip, service=svc, mech=r.choice(["LOGIN", "PLAIN"]))
                t += r.uniform(2, 8)
            add("smtp_bruteforce", "client_ip", ip, n, t0, t, service=svc)

        # Dovecot brute force: 3 IPv4 + 1 IPv6, dictionary of user names.
        for i in range(4):
            ip = self.public_ip(v6=i == 3)
            n = r.randrange(100, 200)
            t0 = START + r.uniform(3600, SPAN - 7200)
            t = t0
            svc = "imap" if i % 2 == 0 else "pop3"
            for _ in range(n):
                user = r.choice(["admin", "info", "test", "webmaster", "postmaster"]) + "@" + OUR_DOMAINS[0]
                self.imap_fail(t, user, ip, svc=svc)
                t += r.uniform(3, 10)
            add("imap_bruteforce", "client_ip", ip, n, t0, t, service=svc)

        # Webmail brute force: 2 accounts, each from one address.
        for i in range(2):
            ip = self.public_ip(v6=i == 1)
            user = self.users[r.randrange(len(self.users))]
            n = r.randrange(40, 80)
            t0 = START + r.uniform(3600, SPAN - 7200)
            t = t0
            for _ in range(n):
                self.roundcube_login(t, user, ip, ok=False)
                t += r.uniform(5, 20)
            add("webmail_bruteforce", "user", user, n, t0, t, service="webmail", client_ip=ip)

        # Slow brute force: one SASL failure every 5-10 minutes for 12+ hours.
        for i in range(3):
            ip = self.public_ip(v6=i == 2)
            t0 = START + r.uniform(600, 3600 * 6)
            t = t0
            n = 0
            while t < t0 + 12.5 * 3600 and t < START + SPAN - 60:
                self.smtp_auth_fail(t, ip, service="submission", mech="LOGIN")
                t += r.uniform(300, 600)
                n += 1
            add("slow_bruteforce", "client_ip", ip, n, t0, t, service="submission")

        # Compromised accounts: a real user logs in from a new address (after a few failures from
        # it) and sends 300-500 messages to outside recipients within an hour, many bouncing.
        for i in range(2):
            user = self.users[r.randrange(len(self.users))]
            while user.startswith(("info", "sales", "support")):
                user = self.users[r.randrange(len(self.users))]
            ip = self.public_ip(v6=i == 1)
            t0 = START + SPAN - 86400 + r.uniform(3600 * 8, 86400 - 3 * 3600)
            for k in range(3):
                self.imap_fail(t0 - 600 + k * 40, user, ip)
            self.imap_login(t0 - 400, user=user, ip=ip)
            n = r.randrange(300, 500)
            t = t0
            for _ in range(n):
                st = r.choices(["sent", "bounced", "deferred"], [0.5, 0.35, 0.15])[0]
                self.submission(t, user=user, ip=ip, status=st)
                t += r.uniform(3, 9)
            add("compromised_account", "sasl_user", user, n, t0, t, client_ip=ip)

        # DKIM spoofing of our own domain: 80 messages "from" it, failing DKIM, 40 addresses.
        dom = OUR_DOMAINS[1]
        t0 = START + r.uniform(3600, SPAN - 4 * 3600)
        t = t0
        ips = [self.public_ip() for _ in range(40)]
        for k in range(80):
            ip = ips[k % len(ips)]
            q = self.qid()
            sm = self.pid("smtpd")
            self.emit(t, f"postfix/smtpd[{sm}]", f"connect from unknown[{ip}]")
            self.emit(t + 0.3, f"postfix/smtpd[{sm}]", f"{q}: client=unknown[{ip}]")
            self.emit(t + 0.49, f"opendkim[{self.pid('opendkim')}]",
                      f"{q}: signature={q[2:10]} domain={dom} selector=mail "
                      f'result="signature verification failed"')
            self.emit(t + 0.5, f"opendkim[{self.pid('opendkim')}]",
                      f"{q}: s=mail d={dom} SSL error:1C800064:Provider routines::bad decrypt")
            self.emit(t + 0.51, f"opendkim[{self.pid('opendkim')}]",
                      f"{q}: bad signature data")
            self.emit(t + 0.52, f"opendmarc[{self.pids['opendmarc']}]", f"{q}: {dom} fail")
            self.emit(t + 0.6, f"postfix/qmgr[{self.pid('qmgr')}]",
                      f"{q}: from=<ceo@{dom}>, size={r.randrange(2000, 9000)}, nrcpt=1 (queue active)")
            self.emit(t + 0.7, f"postfix/smtpd[{sm}]",
                      f"disconnect from unknown[{ip}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
            self.emit(t + 0.8, f"postfix/qmgr[{self.pid('qmgr')}]", f"{q}: removed")
            t += r.uniform(20, 120)
        add("dkim_spoofing", "dkim_domain", dom, 80, t0, t)

    def benign_lookalikes(self, truth):
        r = self.r
        # Users who mistype their password once or twice, then log in.
        for k in range(40):
            user = r.choice(self.users)
            ip = self.user_home[user]
            t = START + r.uniform(0, SPAN - 600)
            for j in range(r.randrange(1, 3)):
                if k % 2:
                    self.imap_fail(t + j * 20, user, ip)
                else:
                    self.smtp_auth_fail(t + j * 20, ip, service="submission", mech="PLAIN")
            self.imap_login(t + 90, user=user, ip=ip)
            if not any(b["key"] == ip for b in truth["benign"]):
                truth["benign"].append({"key_kind": "client_ip", "key": ip, "why": "password typo"})
        # A newsletter account: 300 messages a day, steady, all delivered.
        user = f"newsletter@{OUR_DOMAINS[0]}"
        ip = self.public_ip()
        n = 300 * SPAN // 86400
        for k in range(n):
            self.submission(START + k * (SPAN / n) + r.uniform(0, 30), user=user, ip=ip)
        truth["benign"].append({"key_kind": "sasl_user", "key": user, "why": "steady newsletter"})
        truth["benign"].append({"key_kind": "client_ip", "key": ip, "why": "newsletter sender"})

    def flaky_partner(self, truth):
        """A partner domain's mail all day whose DKIM signature fails about one time in four
        (a broken relay on their side), never more than 3 times in a row, each message passing
        DMARC by SPF. Its own random stream and queue ids: the rest of a seed's log is unchanged."""
        fr = random.Random(self.seed * 1000003 + 22)
        dom, name = "flaky-partner.example", "mx.flaky-partner.example"
        while True:
            ip = "%d.%d.%d.%d" % (fr.choice([62, 91, 151, 185]), fr.randrange(256),
                                  fr.randrange(256), fr.randrange(1, 255))
            if ip not in self.used_ips:
                break
        n = 120 * SPAN // 86400
        qc = fr.randrange(1 << 36)
        run = 0
        for k in range(n):
            t = START + k * (SPAN / n) + fr.uniform(0, 60)
            qc = (qc + fr.randrange(1, 5000)) % (1 << 40)
            q = "%010X" % (qc ^ 0x5A5A5A5A5A)
            fail = run < 3 and fr.random() < 0.25
            run = run + 1 if fail else 0
            sm = 50000 + fr.randrange(5000)
            self.emit(t, f"postfix/smtpd[{sm}]", f"connect from {name}[{ip}]")
            self.emit(t + 0.3, f"postfix/smtpd[{sm}]", f"{q}: client={name}[{ip}]")
            self.emit(t + 0.45, f"opendkim[{self.pids['opendkim']}]",
                      f"{q}: signature={q[2:10]} domain={dom} selector=s2024 result="
                      + ('"signature verification failed"' if fail else '"no signature error"'))
            self.emit(t + 0.46, f"opendkim[{self.pids['opendkim']}]",
                      f"{q}: " + ("bad signature data" if fail else "DKIM verification successful"))
            self.emit(t + 0.47, f"opendmarc[{self.pids['opendmarc']}]", f"{q}: {dom} pass")
            self.emit(t + 0.5, f"postfix/qmgr[{self.pids['qmgr']}]",
                      f"{q}: from=<orders@{dom}>, size={fr.randrange(2000, 30000)}, nrcpt=1 "
                      f"(queue active)")
            self.emit(t + 0.6, f"postfix/smtpd[{sm}]",
                      f"disconnect from {name}[{ip}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
            self.emit(t + 0.8, f"postfix/qmgr[{self.pids['qmgr']}]", f"{q}: removed")
        truth["benign"].append({"key_kind": "dkim_domain", "key": dom,
                                "why": "DKIM fails now and then, never 10 in a row"})
        truth["benign"].append({"key_kind": "client_ip", "key": ip, "why": "flaky partner's MX"})

    def botnet(self, truth, attackers, share, target_lines):
        """Abuse from `attackers` distinct addresses until `share` of about `target_lines` lines
        are abuse events: SMTP AUTH failures (one to three per connection, as a client retrying
        on one session), Dovecot login failures, Roundcube login failures and postscreen
        pregreet rejects. A few addresses try often, in bursts a few seconds apart; most try a
        few times (Zipf-like). Its own random stream, addresses and session ids, so the rest of
        a seed's log is the same with or without it. Returns the number of abuse event lines."""
        br = random.Random(self.seed * 1000003 + 35)
        ips = []
        seen = set(self.used_ips)
        while len(ips) < attackers:
            v6 = br.random() < 0.1
            if v6:
                ip = "2a%02x:%x:%x:%x::%x" % (br.randrange(1, 16), br.randrange(1, 0xffff),
                                              br.randrange(0, 0xffff), br.randrange(0, 0xffff),
                                              br.randrange(1, 0xffff))
            else:
                ip = "%d.%d.%d.%d" % (br.choice([14, 36, 42, 58, 60, 61, 101, 106, 110, 111,
                                                  112, 115, 117, 119, 120, 121, 125, 171, 175,
                                                  180, 182, 183, 186, 190, 191, 202, 218, 220,
                                                  221, 222]),
                                      br.randrange(256), br.randrange(256), br.randrange(1, 255))
            if ip not in seen:
                seen.add(ip)
                ips.append(ip)
        self.used_ips.update(ips)
        victims = ["admin", "info", "test", "webmaster", "postmaster", "sales", "office",
                   "support", "user", "contact"]
        want = int(share * target_lines)
        # Each address's burst starts at its own time; its next attempt follows a few seconds
        # after its last one.
        clock = [START + br.uniform(0, SPAN - 86400 // 4) for _ in ips]
        tries = [0] * attackers
        abuse = 0
        n = 0

        def sess():
            return "".join(br.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                           for _ in range(16))

        while abuse < want:
            # Every address at least once, then a skewed draw: low indices try far more often.
            i = n if n < attackers else int(attackers * br.random() ** 2)
            n += 1
            ip = ips[i]
            t = clock[i]
            clock[i] = t + br.uniform(2, 30)
            lip = OUR_V6 if ":" in ip else OUR_V4
            k = br.random()
            if k < 0.5:
                sub = br.random() < 0.6
                prog = "postfix/submission/smtpd" if sub else "postfix/smtpd"
                pid = self.pids["submission" if sub else "smtpd"]
                fails = br.choice([1, 1, 2, 3])
                self.emit(t, f"{prog}[{pid}]", f"connect from unknown[{ip}]")
                for j in range(fails):
                    mech = br.choice(["LOGIN", "PLAIN"])
                    reason = "UGFzc3dvcmQ6" if mech == "LOGIN" else "authentication failure"
                    self.emit(t + 1.5 + j, f"{prog}[{pid}]",
                              f"warning: unknown[{ip}]: SASL {mech} authentication failed: {reason}")
                self.emit(t + 1.6 + fails, f"{prog}[{pid}]",
                          f"disconnect from unknown[{ip}] ehlo=1 auth=0/{fails} quit=1 "
                          f"commands=2/{2 + fails}")
                abuse += fails
                tries[i] += fails
            elif k < 0.8:
                user = br.choice(victims) + "@" + br.choice(OUR_DOMAINS)
                svc = "imap" if br.random() < 0.7 else "pop3"
                s = sess()
                dv = self.pids["dovecot"]
                self.emit(t, f"dovecot[{dv}]", f"auth-worker({br.randrange(1000, 60000)}): "
                          f"sql({user},{ip},<{s}>): Password mismatch")
                self.emit(t + 2.0, f"dovecot[{dv}]",
                          f"{svc}-login: Disconnected: Connection closed (auth failed, 1 attempts "
                          f"in 4 secs): user=<{user}>, method=PLAIN, rip={ip}, lip={lip}, "
                          f"TLS, session=<{s}>")
                abuse += 2
                tries[i] += 1
            elif k < 0.9:
                user = br.choice(victims) + "@" + br.choice(OUR_DOMAINS)
                s = sess()[:26].lower().replace("+", "a").replace("/", "b")
                self.emit(t, "roundcube", f"<{s[:8]}> IMAP Error: Login failed for {user} against "
                          f"localhost from {ip}. AUTHENTICATE PLAIN: Authentication failed. in "
                          f"/usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 "
                          f"(POST /?_task=login&_action=login)")
                abuse += 1
                tries[i] += 1
            else:
                port = br.randrange(1024, 65535)
                ps = self.pids["postscreen"]
                self.emit(t, f"postfix/postscreen[{ps}]", f"CONNECT from [{ip}]:{port} to [{lip}]:25")
                self.emit(t + 0.1, f"postfix/postscreen[{ps}]",
                          f"PREGREET {br.randrange(11, 40)} after 0.{br.randrange(10, 99)} from "
                          f"[{ip}]:{port}: EHLO {br.choice(['User', 'localhost', 'ylmf-pc'])}\\r\\n")
                self.emit(t + 0.2, f"postfix/postscreen[{ps}]", f"DISCONNECT [{ip}]:{port}")
                abuse += 1
                tries[i] += 1
        truth["botnet"] = {"addresses": attackers, "abuse_event_lines": abuse,
                           "tries": {ip: tries[i] for i, ip in enumerate(ips)}}
        return abuse

    def local_traffic(self, truth):
        r = self.r
        # Webmail (Roundcube) submits over 127.0.0.1: many users, one address, all day.
        for k in range(400):
            user = r.choice(self.users)
            self.submission(START + r.uniform(0, SPAN - 60), user=user, ip="127.0.0.1")
        truth["benign"].append({"key_kind": "client_ip", "key": "127.0.0.1",
                                "why": "webmail submitting through localhost"})
        # The server's own reports (cron, logwatch) delivered to postmaster from its own address.
        for k in range(48):
            self.inbound_message(START + k * (SPAN / 48) + r.uniform(0, 60), name=HOST,
                                 ip=OUR_V4, sender=f"root@{HOST}.{OUR_DOMAINS[0]}",
                                 rcpt=f"postmaster@{OUR_DOMAINS[0]}")
        truth["benign"].append({"key_kind": "client_ip", "key": OUR_V4, "why": "the server itself"})


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000, help="approximate line count")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=int, default=8, help="days the log covers (ends 2026-11-23)")
    ap.add_argument("--out", required=True, help="log file to write")
    ap.add_argument("--truth", required=True, help="ground truth JSON to write")
    ap.add_argument("--local-traffic", action="store_true",
                    help="add webmail submissions from 127.0.0.1 and the server's own reports")
    ap.add_argument("--attackers", type=int, default=0,
                    help="add abuse from this many distinct addresses (default 0: none)")
    ap.add_argument("--attack-share", type=float, default=0.35,
                    help="with --attackers: at least this share of the lines are their abuse "
                         "events (default 0.35)")
    args = ap.parse_args()

    global START, SPAN
    SPAN = args.days * 86400
    START = calendar.timegm((2026, 11, 23, 0, 0, 0)) - SPAN
    g = Gen(args.seed)
    truth = {"seed": args.seed, "host": HOST, "start": iso(START), "end": iso(START + SPAN),
             "attacks": [], "benign": []}
    g.attacks(truth)
    g.benign_lookalikes(truth)
    if args.local_traffic:
        g.local_traffic(truth)
    if args.attackers:
        g.botnet(truth, args.attackers, args.attack_share, args.lines)

    # Background traffic until the line budget is used. Average lines per session kind:
    # inbound 15, rejected ~3.5, imap 2, submission 9, roundcube 1.
    r = g.r
    kinds = ["inbound", "rejected", "imap", "submission", "roundcube"]
    weights = [0.33, 0.30, 0.27, 0.06, 0.04]
    while len(g.events) < args.lines:
        t = START + r.random() * SPAN
        k = r.choices(kinds, weights)[0]
        if k == "inbound":
            g.inbound_message(t)
        elif k == "rejected":
            g.rejected_client(t)
        elif k == "imap":
            g.imap_login(t)
        elif k == "submission":
            g.submission(t, status="sent" if r.random() < 0.97 else "deferred")
        else:
            u = r.choice(g.users)
            g.roundcube_login(t, u, g.user_home[u], ok=True)

    g.flaky_partner(truth)

    g.events.sort()
    stamp_cache = {}
    out = open(args.out, "w", buffering=1 << 20)
    lines = 0
    end = START + SPAN
    for t, _, prog, msg in g.events:
        if t >= end:
            continue  # sessions that started just before midnight
        s = int(t)
        st = stamp_cache.get(s)
        if st is None:
            tm = time.gmtime(s)
            st = "%s %2d %02d:%02d:%02d %s " % (MONTHS[tm.tm_mon - 1], tm.tm_mday, tm.tm_hour,
                                               tm.tm_min, tm.tm_sec, HOST)
            stamp_cache[s] = st
        out.write(f"{st}{prog}: {msg}\n")
        lines += 1
    out.close()
    truth["lines"] = lines
    with open(args.truth, "w") as f:
        json.dump(truth, f, indent=2)
        f.write("\n")
    print(f"wrote {lines} lines to {args.out}, {len(truth['attacks'])} attacks and "
          f"{len(truth['benign'])} benign keys to {args.truth}", file=sys.stderr)


if __name__ == "__main__":
    main()
