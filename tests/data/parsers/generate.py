import json, re, sys
HUB = "crowdsecurity/hub b03cb59b2131ebfc5300f5f14828e29967efd1a5 (MIT, (c) 2025 CrowdSecurity), via shared/samples/crowdsec-hub-mail.jsonl"
def split(raw):
    m = re.match(r'^(?:\d{4}-\S+|\S+ +\S+ +\S+) \S+ ([^\s\[:]+)(?:\[\d+\])?: (.*)$', raw)
    assert m, raw
    return m.group(1), m.group(2)
out = {}
def add(parser, program, message, event, fields=None, weight=None, pattern=None, source=None, note=None, raw=None):
    d = {"program": program, "message": message, "event": event}
    if fields: d["fields"] = fields
    if weight is not None: d["weight"] = weight
    if pattern: d["pattern"] = pattern
    if source: d["source"] = source
    if note: d["note"] = note
    out.setdefault(parser, []).append(d)
def hub(parser, raw, event, fields=None, **kw):
    p, m = split(raw)
    add(parser, p, m, event, fields, source=HUB, **kw)

# ---------------- postfix
P='postfix'
hub(P, "May  6 09:25:41 mail postfix/smtps/smtpd[16997]: warning: unknown[203.0.113.10]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=postmaster@example.org", "auth_failure", {"client_ip":"203.0.113.10","client_host":"unknown","sasl_user":"postmaster@example.org","service":"smtps","reason":"(reason unavailable)"}, pattern="sasl_auth_failed")
hub(P, "May 11 04:02:36 host1 postfix/smtpd[26897]: warning: unknown[192.168.1.1]: SASL LOGIN authentication failed: authentication failure", "auth_failure", {"client_ip":"192.168.1.1","service":"smtpd","reason":"authentication failure"})
add(P, "postfix/submission/smtpd", "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", "auth_failure", {"client_ip":"203.0.113.7","service":"submission","reason":"UGFzc3dvcmQ6"})
add(P, "postfix/smtpd", "warning: mail.example.net[198.51.100.23]: SASL PLAIN authentication failed: authentication failure", "auth_failure", {"client_ip":"198.51.100.23","client_host":"mail.example.net"})
add(P, "postfix/smtpd", "warning: unknown[2001:db8:dead::7]: SASL CRAM-MD5 authentication failed: authentication failure", "auth_failure", {"client_ip":"2001:db8:dead::7"}, note="IPv6, CRAM-MD5")
add(P, "postfix/smtpd", "warning: unknown[::ffff:198.51.100.9]: SASL PLAIN authentication failed: authentication failure", "auth_failure", {"client_ip":"198.51.100.9"}, note="IPv4-mapped IPv6 is normalised")
add(P, "postfix-out/smtpd", "warning: host.example[192.0.2.8]: SASL LOGIN authentication failed: authentication failure, sasl_username=bob from [6.6.6.6]", "auth_failure", {"client_ip":"192.0.2.8","service":"smtpd","sasl_user":"bob from [6.6.6.6]"}, note="postfix instance; injected address in the user name is not the client")
add(P, "postfix/smtpd", "warning: unknown[192.0.2.99]: SASL LOGIN authentication failed: Connection lost to authentication server", None, pattern="sasl_server_fault", note="server fault, not a client failure")
add(P, "postfix/submission/smtpd", "lost connection after AUTH from unknown[203.0.113.44]", None, pattern="lost_after_auth")
add(P, "postfix/submission/smtpd", "disconnect from unknown[203.0.113.44] ehlo=1 auth=0/1 commands=1/2", "protocol_abuse", {"client_ip":"203.0.113.44","attempts":"1","service":"submission"})
add(P, "postfix/smtpd", "disconnect from unknown[203.0.113.45] ehlo=1 auth=0/3 rset=1 quit=1 commands=3/6", "protocol_abuse", {"client_ip":"203.0.113.45","attempts":"3"}, pattern="disconnect_auth_failed")
add(P, "postfix/smtpd", "disconnect from [6.6.6.6][203.0.113.46] ehlo=1 auth=0/3 commands=1/4", None, note="host class excludes brackets")
add(P, "postfix/smtpd", "disconnect from mail.example.org[198.51.100.10] ehlo=1 auth=1/1 mail=1 rcpt=1 data=1 quit=1 commands=6", None, note="successful AUTH")
add(P, "postfix/smtpd", "disconnect from mail-relay.example.org[198.51.100.10] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5", None)
add(P, "postfix/smtpd", "connect from unknown[203.0.113.7]", None)
hub(P, "May 11 04:02:37 host1 postfix/smtpd[26897]: NOQUEUE: reject: RCPT from unknown[192.168.1.1]: 554 5.7.1 Service unavailable", "rbl_reject", {"client_ip":"192.168.1.1","reason":"Service unavailable"}, pattern="reject_client")
add(P, "postfix/smtpd", "NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 554 5.7.1 Service unavailable; Client host [192.0.2.77] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.77; from=<a@spam.example> to=<info@example.org> proto=ESMTP helo=<spam.example>", "rbl_reject", {"client_ip":"192.0.2.77","reason":"zen.spamhaus.org"}, pattern="reject_rbl")
hub(P, "2024-08-25T12:31:56.154748+00:00 machine postfix/smtpd[3887453]: NOQUEUE: reject: RCPT from unknown[192.168.1.1]: 454 4.7.1 <spammer@domain.tld>: Relay access denied; from=<spammer@domain.tld> to=<spammer@domain.tld> proto=ESMTP helo=<WIN-CLJ1B0GQ6JP>", "relay_denied", {"client_ip":"192.168.1.1","recipient":"spammer@domain.tld","recipient_domain":"domain.tld","sender":"spammer@domain.tld","reason":"Relay access denied"})
hub(P, "Jun 04 22:24:28 machine postfix/smtpd[3967801]: NOQUEUE: reject: RCPT from static.1.1.168.192.client.domain.xyz[192.168.1.1]: 454 4.7.1 <spameri@tiscali.it>: Relay access denied; from=<spammer@domain.tld> to=<spammer@domain.tld> proto=ESMTP helo=<WIN-CLJ1B0GQ6JP>", "relay_denied", {"client_ip":"192.168.1.1","client_host":"static.1.1.168.192.client.domain.xyz","recipient":"spameri@tiscali.it"})
hub(P, "2024-08-29T01:08:59.764590+00:00 machine postfix/smtpd[1938053]: NOQUEUE: reject: RCPT from unknown[192.168.1.1]: 504 5.5.2 <WIN-9QL4SDRB93L>: Helo command rejected: need fully-qualifiedhostname; from=<spammer@domain.tld> to=<spammer@domain.tld> proto=ESMTP helo=<WIN-9QL4SDRB93L>", "helo_reject", {"client_ip":"192.168.1.1","helo":"WIN-9QL4SDRB93L","reason":"need fully-qualifiedhostname","sender":"spammer@domain.tld"})
add(P, "postfix/smtpd", "NOQUEUE: reject: RCPT from unknown[192.0.2.5]: 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<x@y.example> to=<nobody@example.org> proto=ESMTP helo=<[192.0.2.5]>", "unknown_recipient", {"client_ip":"192.0.2.5","recipient":"nobody@example.org","recipient_domain":"example.org","reason":"User unknown in virtual mailbox table"})
add(P, "postfix/smtpd", "NOQUEUE: reject: RCPT from unknown[192.0.2.6]: 450 4.1.8 <a@nxdomain.invalid>: Sender address rejected: Domain not found; from=<a@nxdomain.invalid> to=<info@example.org> proto=ESMTP helo=<x>", "sender_reject", {"client_ip":"192.0.2.6","sender":"a@nxdomain.invalid","sender_domain":"nxdomain.invalid","reason":"Domain not found"})
add(P, "postfix/smtpd", "NOQUEUE: reject: RCPT from unknown[192.0.2.7]: 454 4.7.1 <x@victim.example>: Relay access denied; from=<evil> to=<x> proto=ESMTP helo=<unknown[6.6.6.6]: SASL LOGIN authentication failed>", "relay_denied", {"client_ip":"192.0.2.7"}, note="injection in HELO")
hub(P, "2024-10-31T12:38:21.817327+00:00 machine postfix/submission/smtpd[2634372]: warning: non-SMTP command from unknown[192.168.1.1]: GET / HTTP/1.1", "protocol_abuse", {"client_ip":"192.168.1.1","service":"submission","reason":"non-SMTP command"})
hub(P, "2025-02-27T07:14:47.545612+00:00 machine postfix/submission/smtpd[479101]: warning: non-SMTP command from not.stretchoid.com[192.168.1.1]: \\001\\000\\000S\\000\\005\\000\\005\\001\\000\\000\\000\\000\\000", "protocol_abuse", {"client_ip":"192.168.1.1","client_host":"not.stretchoid.com"})
add(P, "postfix/smtpd", "too many errors after AUTH from unknown[203.0.113.99]", "protocol_abuse", {"client_ip":"203.0.113.99","reason":"too many errors"})
add(P, "postfix/smtpd", "improper command pipelining after CONNECT from unknown[203.0.113.98]: EHLO x\\r\\n", "protocol_abuse", {"client_ip":"203.0.113.98"})
add(P, "postfix/submission/smtpd", "4Xz1Ab2CdEz: client=unknown[203.0.113.50], sasl_method=PLAIN, sasl_username=alice@example.org", "message_submitted", {"queue_id":"4Xz1Ab2CdEz","client_ip":"203.0.113.50","sasl_user":"alice@example.org","service":"submission"}, pattern="client_sasl")
add(P, "postfix/smtpd", "ABCDEF0000: client=mail-relay.example.org[198.51.100.10]", "message_submitted", {"queue_id":"ABCDEF0000","client_ip":"198.51.100.10"}, pattern="client_plain")
add(P, "postfix/smtpd", "ABCDEF000A: client=unknown[2001:db8::77]:4711", "message_submitted", {"queue_id":"ABCDEF000A","client_ip":"2001:db8::77"}, pattern="client")
add(P, "postfix/smtpd", "ABCDEF000B: client=x[192.0.2.1] sasl_username=<6.6.6.6>", None, note="not Postfix's format")
add(P, "postfix/smtpd", "ABCDEF0001: client=localhost[127.0.0.1], orig_queue_id=ABCDEF0000, orig_client=mail[198.51.100.10]", "message_submitted", {"queue_id":"ABCDEF0001","client_ip":"127.0.0.1"})
hub(P, "Oct 25 04:24:59 test postfix/postscreen[22244]: PREGREET 16 after 2.6 from [177.154.236.182]:41323: EHLO 127.0.0.1\\r\\n", "protocol_abuse", {"client_ip":"177.154.236.182","reason":"pregreet","service":"postscreen"})
hub(P, "Jul 12 15:59:44 mail postfix/postscreen[1120148]: PREGREET 47 after 0 from [172.16.1.1]:62873: \\003\\000\\000/*\\340\\000\\000\\000\\000\\000Cookie: mstshash=Administr\\r\\n\\001\\000\\b\\000\\003\\000\\000\\000", "protocol_abuse", {"client_ip":"172.16.1.1"})
add(P, "postfix/postscreen", "DNSBL rank 3 for [2001:db8::66]:50123", "rbl_reject", {"client_ip":"2001:db8::66"})
add(P, "postfix/postscreen", "NOQUEUE: reject: RCPT from [2001:db8::66]:50123: 550 5.7.1 Service unavailable; client [2001:db8::66] blocked using zen.spamhaus.org; from=<a@b>, to=<c@d>, proto=ESMTP, helo=<x>", None, pattern="postscreen_reject")
add(P, "postfix/postscreen", "NON-SMTP COMMAND from [192.0.2.30]:40000 after CONNECT: GET / HTTP/1.0", "protocol_abuse", {"client_ip":"192.0.2.30"})
add(P, "postfix/postscreen", "CONNECT from [192.0.2.30]:40000 to [192.0.2.1]:25", None)
add(P, "postfix/qmgr", "ABCDEF0000: from=<news@example.org>, size=2345, nrcpt=1 (queue active)", "message_queued", {"queue_id":"ABCDEF0000","sender":"news@example.org","sender_domain":"example.org","size":"2345","nrcpt":"1"})
add(P, "postfix/qmgr", "ABCDEF0002: from=<x>, size=1, nrcpt=9 (queue active)>, size=2345, nrcpt=1 (queue active)", "message_queued", {"size":"2345","nrcpt":"1"}, note="sender text cannot move the size field")
add(P, "postfix/qmgr", "ABCDEF0000: removed", None, pattern="removed")
add(P, "postfix/smtp", "ABCDEF0000: to=<bob@example.net>, relay=mx.example.net[203.0.113.25]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 OK 1700000000 abc)", "delivery", {"queue_id":"ABCDEF0000","recipient":"bob@example.net","relay":"mx.example.net[203.0.113.25]:25","status":"sent","reason":"250 2.0.0 OK 1700000000 abc","client_ip":None})
add(P, "postfix/lmtp", "ABCDEF0006: to=<dave@example.org>, relay=mx1.example.org[private/dovecot-lmtp], delay=0.05, delays=0.01/0/0.01/0.03, dsn=2.0.0, status=sent (250 2.0.0 <dave@example.org> x Saved)", "delivery", {"queue_id":"ABCDEF0006","recipient":"dave@example.org","status":"sent","reason":"250 2.0.0 <dave@example.org> x Saved"}, pattern="delivery_fast")
add(P, "postfix/lmtp", "ABCDEF0003: to=<carol@example.org>, orig_to=<info@example.org>, relay=mail.example.org[private/dovecot-lmtp], delay=0.05, delays=0.01/0/0.01/0.03, dsn=2.0.0, status=sent (250 2.0.0 <carol@example.org> Saved)", "delivery", {"status":"sent","relay":"mail.example.org[private/dovecot-lmtp]"})
add(P, "postfix/smtp", "ABCDEF0004: to=<bob@example.net>, relay=none, delay=300, delays=300/0/0/0, dsn=4.4.1, status=deferred (connect to mx.example.net[203.0.113.25]:25: Connection timed out)", "delivery", {"status":"deferred"})
add(P, "postfix/bounce", "ABCDEF0004: sender non-delivery notification: ABCDEF0005", None, pattern="bounce_notification")
add(P, "postfix/cleanup", "ABCDEF0000: message-id=<20261123090008.ABCDEF0000@example.org>", None)
add(P, "sshd", "Failed password for root from 1.2.3.4 port 22 ssh2", None, note="not a mail program")

