#!/usr/bin/env python3
"""webhook_sink.py: a local HTTP listener for ternd's qos.webhook in the tests.

    webhook_sink.py PORT_FILE LOG_FILE [--fail-first N] [--status CODE] [--delay S]

Binds 127.0.0.1 on a kernel-chosen port (written to PORT_FILE), and appends one JSON line per
POST to LOG_FILE: {"n": request number, "status": answered, "body": the parsed JSON body (or
null when it is not JSON), "content_type": ...}. The first N requests get CODE (default 503),
the rest 200; each answer waits S seconds first (a slow receiver).
"""
import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("port_file")
ap.add_argument("log_file")
ap.add_argument("--fail-first", type=int, default=0)
ap.add_argument("--status", type=int, default=503)
ap.add_argument("--delay", type=float, default=0)
a = ap.parse_args()
count = 0


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        count += 1
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        status = a.status if count <= a.fail_first else 200
        if a.delay:
            time.sleep(a.delay)
        with open(a.log_file, "a") as f:
            f.write(json.dumps({"n": count, "status": status, "body": body, "t": time.time(),
                                "content_type": self.headers.get("Content-Type")}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


srv = HTTPServer(("127.0.0.1", 0), Sink)
with open(a.port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os  # noqa: E402
os.rename(a.port_file + ".tmp", a.port_file)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
