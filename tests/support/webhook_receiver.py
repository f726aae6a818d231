#!/usr/bin/env python3
"""A webhook receiver for mxward's integration tests, on loopback.

POST /hook answers from a plan given on the command line (one entry per request, then 200):
  500        HTTP 500
  429:N      HTTP 429 with Retry-After: N
  slow:S     sleep S seconds, then accept (the client has timed out by then)
Every request is appended to --log as one JSON line: the Idempotency-Key, whether the HMAC
signature verified, the answer, the body, and whether this key was already accepted (duplicate).
A key is "accepted" once (deduplication by idempotency key, as a real receiver does).
The chosen port is written to --port-file once listening.
"""
import argparse
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--port-file", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--secret-file")
parser.add_argument("--plan", default="")
args = parser.parse_args()

secret = open(args.secret_file, "rb").read().rstrip(b"\r\n") if args.secret_file else None
plan = [p for p in args.plan.split(",") if p]
lock = threading.Lock()
accepted = set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        key = self.headers.get("Idempotency-Key", "")
        sig = self.headers.get("X-Mxward-Signature", "")
        sig_ok = None
        if secret is not None:
            want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            sig_ok = hmac.compare_digest(want, sig)
        with lock:
            step = plan.pop(0) if plan else "200"
        code, extra = 200, {}
        if step == "500":
            code = 500
        elif step.startswith("429:"):
            code, extra = 429, {"Retry-After": step.split(":")[1]}
        elif step.startswith("slow:"):
            time.sleep(float(step.split(":")[1]))
        with lock:
            duplicate = code == 200 and key in accepted
            if code == 200:
                accepted.add(key)
            with open(args.log, "a") as f:
                f.write(json.dumps({"key": key, "sig_ok": sig_ok, "code": code, "step": step,
                                    "duplicate": duplicate, "path": self.path,
                                    "custom": self.headers.get("X-Test", ""),
                                    "body": json.loads(body)}) + "\n")
        try:
            self.send_response(code)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except (BrokenPipeError, ConnectionResetError):
            pass


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


server = Server(("127.0.0.1", args.port), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(args.port_file + ".tmp", args.port_file)
server.serve_forever()