# ---------------- dovecot
D='dovecot'
hub(D, "Sep 8 07:16:27 canyon dovecot[7508]: imap-login: Disconnected (auth failed, 1 attempts in 6 secs): user=<toto@toto.com>, method=PLAIN, rip=1.1.1.1, lip=7.7.7.7, TLS, session=<azdaDADSqqsvf-za>", "auth_failure", {"client_ip":"1.1.1.1","user":"toto@toto.com","service":"imap","attempts":"1"}, weight=1, pattern="login_auth_failed")
hub(D, "Oct 12 15:44:43 canyon dovecot: pop3-login: Info: Disconnected: Connection closed (auth failed, 2 attempts in 30 secs): user=<hess@lol.fr>, method=PLAIN, rip=172.17.0.1, lip=172.17.0.2, TLS: Connection closed, session=<oEOptynOHNasEQAB>", "auth_failure", {"client_ip":"172.17.0.1","user":"hess@lol.fr","service":"pop3"}, weight=2)
hub(D, "Oct 12 15:46:28 canyon dovecot: imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 15 secs): user=<hess@test.fr>, method=PLAIN, rip=172.17.0.1, lip=172.17.0.2, TLS, session=<6wzJvinOOLisEQAB>", "auth_failure", {"client_ip":"172.17.0.1","user":"hess@test.fr"}, weight=1)
hub(D, "Oct 12 15:53:32 canyon dovecot: imap-login: Info: Disconnected: Too many invalid commands (auth failed, 1 attempts in 0 secs): user=<hess@testnew.fr>, rip=172.17.0.1, lip=172.17.0.2, session=<5Tfu2CnO3pKsEQAB>", "auth_failure", {"client_ip":"172.17.0.1","user":"hess@testnew.fr"})
hub(D, "Oct 12 15:54:33 canyon dovecot: pop3-login: Info: Disconnected: Disconnected: Too many bad commands (auth failed, 2 attempts in 0 secs): user=<test@yourdomain.net>, rip=172.17.0.1, lip=172.17.0.2, session=<02qW3CnO5tWsEQAB>", "auth_failure", {"client_ip":"172.17.0.1","user":"test@yourdomain.net"}, weight=2)
hub(D, "Oct 13 09:22:47 canyon dovecot: pop3-login: Info: Disconnected: Disconnected: Too many bad commands (no auth attempts in 22 secs): user=<>, rip=172.17.0.1, lip=172.17.0.2, TLS, session=<HfdbgTjOEOisEQAB>", None)
hub(D, "Oct 13 09:22:59 canyon dovecot: pop3-login: Info: Login: user=<test@yourdomain.net>, method=PLAIN, rip=172.17.0.1, lip=172.17.0.2, mpid=18, TLS, session=<PeYcgjjOGOisEQAB>", "auth_success", {"client_ip":"172.17.0.1","user":"test@yourdomain.net","service":"pop3"})
hub(D, "Jan 15 08:00:00 server dovecot: imap-login: Disconnected (auth failed, 1 attempts): user=<admin@example.com>, method=PLAIN, rip=192.0.2.1, lip=10.0.0.1, TLS, session=<abc001>", "auth_failure", {"client_ip":"192.0.2.1","user":"admin@example.com"})
add(D, "dovecot", "imap-login: Aborted login (auth failed, 3 attempts in 12 secs): user=<root>, method=PLAIN, rip=2001:db8::5, lip=2001:db8::1, TLS, session=<xyz>", "auth_failure", {"client_ip":"2001:db8::5","user":"root"}, weight=3, note="2.3 Aborted login, IPv6")
add(D, "dovecot", "imap-login: Login aborted: Connection closed (auth failed, 4 attempts in 9 secs) (auth_failed): user=<bob@example.org>, method=PLAIN, rip=198.51.100.4, lip=192.0.2.1, TLS, session=<Zx9>", "auth_failure", {"client_ip":"198.51.100.4","user":"bob@example.org"}, weight=4, note="Dovecot 2.4 form")
add(D, "dovecot", "managesieve-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<sieve@example.org>, method=PLAIN, rip=::ffff:198.51.100.5, lip=::ffff:192.0.2.1, session=<s>", "auth_failure", {"client_ip":"198.51.100.5","service":"managesieve"}, note="::ffff: normalised")
add(D, "dovecot", "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1, TLS>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.1, TLS, session=<q>", "auth_failure", {"client_ip":"203.0.113.66","user":"a>, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1, TLS"}, note="injection in user=<>: the address Dovecot wrote wins")
hub(D, "Sep 8 07:46:30 canyon dovecot: auth-worker(24544): pam(toto,1.1.1.1): unknown user", "auth_failure", {"client_ip":"1.1.1.1","user":"toto","service":"auth","reason":"unknown user"}, pattern="passdb_failure", note="folded by the extractor")
hub(D, "Sep 8 07:16:29 canyon dovecot: auth-worker(24058): pam(toto,1.1.1.1,<youpi>): pam_authenticate() failed: Authentication failure (password mismatch?)", "auth_failure", {"client_ip":"1.1.1.1","user":"toto"}, pattern="passdb_failure")
hub(D, "Apr 29 15:54:19 mail dovecot: auth-worker(14864): conn unix:auth-worker (pid=14830,uid=109): auth-worker<6>: pam(caliph@customdomaine.com,5.34.207.151): pam_authenticate() failed: Authentication failure (Password mismatch?)", "auth_failure", {"client_ip":"5.34.207.151","user":"caliph@customdomaine.com"}, pattern="passdb_failure")
hub(D, "Apr 18 08:31:30 mail dovecot: auth-worker(63712): Info: conn unix:auth-worker (pid=58074,uid=109): auth-worker<4>: sql(contact,220.169.110.101): unknown user", "auth_failure", {"client_ip":"220.169.110.101","user":"contact"}, pattern="passdb_failure")
hub(D, "2024-12-31T06:56:17.784598+01:00 mail dovecot: auth-worker(10377): conn unix:auth-worker (pid=919,uid=112): auth-worker<1>: sql(testing@example.com,192.168.1.1): unknown user (given password: Password123$)", "auth_failure", {"client_ip":"192.168.1.1","user":"testing@example.com"}, pattern="passdb_failure")
hub(D, "2025-01-01T17:05:06.533969+01:00 mail2 dovecot: auth: passwd-file(karen@co.uk,192.168.1.1): unknown user (SHA1 of given password: 21bd12)", "auth_failure", {"client_ip":"192.168.1.1","user":"karen@co.uk"}, pattern="passdb_failure")
add(D, "dovecot", "auth: passwd-file(bob@example.org,2001:db8::9,<AbCd>): Password mismatch", "auth_failure", {"client_ip":"2001:db8::9","user":"bob@example.org","reason":"Password mismatch"}, pattern="passdb_failure", note="2.4 form with session")
add(D, "dovecot", "auth: sql(a,6.6.6.6): unknown user (,203.0.113.1): unknown user", None, note="injection: user 'a,6.6.6.6): unknown user (' places no address")
add(D, "dovecot", "auth: sql(a,6.6.6.6): unknown user (given password: ,203.0.113.1): unknown user (given password: pw)", None, note="injection with logged passwords")
add(D, "dovecot", "auth-worker(77): pam(a,6.6.6.6): pam_authenticate() failed: x (,203.0.113.1): pam_authenticate() failed: Authentication failure (password mismatch?)", None, note="injection into the pam form")
add(D, "dovecot", "auth: sql(a,6.6.6.6,203.0.113.1): unknown user", None, note="user with a comma does not match: no wrong address")
add(D, "dovecot", "imap(alice@example.org)<1234><sess>: Disconnected: Logged out in=100 out=2000", None)

