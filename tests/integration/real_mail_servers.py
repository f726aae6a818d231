#!/usr/bin/env python3
"""Real Postfix and Dovecot from Debian's packages, and real clients failing to log in.

Run by real_mail_servers_test.cpp inside a network namespace the test made (lo up); this script
adds the addresses, writes private configurations under WORKDIR (dovecot -c FILE, postfix -c
DIR), starts both servers, runs the clients, waits until the servers have logged every
connection's end, stops them and prints one JSON object: the log files and, per client address,
the protocol and the attempts made (failed logins) and successes.

  real_mail_servers.py WORKDIR --auth-verbose yes|no --auth-debug yes|no --port-logging yes|no
  real_mail_servers.py WORKDIR [--syslog] --roundcube file|syslog
  real_mail_servers.py WORKDIR --policy URL --policy-header NAME:VALUE

With --policy, Dovecot asks the authentication policy server at URL (mxward serve) before every
login, fail-open, and the policy clients run instead: a dictionary attack over IMAP then the
right password, a phone retrying one stale password 200 times then the right one, and a
dictionary over SMTP AUTH through Postfix (Dovecot's SASL socket) then the right password. The
output's "policy" says which final logins were accepted.

With --roundcube, Debian's Roundcube (php -S, private ROUNDCUBE_CONFIG_DIR and SQLite file)
logs in against this Dovecot from 127.0.0.1, and HTTP clients (browsers, a proxy acting for one,
an untrusted forwarder) take the mail clients' place; "dovecot_loopback_failures" in the output
counts Dovecot's failed-login lines for Roundcube's IMAP logins.

Each scenario has its own source address, so "counted per address" is "counted per scenario".
"""
import argparse
import base64
import functools
import http.client
import http.cookiejar
import concurrent.futures
import imaplib
import json
import os
import poplib
import pwd
import re
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from postfix_master_cf import master_cf

SERVER = "192.0.2.1"
PORTS = {"imap": 143, "pop3": 110, "submission": 587, "smtp": 25, "sieve": 4190}
USER, PASSWORD = "alice@example.org", "correct horse"
# Users of this domain go through two chained passdbs (dovecot_conf).
CHAINED_DOMAIN = "chained.example"
CHAINED_USER = f"carol@{CHAINED_DOMAIN}"
LOG = os.devnull  # commands' output; main() sets WORKDIR/commands.log


def sh(*argv, check=True):
    # Output goes to a file, not a pipe: a daemon that forks keeps its inherited pipe open.
    print("+", " ".join(argv), file=sys.stderr, flush=True)
    with open(os.devnull, "rb") as null, open(LOG, "a+") as out:
        start = out.seek(0, os.SEEK_END)
        r = subprocess.run(argv, stdin=null, stdout=out, stderr=out)
        out.seek(start)
        text = out.read()
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {r.returncode}\n{text}")
    return r


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def dovecot_conf(work, args, plaintext_forbidden_ip):
    # With Roundcube, Dovecot also listens on loopback: a webmail on the mail host logs in from
    # 127.0.0.1, the address whose Dovecot failures mxward folds into Roundcube's own line.
    listen = f"{SERVER}, 127.0.0.1" if args.roundcube else SERVER
    nobody = pwd.getpwnam("nobody")
    write(f"{work}/users", f"{USER}:{{PLAIN}}{PASSWORD}::::::\nbob@example.org:{{PLAIN}}bobs secret::::::\n"
          f"{CHAINED_USER}:{{PLAIN}}carols secret::::::\n", 0o644)
    os.makedirs(f"{work}/mail", exist_ok=True)
    os.chmod(f"{work}/mail", 0o1777)
    if args.syslog:
        logging = "log_path = syslog\nsyslog_facility = mail"
    else:
        # log_timestamp carries a syslog-style host and tag, so the log_path file reads as RFC
        # 3164 ("Dec  6 12:00:00 mailhost dovecot: imap-login: Info: ..."); the service prefix
        # and level are Dovecot's own.
        logging = (f"log_path = {work}/dovecot.log\ninfo_log_path = {work}/dovecot.log\n"
                   f"debug_log_path = {work}/dovecot.log\n"
                   'log_timestamp = "%b %e %H:%M:%S mailhost dovecot: "')
    return f"""
base_dir = {work}/run
state_dir = {work}/state
instance_name = dovecot
protocols = imap pop3 submission sieve
listen = {listen}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = {args.auth_verbose}
auth_debug = {args.auth_debug}
auth_failure_delay = 0
{logging}
first_valid_uid = {nobody.pw_uid}
last_valid_uid = {nobody.pw_uid}
mail_location = maildir:{work}/mail/%u
hostname = mailhost.example
submission_relay_host = {SERVER}
submission_relay_port = 25
submission_relay_trusted = yes
# Chained passdbs for one domain: the system's users (passdb passwd, in an auth worker) first,
# then the users file (result_failure = continue, the default). With auth_verbose each passdb
# that refuses writes its own line for the same attempt ("auth-worker(N): passwd(u,ip,<session>):
# unknown user", then "passwd-file(u,ip,<session>): Password mismatch" or "unknown user"):
# verbose_passwords = no (the default) adds no " - trying the next passdb".
passdb {{
  driver = passwd
  username_filter = *@{CHAINED_DOMAIN}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {work}/users
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={work}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {PORTS['imap']}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {PORTS['pop3']}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = {PORTS['submission']}
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    port = {PORTS['sieve']}
  }}
}}
# The auth penalty (up to 15 s per failure from one address, through anvil) would make the
# run minutes long; mode 0 turns the listener, and with it the penalty, off.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
remote {plaintext_forbidden_ip} {{
  disable_plaintext_auth = yes
}}
{policy_conf(args)}
"""


