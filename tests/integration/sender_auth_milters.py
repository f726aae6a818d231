#!/usr/bin/env python3
"""Real OpenDKIM and OpenDMARC as milters on a real Postfix, and mail sent to it with smtplib.

Run by sender_auth_milters_real_test.cpp inside its DnsSandbox (network and mount namespace; the
DNS answers example.org's SPF, DKIM key and DMARC record, partner.example's SPF and DMARC;
/dev/log is the test's). The test made the key with opendkim-genkey in WORKDIR/keys. This script
adds the addresses, writes private configurations under WORKDIR, starts opendkim (Mode sv,
LogResults yes), opendmarc (SPFSelfValidate) and postfix (smtpd_milters = both, virtual delivery
into one Maildir), sends the messages, stops the servers and prints one JSON object: per message,
its name, client address and queue id.

  sender_auth_milters.py WORKDIR

The messages, all to bob@example.org (our domain, example.org, is the one OpenDKIM signs for):
  - "internal": submitted from 127.0.0.1 (InternalHosts): OpenDKIM signs it; delivered to the
    Maildir, from where the next three are taken as they were delivered;
  - "signed_own_mx": the signed message from 192.0.2.20 (example.org's SPF);
  - "signed_forwarded": the signed message from a forwarder, 198.51.100.7, envelope sender of
    list.example (no SPF): DKIM passes, so DMARC passes;
  - "tampered": the signed message with its body changed, from 198.51.100.8: DKIM fails (body
    hash), DMARC fails for example.org;
  - "partner": unsigned, From: partner.example from its SPF address 192.0.2.30: DMARC pass;
  - "nodmarc": unsigned, From: nodmarc.example (no records) from 192.0.2.40: DMARC none;
  - "spoof1".."spoof3": unsigned, From: and envelope ceo@example.org from 203.0.113.66: SPF fail,
    no DKIM, DMARC fail: someone forging our domain.
"""
import email.utils
import json
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import sys
import time

from postfix_master_cf import master_cf

SERVER = "192.0.2.1"
AUTHSERV_ID = "mx.example.org"
LOG = os.devnull  # commands' output; main() sets WORKDIR/commands.log