# ---------------- roundcube
R='roundcube'
add(R, "roundcube", "IMAP Error: Login failed for admin against localhost from 203.0.113.9. AUTHENTICATE PLAIN: Authentication failed. in /usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)", "auth_failure", {"client_ip":"203.0.113.9","user":"admin","service":"webmail","reason":"AUTHENTICATE PLAIN: Authentication failed."}, pattern="imap_login_failed")
add(R, "roundcube", "<8r1pu4bh> IMAP Error: Login failed for admin against localhost from 127.0.0.1(X-Real-IP: 198.51.100.70,X-Forwarded-For: 198.51.100.70). AUTHENTICATE PLAIN: Authentication failed. in /usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 200 (POST /?_task=login&_action=login)", "auth_failure", {"client_ip":"198.51.100.70","user":"admin"}, pattern="imap_login_failed_proxied_real_ip")
add(R, "roundcube", "IMAP Error: Login failed for bob against ssl://imap.example.org:993 from ::1(X-Forwarded-For: 10.9.9.9, 198.51.100.71). AUTHENTICATE PLAIN: Authentication failed. in /var/www/rc/program/lib/Roundcube/rcube_imap.php on line 211 (POST /?_task=login&_action=login)", "auth_failure", {"client_ip":"198.51.100.71","user":"bob"}, pattern="imap_login_failed_proxied_xff")
add(R, "roundcube", "IMAP Error: Login failed for evil from 6.6.6.6 against localhost from 6.6.6.6. x against localhost from 203.0.113.10. AUTHENTICATE PLAIN: Authentication failed. in /r/rcube_imap.php on line 211 (POST /?_task=login&_action=login)", "auth_failure", {"client_ip":"203.0.113.10"}, note="injection in the user name")
add(R, "roundcube", "IMAP Error: Login failed for x against localhost from 203.0.113.11. AUTHENTICATE PLAIN: Authentication failed. in /r/rcube_imap.php on line 211 (POST /?a=%20against%20localhost%20from%206.6.6.6.%20x)", "auth_failure", {"client_ip":"203.0.113.11"}, note="injection in the URI (no spaces possible)")
add(R, "roundcube", "IMAP Error: Login failed for x against localhost from 203.0.113.12(X-Forwarded-For: 1.1.1.1 against x from 6.6.6.6. y). AUTHENTICATE PLAIN: Authentication failed. in /r/rcube_imap.php on line 211 (POST /)", "auth_failure", {"client_ip":None,"user":None}, pattern="imap_login_failed_ambiguous", note="injection in X-Forwarded-For: no address rather than a wrong one")
add(R, "roundcube", "IMAP Error: Login failed for x against localhost from 203.0.113.13(X-Forwarded-For: 6.6.6.6). AUTHENTICATE PLAIN: Authentication failed. in /r/rcube_imap.php on line 211 (POST /)", "auth_failure", {"client_ip":"203.0.113.13"}, note="forwarding headers from a non-loopback peer are the client's fiction")
add(R, "roundcube", "Failed login for admin from 203.0.113.20 in session 5v1kq0bq8m0 (error: 0)", "auth_failure", {"client_ip":"203.0.113.20","user":"admin","service":"webmail"}, pattern="failed_login")
add(R, "roundcube", "Failed login for x from 203.0.113.23(X-Forwarded-For: 1.1.1.1 from 6.6.6.6(X-Real-IP: 1.1.1.1) in session abc (error: 0)", "auth_failure", {"client_ip":None,"user":None}, pattern="failed_login_ambiguous", note="injection through X-Forwarded-For: no address rather than a wrong one")
add(R, "roundcube", "Failed login for admin from 6.6.6.6 in session x (error: 0) from 203.0.113.21 in session 5v1kq0bq8m0 (error: 0)", "auth_failure", {"client_ip":"203.0.113.21","user":"admin from 6.6.6.6 in session x (error: 0)"}, pattern="failed_login", note="Roundcube user containing 'from 1.2.3.4'")
add(R, "roundcube", "Failed login for carol from 127.0.0.1(X-Real-IP: 2001:db8::70,X-Forwarded-For: 2001:db8::70) in session abc123 (error: 0)", "auth_failure", {"client_ip":"2001:db8::70"}, pattern="failed_login_proxied_real_ip")
add(R, "roundcube", "Successful login for alice@example.org (ID: 3) from 203.0.113.22 in session abc", "auth_success", {"client_ip":"203.0.113.22","user":"alice@example.org"})
add(R, "roundcube", "IMAP Error: Login failed for x against localhost from 203.0.113.14. Could not connect to localhost:143: Connection refused in /r/rcube_imap.php on line 200 (POST /?_task=login&_action=login)", "auth_failure", {"client_ip":"203.0.113.14"}, note="any IMAP Error login failure counts")
add(R, "roundcube", "PHP Error: Something else in /r/x.php on line 3 (GET /)", None)

