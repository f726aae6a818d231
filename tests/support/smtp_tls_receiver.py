#!/usr/bin/env python3
"""An SMTP submission server for mxward's admin-mail test, built on aiosmtpd (Debian's
python3-aiosmtpd): STARTTLS with the given certificate is required before anything else, and AUTH
(PLAIN or LOGIN, only over TLS) with the given user and password before MAIL. Every accepted
message is appended to --log as one JSON line: whether the session was under TLS, the TLS version,
the authenticated user, the envelope and the message text. Refused logins are logged too.

Listens on 127.0.0.1:--port (0: any free port) and writes the port to --port-file once listening.
"""
import argparse
import asyncio
import json
import os
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--port-file", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--user", required=True)
parser.add_argument("--password", required=True)
args = parser.parse_args()


def log(record):
    with open(args.log, "a") as f:
        f.write(json.dumps(record) + "\n")


class Handler:
    async def handle_DATA(self, server, session, envelope):
        tls = session.ssl is not None
        log({
            "event": "message",
            "tls": tls,
            "tls_version": session.ssl.get("ssl_object").version() if tls else None,
            "authenticated": bool(session.authenticated),
            "user": session.auth_data.login.decode() if session.authenticated else None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        })
        return "250 2.0.0 queued"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == args.user.encode()
          and auth_data.password == args.password.encode())
    if not ok:
        log({"event": "login refused", "tls": session.ssl is not None, "mechanism": mechanism})
    # handled=False: aiosmtpd then answers a refusal with 535 itself.
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


async def main():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), hostname="localhost", tls_context=context, require_starttls=True,
                     authenticator=authenticator, auth_required=True, auth_require_tls=True,
                     loop=loop),
        "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(args.port_file + ".tmp", args.port_file)
    async with server:
        await server.serve_forever()


asyncio.run(main())
