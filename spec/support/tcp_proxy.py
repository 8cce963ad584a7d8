#!/usr/bin/env python3
"""A TCP-level proxy between kinformer and the test control plane, for faults
of the connection itself.

    tcp_proxy.py --upstream HOST:PORT [--delay MS]

--delay MS holds every chunk MS milliseconds before passing it on, in each
direction (order kept): the round trip of a network between a client and its
API server (another zone, a load balancer), which loopback does not have.

It prints one line on stdout:

    TCPPROXY <port> <control_port> <pid>

Bytes are passed through untouched in both directions: TLS and HTTP/2 stay end
to end between kinformer and the API server, as behind a load balancer or a
NAT. What it can do to the connections open at the moment it is asked:

  POST /stall   stop forwarding in both directions without closing anything
                (what a vanished peer or a dropped NAT entry looks like: no FIN,
                no RST, the client's writes still go into buffers); answers
                {"stalled": n}. Connections made afterwards are forwarded.
  POST /cut     close them (both sides); answers {"cut": n}
  POST /reset   forward again on the stalled ones
  GET  /stats   {"accepted": connections accepted since start, "open": n,
                 "stalled": n}

The control port is plain HTTP on 127.0.0.1. The proxy runs until it gets
SIGTERM (the spec that started it kills it by its pid).
"""
import argparse
import json
import os
import queue
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Conn:
    def __init__(self, client, upstream):
        self.client = client
        self.upstream = upstream
        self.stalled = False
        self.closed = False


class Delayed:
    """Sends what it is given to a socket, each chunk `delay` seconds after it came, in order."""

    def __init__(self, sock, delay):
        self.sock = sock
        self.delay = delay
        self.q = queue.Queue()
        threading.Thread(target=self.run, daemon=True).start()

    def sendall(self, data):
        self.q.put((time.monotonic() + self.delay, data))

    def run(self):
        while True:
            due, data = self.q.get()
            if data is None:
                return
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                self.sock.sendall(data)
            except OSError:
                return


class Proxy:
    def __init__(self, upstream, delay=0.0):
        self.delay = delay
        self.upstream = upstream
        self.lock = threading.Lock()
        self.conns = []
        self.accepted = 0

    def serve(self, listener):
        while True:
            client, _ = listener.accept()
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Conn(client, up)
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self.pump, args=(c,), daemon=True).start()

    def pump(self, c):
        pairs = {c.client: c.upstream, c.upstream: c.client}
        if self.delay > 0:
            pairs = {c.client: Delayed(c.upstream, self.delay), c.upstream: Delayed(c.client, self.delay)}
        try:
            while not c.closed:
                if c.stalled:
                    # read nothing, so that the peers' kernels stop at full
                    # windows; nothing is closed either
                    threading.Event().wait(0.1)
                    continue
                ready, _, _ = select.select(list(pairs), [], [], 0.1)
                for s in ready:
                    if c.stalled:
                        break
                    data = s.recv(65536)
                    if not data:
                        raise EOFError
                    pairs[s].sendall(data)
        except (OSError, EOFError, ValueError):
            pass
        for dst in pairs.values():
            if isinstance(dst, Delayed):
                dst.q.put((0, None))
        self.close(c)

    def close(self, c):
        with self.lock:
            if c in self.conns:
                self.conns.remove(c)
        c.closed = True
        for s in (c.client, c.upstream):
            try:
                s.close()
            except OSError:
                pass

    def act(self, what):
        with self.lock:
            conns = list(self.conns)
        if what == "stall":
            for c in conns:
                c.stalled = True
            return {"stalled": len(conns)}
        if what == "cut":
            for c in conns:
                for s in (c.client, c.upstream):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self.close(c)
            return {"cut": len(conns)}
        if what == "reset":
            for c in conns:
                c.stalled = False
            return {"reset": len(conns)}
        return None

    def stats(self):
        with self.lock:
            return {"accepted": self.accepted, "open": len(self.conns),
                    "stalled": sum(1 for c in self.conns if c.stalled)}


def control_handler(proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/stats":
                self.answer(200, proxy.stats())
            else:
                self.answer(404, {"error": "GET /stats"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            out = proxy.act(self.path.strip("/"))
            if out is None:
                self.answer(404, {"error": "POST /stall, /cut or /reset"})
            else:
                self.answer(200, out)

        def log_message(self, *args):
            pass

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the API server")
    ap.add_argument("--delay", type=float, default=0.0, help="ms to hold each chunk, in each direction")
    a = ap.parse_args()
    host, port = a.upstream.rsplit(":", 1)
    proxy = Proxy((host, int(port)), a.delay / 1000.0)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    ctl = ThreadingHTTPServer(("127.0.0.1", 0), control_handler(proxy))
    threading.Thread(target=proxy.serve, args=(listener,), daemon=True).start()
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    print("TCPPROXY %d %d %d" % (listener.getsockname()[1], ctl.server_address[1], os.getpid()), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