# ---------------- opendkim
O='opendkim'
add(O, "opendkim", "4Xz1Ab2CdEz: DKIM verification successful", "dkim_verify", {"queue_id":"4Xz1Ab2CdEz","dkim_result":"pass"})
add(O, "opendkim", "ABCDEF0009: bad signature data", "dkim_verify", {"queue_id":"ABCDEF0009","dkim_result":"fail"})
add(O, "opendkim", "ABCDEF0009: s=sel1 d=example.com SSL", None, pattern="signature_info_fast")
add(O, "opendkim", "ABCDEF0009: s=sel1 d=example.com", None, pattern="signature_info")
add(O, "opendkim", "ABCDEF0010: key retrieval failed (s=sel2, d=broken.example): 'sel2._domainkey.broken.example' record not found", "dkim_verify", {"dkim_result":"temperror","dkim_domain":"broken.example"})
add(O, "opendkim", "ABCDEF0011: mail.example.com [198.51.100.80] not internal", None, pattern="client_not_internal")
add(O, "opendkim", "ABCDEF0011: DKIM-Signature field added (s=mail, d=example.org)", None, pattern="signature_added")
add(O, "opendkim", "OpenDKIM Filter v2.11.0 starting (args: -x /etc/opendkim.conf)", None)

# ---------------- amavis
A='amavis'
hub(A, "Feb 23 04:55:57 mrelmx42 amavis[4051607]: (4051607-09) Blocked INFECTED (Porcupine.Phishing.55542.UNOFFICIAL) {DiscardedInbound,Quarantined}, [192.168.0.1]:1434 [192.168.0.1] <someone1@something1.com> -> <someon2@something2.com>, quarantine: 2/virus-26W2lJY63nCZ, Queue-ID: 83B741009CD35, Message-ID: <20240223075525.8CD9941B67@xxx.xxx.shop>, mail_id: 26W2lJY63nCZ, Hits: -, size: 28646, 104 ms", "virus_found", {"client_ip":"192.168.0.1","virus":"Porcupine.Phishing.55542.UNOFFICIAL","queue_id":"83B741009CD35","sender":"someone1@something1.com"})
add(A, "amavis", "(12345-01) Passed CLEAN {RelayedInbound}, [203.0.113.30]:41234 [203.0.113.30] <a@sender.example> -> <b@example.org>, Queue-ID: 4D1A83F, Message-ID: <x@y>, mail_id: abcdEF, Hits: -1.91, size: 3456, queued_as: 5E2B94A, dkim_id=@sender.example,sender.example, 1234 ms", "spam_verdict", {"client_ip":"203.0.113.30","reason":"CLEAN","spam_score":"-1.91","queue_id":"4D1A83F","size":"3456","dkim_domain":"sender.example"})
add(A, "amavis", "(12345-02) Blocked SPAM {DiscardedInbound,Quarantined}, [2001:db8::31]:41235 [6.6.6.6] <spam@bad.example> -> <b@example.org>, quarantine: spam-xyz, Queue-ID: 4D1A840, Message-ID: <z@w>, mail_id: xyz, Hits: 23.456, size: 999, 50 ms", "spam_verdict", {"client_ip":"2001:db8::31","reason":"SPAM","spam_score":"23.456"}, note="origin guess [6.6.6.6] never used")
add(A, "amavis", "(12345-03) Passed SPAMMY {RelayedTaggedInbound}, LOCAL [127.0.0.1]:41236 <a@b.example> -> <c@d.example>,<e@f.example>, Queue-ID: 4D1A841, Message-ID: <m>, mail_id: q, Hits: 6.1, size: 10, 5 ms", "spam_verdict", {"client_ip":"127.0.0.1","reason":"SPAMMY","spam_score":"6.1"})
add(A, "amavis", "(12345-04) Passed CLEAN {RelayedInbound}, [203.0.113.32]:41237 <a@b.example> -> <c@d.example>, Queue-ID: 4D1A842, Message-ID: <m>, mail_id: q, Hits: -, size: 10, 5 ms", "spam_verdict", {"spam_score":None}, note="Hits: - is no score")
add(A, "amavis", "(22871-24) Passed CLEAN {RelayedInbound}, [2a05:afd1:d12f:d87a::3123]:63609 [2a05:afd1:d12f:d87a::3123] <xavier.27@web.example> -> <judy@mail-lab.example>, Queue-ID: 02C9FCDC86, Message-ID: <0f8d8933f669@web.example>, mail_id: fx8HjQMfanLd, Hits: -0.925, size: 290031, queued_as: 02C9FCE289, 2957 ms", "spam_verdict", {"client_ip":"2a05:afd1:d12f:d87a::3123","reason":"CLEAN","spam_score":"-0.925","queue_id":"02C9FCDC86","sender":"xavier.27@web.example","recipient":"judy@mail-lab.example","size":"290031"}, pattern="verdict_fast")
add(A, "amavis", "(22871-25) Passed CLEAN {RelayedInbound}, [203.0.113.33]:63609 [203.0.113.33] <x@y.example> -> <j@example.org>, Queue-ID: 02C9FCDC87, Message-ID: <a>, mail_id: q>, mail_id: z, Hits: 99, size: 1, queued_as: 02C9FCE290, 2 ms>, mail_id: fx8HjQMfanLd, Hits: -0.925, size: 290031, queued_as: 02C9FCE289, 2957 ms", "spam_verdict", {"client_ip":"203.0.113.33","spam_score":"-0.925","size":"290031"}, note="Message-ID cannot move the score")
add(A, "amavis", "(12345-05) SA info: ...", None)