def sh(*argv, check=True):
    # Output goes to a file, not a pipe: a daemon that forks keeps its inherited pipe open.
    with open(os.devnull, "rb") as null, open(LOG, "a") as out:
        r = subprocess.run(argv, stdin=null, stdout=out, stderr=out)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {r.returncode}; see {LOG}")
    return r


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def wait_for(cond, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def connectable(ip, port):
    try:
        socket.create_connection((ip, port), timeout=1).close()
        return True
    except OSError:
        return False


def opendkim_conf(work):
    # As a mail admin sets it up: sign our domain's mail from internal hosts, verify the rest,
    # LogResults so that every verdict names its signing domain (docs/parsers.md, "DKIM").
    # RequireSafeKeys off: the key lives under the test's /tmp directory, which OpenDKIM's
    # ownership walk rejects (/tmp is world-writable), not under /etc/dkimkeys.
    return f"""Syslog yes
SyslogSuccess yes
LogWhy yes
LogResults yes
Mode sv
Canonicalization relaxed/simple
Domain example.org
Selector mail
KeyFile {work}/keys/mail.private
RequireSafeKeys no
InternalHosts 127.0.0.1
AuthservID {AUTHSERV_ID}
Nameservers 127.0.0.1
Socket inet:8891@127.0.0.1
PidFile {work}/opendkim.pid
UMask 007
"""


def opendmarc_conf(work):
    # Its own SPF check (Debian builds it with libspf2), trusts OpenDKIM's Authentication-Results
    # (same authserv-id); RejectFailures stays at its default (no), so every message is accepted
    # and has a queue id to find its lines by.
    return f"""Syslog true
AuthservID {AUTHSERV_ID}
TrustedAuthservIDs {AUTHSERV_ID}
SPFSelfValidate true
SPFIgnoreResults true
IgnoreHosts {work}/opendmarc-ignore
Socket inet:8893@127.0.0.1
PidFile {work}/opendmarc.pid
"""


def postfix_conf(work):
    cfg = f"{work}/postfix"
    os.makedirs(cfg, exist_ok=True)
    os.makedirs(f"{work}/postfix-queue", mode=0o755, exist_ok=True)
    os.makedirs(f"{work}/postfix-data", mode=0o700, exist_ok=True)
    shutil.chown(f"{work}/postfix-data", "postfix", "postfix")
    os.makedirs(f"{work}/mail", mode=0o755, exist_ok=True)
    nobody = pwd.getpwnam("nobody")
    os.chown(f"{work}/mail", nobody.pw_uid, nobody.pw_gid)
    write(f"{cfg}/main.cf", f"""
compatibility_level = 3.6
queue_directory = {work}/postfix-queue
data_directory = {work}/postfix-data
mail_owner = postfix
setgid_group = postdrop
myhostname = {AUTHSERV_ID}
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
inet_interfaces = {SERVER}, 127.0.0.1
inet_protocols = ipv4
syslog_name = postfix
smtpd_tls_security_level = none
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = example.org
virtual_mailbox_base = {work}/mail
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
virtual_minimum_uid = 1
smtpd_milters = inet:127.0.0.1:8891, inet:127.0.0.1:8893
non_smtpd_milters =
milter_default_action = tempfail
smtpd_error_sleep_time = 0
""")
    write(f"{cfg}/master.cf", master_cf(virtual_delivery=True))
    return cfg


def message(sender, subject, body):
    return (f"From: {sender}\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
            f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n"
            f"\r\n{body}\r\n").encode()


def send(client, helo, envelope_from, data):
    """One message from `client` (an address on lo); the queue id Postfix answered."""
    with smtplib.SMTP(SERVER if client != "127.0.0.1" else "127.0.0.1", 25,
                      local_hostname=helo, source_address=(client, 0), timeout=30) as s:
        s.ehlo(helo)
        code, resp = s.mail(envelope_from)
        assert code == 250, resp
        code, resp = s.rcpt("bob@example.org")
        assert code == 250, resp
        code, resp = s.data(data)
        assert code == 250, (code, resp)
        return resp.decode().rsplit(" ", 1)[-1]  # "2.0.0 Ok: queued as QID"


def delivered(work):
    new = f"{work}/mail/box/new"
    return sorted(os.listdir(new)) if os.path.isdir(new) else []


def main():
    work = sys.argv[1]
    global LOG
    LOG = f"{work}/commands.log"
    os.chmod(work, 0o755)  # the servers' unprivileged processes walk through it
    clients = ["192.0.2.20", "198.51.100.7", "198.51.100.8", "192.0.2.30", "192.0.2.40",
               "203.0.113.66"]
    for ip in [SERVER] + clients:
        sh("ip", "addr", "add", f"{ip}/32", "dev", "lo", check=False)

    write(f"{work}/opendkim.conf", opendkim_conf(work))
    write(f"{work}/opendmarc-ignore", "127.0.0.1\n")
    write(f"{work}/opendmarc.conf", opendmarc_conf(work))
    pf = postfix_conf(work)
    out = open(LOG, "a")
    dkim = subprocess.Popen(["/usr/sbin/opendkim", "-f", "-x", f"{work}/opendkim.conf"],
                            stdout=out, stderr=out)
    dmarc = subprocess.Popen(["/usr/sbin/opendmarc", "-f", "-c", f"{work}/opendmarc.conf"],
                             stdout=out, stderr=out)
    sent = []
    try:
        wait_for(lambda: connectable("127.0.0.1", 8891), "opendkim")
        wait_for(lambda: connectable("127.0.0.1", 8893), "opendmarc")
        sh("postfix", "-c", pf, "start")
        try:
            wait_for(lambda: connectable(SERVER, 25), "postfix")

            def note(name, client, qid):
                sent.append({"name": name, "client": client, "queue_id": qid})

            # Signed by OpenDKIM on the way in from an internal host, then taken as delivered.
            note("internal", "127.0.0.1",
                 send("127.0.0.1", "localhost", "alice@example.org",
                      message("Alice <alice@example.org>", "quarterly report",
                              "Numbers attached.")))
            wait_for(lambda: len(delivered(work)) == 1, "the internal message's delivery")
            with open(f"{work}/mail/box/new/{delivered(work)[0]}", "rb") as f:
                signed = f.read()
            assert b"DKIM-Signature:" in signed, signed
            signed = signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            note("signed_own_mx", "192.0.2.20",
                 send("192.0.2.20", "mx2.example.org", "alice@example.org", signed))
            note("signed_forwarded", "198.51.100.7",
                 send("198.51.100.7", "lists.list.example", "list-bounces@list.example", signed))
            tampered = signed.replace(b"Numbers attached.", b"Pay invoice 4711 today.")
            assert tampered != signed
            note("tampered", "198.51.100.8",
                 send("198.51.100.8", "relay.list.example", "list-bounces@list.example",
                      tampered))
            note("partner", "192.0.2.30",
                 send("192.0.2.30", "mail.partner.example", "orders@partner.example",
                      message("orders@partner.example", "your order", "Shipped.")))
            note("nodmarc", "192.0.2.40",
                 send("192.0.2.40", "mail.nodmarc.example", "info@nodmarc.example",
                      message("info@nodmarc.example", "newsletter", "News.")))
            for i in range(1, 4):
                note(f"spoof{i}", "203.0.113.66",
                     send("203.0.113.66", "mail.example.org", "ceo@example.org",
                          message("CEO <ceo@example.org>", f"urgent wire transfer {i}",
                                  "Please pay today.")))
            wait_for(lambda: len(delivered(work)) == len(sent), "every message's delivery")
        finally:
            sh("postfix", "-c", pf, "stop", check=False)
    finally:
        for p in (dkim, dmarc):  # both at once: each takes a few seconds to wind down
            p.terminate()
        for p in (dkim, dmarc):
            p.wait(timeout=30)
    json.dump({"messages": sent}, sys.stdout)


if __name__ == "__main__":
    main()