def policy_conf(args):
    """Dovecot's auth policy settings as docs/policy.md ships them: fail-open."""
    if not args.policy:
        return ""
    return f"""
auth_policy_server_url = {args.policy}
auth_policy_server_api_header = {args.policy_header}
auth_policy_hash_nonce = mxward-real-servers-test-nonce
auth_policy_server_timeout_msecs = 2000
auth_policy_reject_on_fail = no
"""


def postfix_policy_conf(args):
    """check_policy_service as docs/policy.md ships it (fail-open), on the socket mxward made in
    this queue directory's private/."""
    if not args.policy:
        return ""
    check = "check_policy_service { unix:private/mxward-policy, timeout=5s, default_action=DUNNO }"
    return f"""
smtpd_client_restrictions = {check}
smtpd_data_restrictions = {check}
"""


def postfix_conf(work, args):
    cfg = f"{work}/postfix"
    os.makedirs(cfg, exist_ok=True)
    os.makedirs(f"{work}/postfix-queue", mode=0o755, exist_ok=True)  # postfix check fills it
    os.makedirs(f"{work}/postfix-data", mode=0o700, exist_ok=True)
    shutil.chown(f"{work}/postfix-data", "postfix", "postfix")
    write(f"{cfg}/main.cf", f"""
compatibility_level = 3.6
queue_directory = {work}/postfix-queue
data_directory = {work}/postfix-data
mail_owner = postfix
setgid_group = postdrop
myhostname = mailhost.example
mydestination =
alias_maps =
alias_database =
inet_interfaces = {SERVER}
inet_protocols = ipv4
{"" if args.syslog else f"maillog_file = {work}/postfix.log"}
maillog_file_prefixes = {work}
syslog_name = postfix
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {work}/run/auth-postfix
smtpd_sasl_security_options = noanonymous
smtpd_tls_security_level = none
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_client_port_logging = {args.port_logging}
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 100
smtpd_client_connection_rate_limit = 0
smtpd_client_auth_rate_limit = 0
{postfix_policy_conf(args)}
""")
    write(f"{cfg}/master.cf", master_cf(virtual_delivery=False))
    return cfg


class SyslogRelay(threading.Thread):
    """The servers' /dev/log: records each datagram as a line of WORKDIR/syslog.log and passes it
    on to `forward` (mxward's unix-dgram input), so the test reads exactly what mxward got."""

    def __init__(self, path, record, forward):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.settimeout(0.2)
        self.out = open(record, "ab", buffering=0)
        self.forward = forward
        self.done = threading.Event()

    def run(self):
        fwd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self.forward else None
        while True:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                if self.done.is_set():  # drained: nothing came for 0.2 s after the stop
                    break
                continue
            self.out.write(data.rstrip(b"\n") + b"\n")
            if fwd:
                fwd.sendto(data, self.forward)


# Runs argv in a mount namespace of its own where /dev/log is the relay's socket (the servers'
# syslog() calls then reach it; nothing outside the namespace changes).
WITH_DEV_LOG = r"""
set -e
devlog=$1; work=$2; shift 2
target=$(readlink -f /dev/log 2>/dev/null || true)
if [ -n "$target" ] && [ -S "$target" ]; then
  mount --bind "$devlog" "$target"
else
  d=$work/dev; mkdir -p "$d"; mount -t tmpfs -o mode=755 tmpfs "$d"
  for n in null zero full random urandom tty; do touch "$d/$n"; mount --bind "/dev/$n" "$d/$n"; done
  mkdir "$d/pts" "$d/shm"; ln -s /proc/self/fd "$d/fd"
  touch "$d/log"; mount --bind "$devlog" "$d/log"
  mount --rbind "$d" /dev
fi
exec "$@"
"""


def server_cmd(args, work, *argv):
    if not args.syslog:
        return argv
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", WITH_DEV_LOG, "sh",
            f"{work}/dev-log", work) + argv