# ---------------- rspamd
S='rspamd'
add(S, "rspamd", "<a1b2c3>; task; rspamd_task_write_log: id: <20261123.abc@example.org>, qid: <4Xz1Ab2CdEz>, ip: 203.0.113.50, user: alice@example.org, from: <alice@example.org>, (default: T (soft reject): [3.20/15.00] [RATELIMITED(0.00){user_hourly(alice@example.org);},DKIM_SIGNED(0.00){example.org:s=dkim;}]), len: 2345, time: 120.5ms, dt: 100.2ms, dns req: 12, digest: <abcdef>, rcpts: <bob@example.net>, mime_rcpts: <bob@example.net>", "rate_limited", {"client_ip":"203.0.113.50","sasl_user":"alice@example.org","queue_id":"4Xz1Ab2CdEz","reason":"soft reject","spam_score":"3.20"})
add(S, "rspamd", "<a1b2c4>; task; rspamd_task_write_log: id: <m2@x>, qid: <ABCDEF0020>, ip: 2001:db8::40, from: <x@forged.example>, (default: T (reject): [16.50/15.00] [R_DKIM_REJECT(1.00){forged.example;s=sel;},BAYES_SPAM(5.00){99.0%;}]), len: 100, time: 10ms, dt: 5ms, dns req: 3, digest: <d>, rcpts: <b@example.org>", "dkim_verify", {"client_ip":"2001:db8::40","dkim_domain":"forged.example","dkim_result":"fail"})
add(S, "rspamd", "<a1b2c5>; task; rspamd_task_write_log: id: <m3@x>, qid: <ABCDEF0021>, ip: 198.51.100.41, from: <y@z.example>, (default: F (no action): [-0.10/15.00] [R_SPF_ALLOW(-0.20){+ip4:198.51.100.41;}]), len: 100, time: 10ms, dt: 5ms, dns req: 3, digest: <d>, rcpts: <b@example.org>", "spam_verdict", {"client_ip":"198.51.100.41","reason":"no action","spam_score":"-0.10","queue_id":"ABCDEF0021"})
add(S, "rspamd", "<a1b2c6>; task; rspamd_task_write_log: id: <m4@x>, qid: <Q1>, ip: 6.6.6.6, from: <a>, (default: F (no action): [0/15] []), len: 1, time: 1ms, dns req: 1, digest: <a>, rcpts: <x>, q: <a>, qid: <ABCDEF0022>, ip: 198.51.100.42, from: <y@z.example>, (default: F (no action): [-0.10/15.00] [X(1){;}]), len: 100, time: 10ms, dt: 5ms, dns req: 3, digest: <d>, rcpts: <b@example.org>", None, note="message id with blanks: no match rather than a wrong address")
add(S, "rspamd", "<a1b2c7>; lua; rbl.lua:123: some debug", None)

# ---------------- clamav
C='clamav'
add(C, "clamd", "/var/lib/amavis/tmp/amavis-20261123T090000-12345-abcd/parts/p002: Eicar-Signature FOUND", "virus_found", {"virus":"Eicar-Signature","client_ip":None})
add(C, "clamd", "instream(127.0.0.1@55555): Win.Test.EICAR_HDB-1(44d88612fea8a8f36de82e1278abb02f:68) FOUND", "virus_found", {"virus":"Win.Test.EICAR_HDB-1","client_ip":None})
add(C, "clamd", "/tmp/x: Fake FOUND.pdf: Eicar-Signature FOUND", "virus_found", {"virus":"Eicar-Signature"}, note="file name chosen by the sender")
add(C, "clamd", "SelfCheck: Database status OK.", None)

for parser, rows in out.items():
    with open(f"{parser}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
print({k: len(v) for k, v in out.items()})
