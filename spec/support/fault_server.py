#!/usr/bin/env python3
"""A fake API server for faults a real one cannot produce on demand.

Plain HTTP on 127.0.0.1; prints its port and pid on the first line of stdout. Every
path is a script for that path; counters are kept per path and reset by
GET /reset:

  /fail/<code>/<n>[?retry_after=S]  the first n requests answer <code> (with a
                                    Retry-After when asked), later ones 200
  /slow/<seconds>                   answers 200 after sleeping
  /count                            how many requests each path received (JSON)
  /garbage                          200 with a body that is not JSON
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

counts = {}
lock = threading.Lock()


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, body, headers=None, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        q = parse_qs(url.query)
        with lock:
            n = counts.get(url.path, 0) + 1
            counts[url.path] = n
        if parts[:1] == ["reset"]:
            with lock:
                counts.clear()
            return self.send(200, {"ok": True})
        if parts[:1] == ["count"]:
            with lock:
                return self.send(200, dict(counts))
        if parts[:1] == ["fail"] and len(parts) == 3:
            code, times = int(parts[1]), int(parts[2])
            if n <= times:
                headers = {}
                if "retry_after" in q:
                    headers["Retry-After"] = q["retry_after"][0]
                reasons = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
                return self.send(code, status(code, reasons.get(code, "Unknown"), "fault %d of %d" % (n, times)),
                                 headers)
            return self.send(200, {"kind": "Answer", "attempt": n, "method": self.command})
        if parts[:1] == ["slow"] and len(parts) == 2:
            time.sleep(float(parts[1]))
            return self.send(200, {"kind": "Answer", "slept": float(parts[1])})
        if parts[:1] == ["garbage"]:
            return self.send(200, b"\x00\xffnot json{{", ctype="application/json")
        return self.send(404, status(404, "NotFound", "no script for " + url.path))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], os.getpid(), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
