#!/usr/bin/env python3
"""A minimal SMTP receiver for mxward's mail test (smtpd is gone from newer Pythons and aiosmtpd
is not packaged here). Accepts any mail; appends every line the client sends to --out."""
import argparse
import os
import socketserver

parser = argparse.ArgumentParser()
parser.add_argument("--port-file", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()


class Handler(socketserver.StreamRequestHandler):
    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        self.reply("220 localhost ESMTP test")
        in_data = False
        with open(args.out, "ab") as out:
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                out.write(line)
                out.flush()
                cmd = line.strip().upper()
                if in_data:
                    if line in (b".\r\n", b".\n"):
                        in_data = False
                        self.reply("250 2.0.0 queued")
                    continue
                if cmd.startswith(b"EHLO"):
                    self.reply("250-localhost")
                    self.reply("250 8BITMIME")
                elif cmd.startswith(b"HELO"):
                    self.reply("250 localhost")
                elif cmd.startswith(b"DATA"):
                    in_data = True
                    self.reply("354 go ahead")
                elif cmd.startswith(b"QUIT"):
                    self.reply("221 bye")
                    return
                else:
                    self.reply("250 OK")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(args.port_file + ".tmp", args.port_file)
server.serve_forever()