def wait_for(cond, what, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def connectable(port):
    try:
        socket.create_connection((SERVER, port), timeout=1).close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- clients
class Made:
    def __init__(self):
        self.by_ip = {}
        self.connections = {"dovecot": 0, "postfix": 0}
        self.lock = threading.Lock()

    def add(self, ip, proto, failed=0, ok=0, ok_logged=None, failed_unlogged=0):
        """ok: successful logins; ok_logged: how many of them write a success line that
        mxward reads (default: all). failed_unlogged: failed attempts no line of the servers
        logs (not in `attempts`, which mxward must count)."""
        with self.lock:
            e = self.by_ip.setdefault(ip, {"protocol": proto, "attempts": 0, "successes": 0,
                                           "successes_logged": 0, "attempts_unlogged": 0})
            e["attempts"] += failed
            e["attempts_unlogged"] += failed_unlogged
            e["successes"] += ok
            e["successes_logged"] += ok if ok_logged is None else ok_logged

    def connected(self, service):
        with self.lock:
            self.connections[service] += 1


def _imap_from(ip):
    class Bound(imaplib.IMAP4):
        def _create_socket(self, timeout):
            return socket.create_connection((self.host, self.port), timeout, source_address=(ip, 0))
    return Bound(SERVER, PORTS["imap"], timeout=10)


def _pop_from(ip):
    class Bound(poplib.POP3):
        def _create_socket(self, timeout):
            return socket.create_connection((self.host, self.port), timeout, source_address=(ip, 0))
    return Bound(SERVER, PORTS["pop3"], timeout=10)


def _smtp_from(ip, port):
    return smtplib.SMTP(SERVER, port, timeout=10, source_address=(ip, 0))


def imap_login_fail(ip, user, password, made, tries=1, how="imap LOGIN"):
    c = _imap_from(ip)
    made.connected("dovecot")
    for _ in range(tries):
        try:
            c.login(user, password)
            raise SystemExit(f"imap login of {user} from {ip} succeeded")
        except imaplib.IMAP4.error:
            made.add(ip, how, failed=1)
    c.logout()


def imap_authenticate_fail(ip, user, password, made, tries=1):
    c = _imap_from(ip)
    made.connected("dovecot")
    for _ in range(tries):
        try:
            c.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
            raise SystemExit("imap AUTHENTICATE succeeded")
        except imaplib.IMAP4.error:
            made.add(ip, "imap AUTHENTICATE PLAIN", failed=1)
    c.shutdown()  # drop without LOGOUT


def pop3_userpass_fail(ip, user, password, made, tries=1):
    c = _pop_from(ip)
    made.connected("dovecot")
    for _ in range(tries):
        try:
            c.user(user)
            c.pass_(password)
            raise SystemExit("pop3 login succeeded")
        except poplib.error_proto:
            made.add(ip, "pop3 USER/PASS", failed=1)
    c.quit()


def pop3_auth_plain_fail(ip, user, password, made):
    c = _pop_from(ip)
    made.connected("dovecot")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    try:
        c._shortcmd(f"AUTH PLAIN {token}")
        raise SystemExit("pop3 AUTH succeeded")
    except poplib.error_proto:
        made.add(ip, "pop3 AUTH PLAIN", failed=1)
    c.quit()


def smtp_auth_fail(ip, port, mech, user, password, made, tries=1, service="postfix", how=None):
    c = _smtp_from(ip, port)
    made.connected(service)
    c.ehlo("client.example")
    for _ in range(tries):
        try:
            c.user, c.password = user, password
            c.auth(mech, c.auth_plain if mech == "PLAIN" else c.auth_login, initial_response_ok=True)
            raise SystemExit(f"smtp AUTH {mech} succeeded")
        except smtplib.SMTPAuthenticationError:
            made.add(ip, how or f"{'smtp' if port == 25 else 'submission'} AUTH {mech}", failed=1)
    c.quit()


def managesieve_fail(ip, user, password, made, tries=1):
    """ManageSieve (RFC 5804, Pigeonhole's managesieve-login): AUTHENTICATE "PLAIN" with an
    initial response, answered NO; the connection then LOGOUTs."""
    s = socket.create_connection((SERVER, PORTS["sieve"]), 10, source_address=(ip, 0))
    made.connected("dovecot")
    f = s.makefile("rb")

    def response():
        while True:
            line = f.readline()
            if not line:
                raise SystemExit("managesieve: connection closed")
            if line.startswith((b"OK", b"NO", b"BYE")):
                return line

    if not response().startswith(b"OK"):
        raise SystemExit("managesieve: no greeting")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    for _ in range(tries):
        s.sendall(f'AUTHENTICATE "PLAIN" "{token}"\r\n'.encode())
        if not response().startswith(b"NO"):
            raise SystemExit("managesieve AUTHENTICATE succeeded")
        made.add(ip, "managesieve AUTHENTICATE PLAIN", failed=1)
    s.sendall(b"LOGOUT\r\n")
    response()
    s.close()


def imap_chained_login(ip, made, fail_first, auth_verbose):
    """carol through the chain (passdb passwd refuses her, passwd-file accepts): a successful
    IMAP LOGIN, after one wrong password on the same connection when fail_first."""
    c = _imap_from(ip)
    made.connected("dovecot")
    how = "imap LOGIN, chained passdbs, " + ("wrong then right password" if fail_first
                                              else "success")
    if fail_first:
        try:
            c.login(CHAINED_USER, "wrong")
            raise SystemExit(f"imap login of {CHAINED_USER} with a wrong password succeeded")
        except imaplib.IMAP4.error:
            chained_failure_then_success(made, ip, how, auth_verbose)
    c.login(CHAINED_USER, "carols secret")
    c.logout()
    made.add(ip, how, ok=1)


def pop3_chained_login(ip, made, fail_first, auth_verbose):
    """The same over POP3 USER/PASS."""
    c = _pop_from(ip)
    made.connected("dovecot")
    how = "pop3 USER/PASS, chained passdbs, " + ("wrong then right password" if fail_first
                                                  else "success")
    if fail_first:
        try:
            c.user(CHAINED_USER)
            c.pass_("wrong")
            raise SystemExit(f"pop3 login of {CHAINED_USER} with a wrong password succeeded")
        except poplib.error_proto:
            chained_failure_then_success(made, ip, how, auth_verbose)
    c.user(CHAINED_USER)
    c.pass_("carols secret")
    c.quit()
    made.add(ip, how, ok=1)


def chained_failure_then_success(made, ip, how, auth_verbose):
    # A failure followed by a login on the same connection: the login process writes "Login:"
    # and no "auth failed" line, so only the passdb lines (auth_verbose) log the failure.
    if auth_verbose == "yes":
        made.add(ip, how, failed=1)
    else:
        made.add(ip, how, failed_unlogged=1)


def run_clients(ips, auth_verbose="no"):
    """Every scenario in its own thread (each has its own address): the run takes as long as the
    longest one, not their sum."""
    made = Made()

    def plaintext_forbidden():
        # Plaintext on a listener that forbids it (disable_plaintext_auth for this address).
        for _ in range(2):
            c = _imap_from(ips["imap_plaintext_forbidden"])
            made.connected("dovecot")
            try:
                c.login(USER, PASSWORD)
                raise SystemExit("plaintext LOGIN was allowed")
            except imaplib.IMAP4.error:
                made.add(ips["imap_plaintext_forbidden"], "imap LOGIN, plaintext forbidden",
                         failed=1)
            c.logout()

    def connect_drop():
        # Connect, read the banner (the server has seen the connection), drop: no attempt.
        for port, service in ((PORTS["imap"], "dovecot"), (PORTS["pop3"], "dovecot"),
                              (PORTS["smtp"], "postfix")):
            s = socket.create_connection((SERVER, port), 10,
                                         source_address=(ips["connect_drop"], 0))
            s.recv(512)
            s.close()
            made.connected(service)
        made.add(ips["connect_drop"], "connect and drop")

    def successes():
        c = _imap_from(ips["success"])
        made.connected("dovecot")
        c.login(USER, PASSWORD)
        c.logout()
        c = _pop_from(ips["success"])
        made.connected("dovecot")
        c.user(USER)
        c.pass_(PASSWORD)
        c.quit()
        c = _smtp_from(ips["success"], PORTS["smtp"])
        made.connected("postfix")
        c.ehlo("client.example")
        c.login(USER, PASSWORD)
        c.quit()
        # Dovecot's IMAP and POP3 "Login:" lines; Postfix writes no line for a SASL success.
        made.add(ips["success"], "successful logins", ok=3, ok_logged=2)

    def smtp_chained_success():
        ip = ips["smtp_chained_success"]
        c = _smtp_from(ip, PORTS["smtp"])
        made.connected("postfix")
        c.ehlo("client.example")
        c.login(CHAINED_USER, "carols secret")
        c.quit()
        # Postfix writes no line for a SASL success; its disconnect line says auth=1.
        made.add(ip, "smtp AUTH, chained passdbs, success", ok=1, ok_logged=0)

    def repeat(n, f, *a, **kw):
        return lambda: [f(*a, **kw) for _ in range(n)]

    scenarios = [
        # Wrong password and unknown user, several ways.
        repeat(3, imap_login_fail, ips["imap_login"], USER, "wrong", made),
        repeat(1, imap_authenticate_fail, ips["imap_plain_many"], "nobody@example.org", "x", made,
               tries=4),
        repeat(2, pop3_userpass_fail, ips["pop3_userpass"], USER, "wrong", made, tries=2),
        repeat(1, pop3_auth_plain_fail, ips["pop3_auth_plain"], "ghost@example.org", "x", made),
        repeat(1, smtp_auth_fail, ips["submission_login"], PORTS["submission"], "LOGIN", USER,
               "wrong", made, tries=2, service="dovecot"),
        repeat(1, smtp_auth_fail, ips["smtp_plain_many"], PORTS["smtp"], "PLAIN", USER, "wrong",
               made, tries=3),
        repeat(2, smtp_auth_fail, ips["smtp_login_unknown"], PORTS["smtp"], "LOGIN",
               "ghost@example.org", "x", made),
        repeat(1, managesieve_fail, ips["managesieve"], USER, "wrong", made, tries=2),
        # Through two chained passdbs (two passdb lines per attempt with auth_verbose): one
        # wrong password; and an unknown user, 2 connections x 3 attempts, under dovecot-auth's
        # threshold of 10 in attempts but not in passdb lines (12).
        repeat(1, imap_login_fail, ips["imap_chained_once"], CHAINED_USER, "wrong", made,
               how="imap LOGIN, chained passdbs"),
        repeat(2, imap_login_fail, ips["imap_chained_many"], f"ghost@{CHAINED_DOMAIN}", "x", made,
               tries=3, how="imap LOGIN, chained passdbs, unknown user"),
        # The same through Postfix's SMTP AUTH (Dovecot's auth socket: its requests carry no
        # session, so the two passdb lines of an attempt are folded by address and user): one
        # wrong password; an unknown user, 2 connections x 3 attempts; and a success through the
        # chain (the first passdb refuses carol, the second accepts her).
        repeat(1, smtp_auth_fail, ips["smtp_chained_once"], PORTS["smtp"], "PLAIN", CHAINED_USER,
               "wrong", made, how="smtp AUTH PLAIN, chained passdbs"),
        repeat(2, smtp_auth_fail, ips["smtp_chained_many"], PORTS["smtp"], "LOGIN",
               f"ghost@{CHAINED_DOMAIN}", "x", made, tries=3,
               how="smtp AUTH LOGIN, chained passdbs, unknown user"),
        smtp_chained_success,
        plaintext_forbidden,
        connect_drop,
        successes,
        # Over a playbook's threshold: dovecot-auth (10 in 10m), postfix-sasl (20 in 10m).
        repeat(4, imap_login_fail, ips["imap_over_threshold"], USER, "guess", made, tries=3),
        repeat(1, smtp_auth_fail, ips["smtp_over_threshold"], PORTS["smtp"], "PLAIN", USER,
               "guess", made, tries=22),
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(scenarios)) as pool:
        for f in [pool.submit(s) for s in scenarios]:
            f.result()  # re-raises a scenario's failure
    # Successful logins through the chain, after the failures above: by then mxward has seen the
    # chain's passdbs refuse one attempt one after the other (imap_chained_once), which is how it
    # knows that the first passdb's refusal is followed by the second passdb (docs/parsers.md).
    chained_logins = [
        lambda: imap_chained_login(ips["imap_chained_login"], made, False, auth_verbose),
        lambda: imap_chained_login(ips["imap_chained_fail_login"], made, True, auth_verbose),
        lambda: pop3_chained_login(ips["pop3_chained_login"], made, False, auth_verbose),
        lambda: pop3_chained_login(ips["pop3_chained_fail_login"], made, True, auth_verbose),
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(chained_logins)) as pool:
        for f in [pool.submit(s) for s in chained_logins]:
            f.result()
    return made


# ---------------------------------------------------------------- policy server
def imap_login_ok(ip, user, password):
    """True when the login is accepted."""
    c = _imap_from(ip)
    try:
        c.login(user, password)
        c.logout()
        return True
    except imaplib.IMAP4.error:
        c.logout()
        return False


def smtp_login_ok(ip, user, password):
    c = _smtp_from(ip, PORTS["smtp"])
    c.ehlo("client.example")
    try:
        c.login(user, password)
        return True
    except smtplib.SMTPAuthenticationError:
        return False
    finally:
        c.quit()


def policy_refuses(args, ip):
    """Asks the policy server what Dovecot would ask for a login from ip, until it answers -1
    (True) or 20 s pass (False). Dovecot sends its report of a failed login without waiting for
    the client, so the last report of a burst may still be on its way when the client's next
    login asks; the scenario waits for the decision to be in force, then logs in."""
    name, _, value = args.policy_header.partition(":")
    body = json.dumps({"login": USER, "pwhash": "", "remote": ip, "device_id": "",
                       "protocol": "imap", "session_id": "probe", "tls": False}).encode()
    url = urllib.parse.urlsplit(args.policy)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        c = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        c.request("POST", "/?command=allow", body,
                  {"Content-Type": "application/json", name: value})
        r = c.getresponse()
        answer = json.loads(r.read() or b"{}")
        c.close()
        if answer.get("status") == -1:
            return True
        time.sleep(0.05)
    return False


def run_policy_clients(args, ips, guesses):
    """The attacks of docs/policy.md against the real servers; what the final right-password
    logins got."""
    out = {}
    dictionary = ips["policy_dictionary"]
    for i in range(guesses):
        if imap_login_ok(dictionary, USER, f"dictionary word {i}"):
            raise SystemExit("a wrong password was accepted")
    out["dictionary_refused_by_policy"] = policy_refuses(args, dictionary)
    out["dictionary_then_right_password"] = imap_login_ok(dictionary, USER, PASSWORD)

    phone = ips["policy_stale_phone"]

    def stale(n):
        for _ in range(n):
            if imap_login_ok(phone, USER, "yesterday's password"):
                raise SystemExit("a wrong password was accepted")
    # 200 retries, from 8 connections at a time as a phone's several accounts and apps would.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for f in [pool.submit(stale, 25) for _ in range(8)]:
            f.result()
    out["stale_phone_then_right_password"] = imap_login_ok(phone, USER, PASSWORD)

    smtp = ips["policy_smtp_dictionary"]
    for i in range(guesses):
        if smtp_login_ok(smtp, USER, f"smtp word {i}"):
            raise SystemExit("a wrong password was accepted over SMTP")
    out["smtp_dictionary_refused_by_policy"] = policy_refuses(args, smtp)
    out["smtp_dictionary_then_right_password"] = smtp_login_ok(smtp, USER, PASSWORD)
    # A client nobody attacked from still gets in: the bans are per address.
    out["bystander_right_password"] = imap_login_ok(ips["policy_bystander"], USER, PASSWORD)

    # Postfix asks mxward too: the address banned for its IMAP dictionary is refused by SMTP
    # (smtpd_delay_reject: the client restriction answers at RCPT).
    c = _smtp_from(dictionary, PORTS["smtp"])
    c.ehlo("client.example")
    c.mail("x@example.org")
    out["banned_address_rcpt_code"] = c.rcpt("someone@example.net")[0]
    c.quit()
    # An account sending: the messages past the account-rate playbook's threshold are held.
    sent = []
    for i in range(args.policy_messages):
        c = _smtp_from(ips["policy_sender"], PORTS["smtp"])
        c.ehlo("client.example")
        c.login("bob@example.org", "bobs secret")
        r = c.sendmail("bob@example.org", [f"friend{i}@example.net"],
                       f"Subject: message {i}\r\n\r\nhello {i}\r\n")
        sent.append(r == {})
        c.quit()
    out["messages_accepted"] = sent
    # A spam run from the main account: one message to recipients in new domains. Postfix asks
    # at each RCPT; the playbook counting recipient domains at RCPT pauses the account at its
    # threshold, and the recipient that crossed it and those after it get a 4xx.
    c = _smtp_from(ips["policy_sender"], PORTS["smtp"])
    c.ehlo("client.example")
    c.login(USER, PASSWORD)
    c.mail(USER)
    out["spam_run_rcpt_codes"] = [c.rcpt(f"someone@spam{i}.example")[0]
                                  for i in range(args.policy_spam_domains)]
    c.rset()
    c.quit()
    return out


def queue(pf):
    """postqueue -j: one JSON object per queued message."""
    r = subprocess.run(["postqueue", "-c", pf, "-j"], capture_output=True, text=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------- Roundcube
ROUNDCUBE_PORT = 8080
ROUNDCUBE_DOCROOT = "/var/lib/roundcube/public_html"  # Debian's; INSTALL_PATH is /var/lib/roundcube


def roundcube_conf(work, args):
    """A private config dir (ROUNDCUBE_CONFIG_DIR, read by Debian's iniset.php) with its SQLite
    database, temp and log dirs under WORKDIR; Debian's /etc/roundcube is not read."""
    cfg = f"{work}/roundcube"
    os.makedirs(f"{cfg}/logs", exist_ok=True)
    os.makedirs(f"{cfg}/temp", exist_ok=True)
    db = f"{cfg}/roundcube.sqlite"
    with sqlite3.connect(db) as c:
        with open("/usr/share/roundcube/SQL/sqlite.initial.sql") as f:
            c.executescript(f.read())
    logging = ("$config['log_driver'] = 'syslog';\n$config['syslog_id'] = 'roundcube';"
               if args.roundcube == "syslog" else
               f"$config['log_driver'] = 'file';\n$config['log_dir'] = '{cfg}/logs/';")
    write(f"{cfg}/config.inc.php", f"""<?php
$config = [];
$config['db_dsnw'] = 'sqlite:///{db}?mode=0600';
$config['imap_host'] = '127.0.0.1:{PORTS["imap"]}';
$config['smtp_host'] = '';
$config['des_key'] = 'mxward-test-des-key-24ch';
$config['temp_dir'] = '{cfg}/temp/';
$config['plugins'] = [];
$config['skin'] = 'elastic';
$config['log_logins'] = true;
// Roundcube's own limit (failed logins per user and minute) would refuse the later attempts
// before they reach Dovecot; the test counts what each attempt logs.
$config['login_rate_limit'] = 0;
{logging}
""")
    # Roundcube's defaults.inc.php and mimetypes.php live beside config.inc.php.
    for name in ("defaults.inc.php", "mimetypes.php"):
        os.symlink(f"/etc/roundcube/{name}", f"{cfg}/{name}")
    return cfg


class RoundcubeBrowser:
    """A browser (or a proxy acting for one): connects from `ip`, keeps Roundcube's session
    cookie, sends `headers` with every request."""

    def __init__(self, ip, headers=()):
        class Bound(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(
                    functools.partial(http.client.HTTPConnection, source_address=(ip, 0)), req)
        self.opener = urllib.request.build_opener(
            Bound(), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.opener.addheaders = [("User-Agent", "mxward-test")] + list(headers)
        self.base = f"http://{SERVER}:{ROUNDCUBE_PORT}/"

    def login(self, user, password):
        """True when Roundcube let the user in. One GET for the form's _token, one POST."""
        page = self.opener.open(self.base, timeout=30).read().decode("utf-8", "replace")
        m = re.search(r'name="_token" value="([^"]+)"', page)
        if not m:
            raise SystemExit(f"no _token in Roundcube's login page:\n{page[:2000]}")
        form = urllib.parse.urlencode({"_token": m.group(1), "_task": "login",
                                       "_action": "login", "_timezone": "UTC", "_url": "",
                                       "_user": user, "_pass": password}).encode()
        try:
            r = self.opener.open(self.base + "?_task=login", data=form, timeout=30)
            return "_task=mail" in r.geturl()
        except urllib.error.HTTPError as e:
            if e.code == 401:  # Roundcube's answer to a failed login
                return False
            raise


def run_roundcube_clients(ips):
    """Failed logins through Roundcube from browsers, from a trusted proxy acting for a browser
    and from an untrusted forwarder naming someone else; one successful login."""
    made = Made()

    def fail(browser, ip, how, user, password, n):
        for _ in range(n):
            made.connected("dovecot")  # Roundcube's IMAP login from 127.0.0.1
            if browser.login(user, password):
                raise SystemExit(f"Roundcube login of {user} ({how}) succeeded")
            made.add(ip, how, failed=1)

    fail(RoundcubeBrowser(ips["rc_wrong_password"]), ips["rc_wrong_password"],
         "roundcube, wrong password", USER, "wrong", 3)
    fail(RoundcubeBrowser(ips["rc_unknown_user"]), ips["rc_unknown_user"],
         "roundcube, unknown user", "ghost@example.org", "x", 2)
    # Through a trusted proxy: the proxy connects; X-Forwarded-For ends with the browser it
    # appended (the entry to its left is the browser's own text), X-Real-IP is the browser.
    behind = ips["rc_behind_proxy"]
    fail(RoundcubeBrowser(ips["rc_trusted_proxy"],
                          [("X-Forwarded-For", f"{ips['rc_forged']}, {behind}"),
                           ("X-Real-IP", behind)]),
         behind, "roundcube via trusted proxy: the browser", USER, "wrong", 2)
    made.add(ips["rc_trusted_proxy"], "roundcube via trusted proxy: the proxy")
    made.add(ips["rc_forged"], "roundcube via trusted proxy: forged XFF entry")
    # An untrusted forwarder: its headers name a victim; the forwarder is the client.
    fail(RoundcubeBrowser(ips["rc_untrusted_forwarder"],
                          [("X-Forwarded-For", ips["rc_victim"]), ("X-Real-IP", ips["rc_victim"])]),
         ips["rc_untrusted_forwarder"], "roundcube, untrusted forwarder", USER, "wrong", 2)
    made.add(ips["rc_victim"], "roundcube, untrusted forwarder's victim")
    made.connected("dovecot")
    if not RoundcubeBrowser(ips["rc_success"]).login(USER, PASSWORD):
        raise SystemExit("Roundcube login with the right password failed")
    made.add(ips["rc_success"], "roundcube, successful login", ok=1)
    # Roundcube's own IMAP logins reach Dovecot from loopback: folded, never counted.
    made.add("127.0.0.1", "dovecot, Roundcube's IMAP logins (loopback)")
    return made


def run_roundcube(args, work, ips, logs):
    """Starts Roundcube under php's built-in server (in the servers' mount namespace when it
    logs to syslog), runs its clients, stops it."""
    cfg = roundcube_conf(work, args)
    if args.roundcube == "file":
        logs["roundcube-errors"] = f"{cfg}/logs/errors.log"
        logs["roundcube-userlogins"] = f"{cfg}/logs/userlogins.log"
    env = dict(os.environ, ROUNDCUBE_CONFIG_DIR=cfg)
    with open(f"{work}/php.log", "ab") as out:
        php = subprocess.Popen(server_cmd(args, work, "php", "-S", f"{SERVER}:{ROUNDCUBE_PORT}",
                                          "-t", ROUNDCUBE_DOCROOT),
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    try:
        wait_for(lambda: connectable(ROUNDCUBE_PORT), "Roundcube's port")
        return run_roundcube_clients(ips)
    finally:
        php.terminate()
        php.wait(timeout=30)


def count_lines(path, needles, within=""):
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if within in line and any(n in line for n in needles))
    except FileNotFoundError:
        return 0


def merge_by_time(paths, out):
    """Both files as one stream in time order, as a syslog server would have received them (a
    stable sort: lines of one second keep each file's order)."""
    lines = []
    for i, path in enumerate(paths):
        with open(path, errors="replace") as f:
            key = (0, 0, 0, 0, 0)
            for n, line in enumerate(f):
                try:  # "Dec  6 12:00:00" (Dovecot's log_timestamp) or "Dec 06 12:00:00" (postlogd)
                    if line.startswith("["):  # Roundcube's "[06-Dec-2026 12:00:00 +0000]: "
                        t = time.strptime(line[1:21], "%d-%b-%Y %H:%M:%S")
                    else:
                        t = time.strptime(" ".join(line[:15].split()), "%b %d %H:%M:%S")
                    key = (t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
                except ValueError:
                    pass  # a continuation: keeps the previous line's time
                lines.append((key, i, n, line))
    lines.sort(key=lambda x: x[:3])
    with open(out, "w") as f:
        f.writelines(x[3] for x in lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--auth-verbose", default="no")
    ap.add_argument("--auth-debug", default="no")
    ap.add_argument("--port-logging", default="no")
    ap.add_argument("--syslog", action="store_true",
                    help="log through syslog (/dev/log in a mount namespace) instead of files")
    ap.add_argument("--forward", default="", help="with --syslog: mxward's unix-dgram socket")
    ap.add_argument("--roundcube", choices=["file", "syslog"],
                    help="run Roundcube's clients instead of the mail clients, Roundcube "
                         "logging to its log_dir files or to syslog (which needs --syslog)")
    ap.add_argument("--policy", default="",
                    help="Dovecot's auth_policy_server_url; runs the policy clients")
    ap.add_argument("--policy-header", default="", help="auth_policy_server_api_header")
    ap.add_argument("--policy-guesses", type=int, default=5,
                    help="wrong passwords each dictionary tries before the right one")
    ap.add_argument("--policy-messages", type=int, default=4,
                    help="messages the policy sender sends through Postfix")
    ap.add_argument("--policy-spam-domains", type=int, default=6,
                    help="recipient domains of the main account's spam run (one message)")
    args = ap.parse_args()
    if args.roundcube == "syslog" and not args.syslog:
        ap.error("--roundcube syslog needs --syslog")
    work = args.work
    global LOG
    LOG = f"{work}/commands.log"
    os.chmod(work, 0o755)  # the servers' unprivileged processes walk through it
    os.makedirs(f"{work}/run", exist_ok=True)
    os.makedirs(f"{work}/state", exist_ok=True)
    names = ["imap_login", "imap_plain_many", "pop3_userpass", "pop3_auth_plain",
             "submission_login", "smtp_plain_many", "smtp_login_unknown",
             "imap_plaintext_forbidden", "connect_drop", "success", "imap_over_threshold",
             "smtp_over_threshold", "managesieve", "imap_chained_once", "imap_chained_many",
             "smtp_chained_once", "smtp_chained_many", "smtp_chained_success",
             "imap_chained_login", "imap_chained_fail_login", "pop3_chained_login",
             "pop3_chained_fail_login"]
    if args.policy:
        names = ["policy_dictionary", "policy_stale_phone", "policy_smtp_dictionary",
                 "policy_bystander", "policy_sender"]
    elif args.roundcube:
        names = ["rc_wrong_password", "rc_unknown_user", "rc_behind_proxy", "rc_trusted_proxy",
                 "rc_forged", "rc_untrusted_forwarder", "rc_victim", "rc_success"]
    ips = {n: f"198.51.100.{10 + i}" for i, n in enumerate(names)}
    sh("ip", "addr", "add", f"{SERVER}/32", "dev", "lo", check=False)
    for ip in ips.values():
        sh("ip", "addr", "add", f"{ip}/32", "dev", "lo", check=False)

    conf = f"{work}/dovecot.conf"
    write(conf, dovecot_conf(work, args, ips.get("imap_plaintext_forbidden", "198.51.100.250")))
    pf = postfix_conf(work, args)
    relay = None
    if args.syslog:
        relay = SyslogRelay(f"{work}/dev-log", f"{work}/syslog.log", args.forward)
        relay.start()
        logs = {"dovecot": f"{work}/syslog.log", "postfix": f"{work}/syslog.log"}
    else:
        logs = {"dovecot": f"{work}/dovecot.log", "postfix": f"{work}/postfix.log"}
    sh(*server_cmd(args, work, "dovecot", "-c", conf))
    try:
        wait_for(lambda: os.path.exists(f"{work}/run/auth-postfix"), "dovecot's auth socket")
        sh(*server_cmd(args, work, "postfix", "-c", pf, "start"))
        try:
            for p in PORTS.values():
                wait_for(lambda p=p: connectable(p), f"port {p}")
            if args.policy:
                result = run_policy_clients(args, ips, args.policy_guesses)
                # Every accepted message has reached a queue (incoming, active, deferred, hold).
                wait_for(lambda: len(queue(pf)) >= sum(result["messages_accepted"]),
                         "the accepted messages in Postfix's queue")
                result["queue"] = [{"queue_id": m.get("queue_id"),
                                    "queue_name": m.get("queue_name")} for m in queue(pf)]
                json.dump({"logs": sorted(set(logs.values())), "policy": result,
                           "ips": ips}, sys.stdout)
                return
            # The probes above are connections too (connect-and-drop from the server address).
            if args.roundcube:
                made = run_roundcube(args, work, ips, logs)
            else:
                made = run_clients(ips, args.auth_verbose)
            # Every connection's end is logged before the servers stop (login processes log at
            # disconnect; smtpd logs "disconnect from").
            probes = 4  # imap, pop3, submission, sieve probes of the readiness loop
            wait_for(lambda: count_lines(logs["dovecot"],
                                         ["Disconnected", "Login aborted", "Aborted login",
                                          "Login: "], within="-login: ")
                     >= made.connections["dovecot"] + probes,
                     "dovecot's disconnect lines")
            wait_for(lambda: count_lines(logs["postfix"], ["disconnect from"])
                     >= made.connections["postfix"] + 1, "postfix's disconnect lines")
        finally:
            sh("postfix", "-c", pf, "stop", check=False)
    finally:
        sh("dovecot", "-c", conf, "stop", check=False)
    if relay:
        relay.done.set()
        relay.join()
        merged = f"{work}/syslog.log"  # already in arrival order
    else:
        merged = f"{work}/merged.log"
        merge_by_time([logs[k] for k in sorted(logs) if os.path.exists(logs[k])], merged)
    # Dovecot's failed-login lines for Roundcube's IMAP logins (from loopback): what mxward
    # must fold, so the test knows they were there to fold.
    loopback_failures = count_lines(logs["dovecot"], ["auth failed"], within="rip=127.0.0.1,")
    json.dump({"logs": sorted(set(logs.values())),
               "merged": merged,
               "made": made.by_ip, "connections": made.connections,
               "dovecot_loopback_failures": loopback_failures}, sys.stdout)


if __name__ == "__main__":
    main()
