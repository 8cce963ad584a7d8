#!/usr/bin/env python3
"""A fault-injecting proxy between kinformer and the test control plane.

    fault_proxy.py [--cluster-dir DIR]      (default: $KINFORMER_CLUSTER_DIR, else .cluster)

It reads DIR/env (written by spec/cluster/up.sh) and prints one line on stdout:

    PROXY <tls_port> <control_port> <pid>

The TLS port (127.0.0.1) is what a kubeconfig under test points at. The proxy
serves a certificate for 127.0.0.1 that it signs with the test CA at start (so
the kubeconfig keeps the test CA), offers only http/1.1 by ALPN (kinformer then
speaks HTTP/1.1), drops the client's Authorization header and talks to the real
API server over TLS as the admin client certificate, one request per
connection. Watch streams (chunked bodies) are taken apart into events (lines)
and put back together one chunk per event, so a fault can be placed at an event
boundary or inside an event.

The control port is plain HTTP with JSON bodies:

  POST /fault     a fault, a list of faults, or {"faults": [...]}; answers their ids.
                  {"action": A, "match": "substr" | [...], "exclude": "substr" | [...],
                   "method": "GET", "count": 1, "after_events": 0, "event_type": "ADDED",
                   "retry_after": 1, "delay": 0.002, "now": false}
                  match/exclude: substrings the request target (path?query) must / must not hold.
                  count: how many requests or streams it applies to.
                  Request faults answer a matching request themselves, upstream is not asked:
                    http_<code> (http_401, http_410, http_429, http_500, http_503, ...),
                    with a Status body and Retry-After when retry_after is given.
                  Stream faults bind to one watch stream: an open one that matches when the fault
                  is posted, else the next matching watch request. They fire at the event boundary
                  after `after_events` more events, at an event of type `event_type` if given
                  (the event about to be forwarded is "the next event"), or at once with now=true:
                    cut_mid_event       half of the next event, then the connection closes (FIN, no
                                        last chunk)
                    cut_between_events  the connection closes before the next event
                    stall               nothing more is sent, the connection stays open (no FIN)
                                        until the client closes it or POST /reset
                    trickle             from then on every byte is sent alone, `delay` s apart
                                        (bound to a new request: its status line and headers too)
                    garbage             binary garbage (with a newline), then the next event
                    truncate_chunk      a chunk that says it holds half of the next event, which
                                        is sent whole: the chunked framing breaks there
                    invalid_json_line   a line that is not JSON, then the next event
                    unknown_event_type  an event of type "EXPLODED" holding a ConfigMap "ghost",
                                        then the next event
                    error_410_event     instead of the next event an ERROR event (Status 410
                                        Expired), then the stream ends as the API server ends it
                    end                 the stream ends cleanly (last chunk), as at its timeout
  GET  /faults    every fault: remaining, claimed, fired
  GET  /requests  {"counts": {"GET <path> watch|get": n}, "log": [{t, method, path, query, watch,
                  status, fault, end, end_t, events}]}; ?match=substr keeps only those targets
  GET  /streams   the open streams (and stalled ones)
  GET  /time      {"now": seconds since the proxy started}: the clock of log[].t
  POST /tokens    {"valid": ["tok", ...]}: from now on a request without one of these bearer
                  tokens is answered 401 (as a server that saw the token expire); {} turns it off
  POST /release   closes stalled streams (a cut: FIN, no last chunk)
  POST /reset     forgets faults, the log and the token list; closes stalled streams
"""
import argparse
import json
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

STREAM_ACTIONS = {
    "cut_mid_event", "cut_between_events", "stall", "trickle", "garbage", "truncate_chunk",
    "invalid_json_line", "unknown_event_type", "error_410_event", "end",
}
HTTP_ACTION = re.compile(r"^http_([1-5]\d\d)$")
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 410: "Expired",
           429: "TooManyRequests", 500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable",
           504: "Timeout"}
PHRASES = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 410: "Gone",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}
GARBAGE = b"\x00\xff\xfe\x01\x80garbage\x7f{{[\x1b]\xc3\x28\n"
INVALID_JSON = b'{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":\n'
MAX_STALL = 900          # seconds a stalled stream is held at most
HOP_HEADERS = {"host", "authorization", "connection", "keep-alive", "proxy-connection", "accept-encoding",
               "expect", "transfer-encoding", "content-length", "te", "upgrade", "trailer"}
T0 = time.monotonic()


def now():
    return round(time.monotonic() - T0, 4)


def status_body(code, message):
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": REASONS.get(code, "Unknown"), "code": code}).encode()


def as_list(v):
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


def is_watch(target):
    q = parse_qs(urlsplit(target).query)
    return q.get("watch", [""])[0] in ("1", "true")


def event_type(line):
    m = re.match(rb'\s*\{\s*"type"\s*:\s*"([^"]*)"', line)
    if m:
        return m.group(1).decode("latin-1")
    try:
        return json.loads(line).get("type")
    except (ValueError, AttributeError):
        return None


def chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


# ---- shared state ----

class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        self.next_id = 1
        self.log = []
        self.streams = []
        self.valid_tokens = None

    def add_fault(self, spec):
        action = spec.get("action")
        if action not in STREAM_ACTIONS and not HTTP_ACTION.match(str(action)):
            raise ValueError("unknown action %r" % (action,))
        f = {"action": action, "match": as_list(spec.get("match")), "exclude": as_list(spec.get("exclude")),
             "method": spec.get("method"), "remaining": int(spec.get("count", 1)),
             "after_events": int(spec.get("after_events", 0)), "event_type": spec.get("event_type"),
             "retry_after": spec.get("retry_after"), "delay": float(spec.get("delay", 0.002)),
             "now": bool(spec.get("now", False)), "claimed": 0, "fired": 0, "fired_at": [], "claimed_by": []}
        with self.lock:
            f["id"] = self.next_id
            self.next_id += 1
            self.faults.append(f)
            streams = list(self.streams)
        if action in STREAM_ACTIONS:
            # an open stream that matches takes it now
            for s in streams:
                if f["remaining"] <= 0:
                    break
                s.offer(f)
        return f["id"]

    @staticmethod
    def matches(f, method, target):
        if f["method"] and f["method"] != method:
            return False
        return all(m in target for m in f["match"]) and not any(x in target for x in f["exclude"])

    def take(self, f, who):
        """Claims one use of f (under self.lock)."""
        f["remaining"] -= 1
        f["claimed"] += 1
        f["claimed_by"].append(who)

    def claim_for_request(self, method, target, entry_id):
        with self.lock:
            for f in self.faults:
                if f["remaining"] <= 0 or not self.matches(f, method, target):
                    continue
                if HTTP_ACTION.match(f["action"]):
                    self.take(f, entry_id)
                    f["fired"] += 1
                    f["fired_at"].append(now())
                    return f
                if is_watch(target):
                    self.take(f, entry_id)
                    return f
        return None

    def give_back(self, f):
        with self.lock:
            f["remaining"] += 1
            f["claimed"] -= 1

    def fired(self, f):
        with self.lock:
            f["fired"] += 1
            f["fired_at"].append(now())

    def record(self, method, target):
        u = urlsplit(target)
        entry = {"id": 0, "t": now(), "method": method, "path": u.path, "query": u.query,
                 "watch": is_watch(target), "status": None, "fault": None, "end": None, "end_t": None,
                 "events": 0}
        with self.lock:
            entry["id"] = len(self.log) + 1
            self.log.append(entry)
        return entry

    def reset(self):
        with self.lock:
            self.faults = []
            self.log = []
            self.valid_tokens = None
            streams = list(self.streams)
        for s in streams:
            s.released.set()


STATE = State()
SERVER_CTX = None
CLIENT_CTX = None
UPSTREAM = None          # (host, port)


# ---- one proxied stream (a chunked response) ----

class Stream:
    def __init__(self, down, up, upf, method, target, entry):
        self.down, self.up, self.upf = down, up, upf
        self.method, self.target, self.entry = method, target, entry
        self.watch = is_watch(target)
        m = re.search(r"/namespaces/([^/?]+)/", target)
        self.namespace = m.group(1) if m else "default"
        self.wlock = threading.RLock()   # writes downstream and state changes
        self.fault = None
        self.since = 0                   # events forwarded since the fault was claimed
        self.trickle = None
        self.state = "open"              # open, stalled, ended, cut, broken
        self.released = threading.Event()

    # -- writing (under wlock) --
    def write(self, data):
        if self.trickle is not None:
            for i in range(len(data)):
                self.down.sendall(data[i:i + 1])
                time.sleep(self.trickle)
        else:
            self.down.sendall(data)

    def shut_up(self):
        for how in (lambda: self.up.shutdown(socket.SHUT_RDWR), self.up.close):
            try:
                how()
            except OSError:
                pass

    def cut(self, state="cut"):
        """Closes downstream with a FIN and no last chunk, as a broken network would."""
        self.state = state
        for how in (lambda: self.down.shutdown(socket.SHUT_RDWR), self.down.close):
            try:
                how()
            except OSError:
                pass
        self.shut_up()

    def finish(self, why):
        self.entry["end"] = self.entry["end"] or why
        self.entry["end_t"] = self.entry["end_t"] or now()

    # -- faults --
    def offer(self, f):
        """A fault posted while this stream is open: bind it if it matches (control thread)."""
        with self.wlock:
            if self.state != "open" or self.fault is not None or not self.watch:
                return
            with STATE.lock:
                if f["remaining"] <= 0 or not STATE.matches(f, self.method, self.target):
                    return
                STATE.take(f, self.entry["id"])
            self.fault, self.since = f, 0
            if f["now"] and f["after_events"] == 0:
                self.fault = None
                if not self.trigger(f, None):
                    self.shut_up()  # wakes the pump, which then sees the state

    def claim_pending(self):
        if self.fault is not None or not self.watch:
            return
        with STATE.lock:
            for f in STATE.faults:
                if f["action"] in STREAM_ACTIONS and f["remaining"] > 0 and \
                        STATE.matches(f, self.method, self.target):
                    STATE.take(f, self.entry["id"])
                    self.fault, self.since = f, 0
                    return

    def trigger(self, f, line):
        """Applies f before `line` (None: at once). False: the stream is over."""
        STATE.fired(f)
        a = f["action"]
        self.entry["fault"] = a
        try:
            if a == "cut_mid_event":
                if line:
                    self.write(chunk(line[:max(1, len(line) // 2)]))
                self.finish("cut mid event" if line else "cut")
                self.cut()
                return False
            if a == "cut_between_events":
                self.finish("cut")
                self.cut()
                return False
            if a == "stall":
                self.state = "stalled"
                self.entry["end"] = "stalled"
                self.shut_up()
                return False
            if a == "end":
                self.write(b"0\r\n\r\n")
                self.finish("ended")
                self.state = "ended"
                return False
            if a == "error_410_event":
                ev = {"type": "ERROR", "object": json.loads(status_body(410, "too old resource version: 1 (2)"))}
                self.write(chunk(json.dumps(ev).encode() + b"\n") + b"0\r\n\r\n")
                self.finish("ERROR 410")
                self.state = "ended"
                return False
            if a == "trickle":
                self.trickle = f["delay"]
            elif a == "garbage":
                self.write(chunk(GARBAGE))
            elif a == "invalid_json_line":
                self.write(chunk(INVALID_JSON))
            elif a == "unknown_event_type":
                ghost = {"type": "EXPLODED", "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                    "name": "ghost", "namespace": self.namespace, "resourceVersion": "1",
                    "uid": "00000000-0000-0000-0000-000000000000"}, "data": {"ghost": "yes"}}}
                self.write(chunk(json.dumps(ghost).encode() + b"\n"))
            elif a == "truncate_chunk":
                if line:
                    self.write(b"%x\r\n" % max(1, len(line) // 2) + line + b"\r\n")
                    self.entry["events"] += 1
                    return True
                self.write(b"40\r\n" + b'{"type":"ADDED"')
                return True
            if line:
                self.write(chunk(line))
                self.entry["events"] += 1
            return True
        except OSError:
            self.finish("client closed")
            self.cut("broken")
            return False

    def event(self, line):
        """One complete event from upstream. False: stop pumping."""
        with self.wlock:
            if self.state != "open":
                return False
            self.claim_pending()
            f = self.fault
            if f is not None and self.since >= f["after_events"] and \
                    (not f["event_type"] or f["event_type"] == event_type(line)):
                self.fault = None
                return self.trigger(f, line)
            try:
                self.write(chunk(line))
            except OSError:
                self.finish("client closed")
                self.cut("broken")
                return False
            self.entry["events"] += 1
            if f is not None:
                self.since += 1
            return True

    # -- the pump --
    def run(self, head, bound):
        with self.wlock:
            if bound is not None:
                self.fault, self.since = bound, 0
                if bound["action"] == "trickle" and bound["after_events"] == 0 and not bound["event_type"]:
                    self.fault = None
                    self.trigger(bound, None)  # the status line and headers trickle too
            try:
                self.write(head)
            except OSError:
                self.finish("client closed")
                self.cut("broken")
                return
        with STATE.lock:
            STATE.streams.append(self)
        threading.Thread(target=self.watch_client, daemon=True).start()
        try:
            self.pump()
            if self.state == "stalled":
                self.hold()
        finally:
            with STATE.lock:
                STATE.streams.remove(self)
        with self.wlock:
            if self.state == "open":
                # upstream broke without its last chunk: pass the break on
                self.finish("upstream broke")
                self.cut("broken")
            elif self.state in ("ended",):
                self.cut("ended")

    def pump(self):
        buf = b""
        try:
            while True:
                size_line = self.upf.readline(1024)
                if not size_line:
                    return
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.upf.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    with self.wlock:
                        if self.state == "open":
                            if buf:
                                self.write(chunk(buf))
                            self.write(b"0\r\n\r\n")
                            self.finish("ended by the server")
                            self.state = "ended"
                    return
                data = self.upf.read(size)
                self.upf.readline(16)
                if len(data) < size:
                    return
                if not self.watch:
                    with self.wlock:
                        if self.state != "open":
                            return
                        self.write(chunk(data))
                    continue
                buf += data
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl + 1], buf[nl + 1:]
                    if not self.event(line):
                        return
        except (OSError, ValueError):
            with self.wlock:
                if self.state == "open":
                    self.finish("client or upstream closed")
                    self.cut("broken")

    def watch_client(self):
        """Notices a client that closed its end: it sends nothing else on a watch connection, so the
        socket turning readable means a FIN (or a TLS close_notify)."""
        p = select.poll()
        p.register(self.down.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLRDHUP)
        while self.state == "open":
            if p.poll(250):
                with self.wlock:
                    if self.state == "open":
                        self.finish("client closed")
                        self.cut("broken")
                return

    def hold(self):
        """A stalled stream: no byte and no FIN until the client gives up or we are told."""
        t = time.monotonic()
        self.down.settimeout(0.25)
        why = "stall held to the limit"
        while time.monotonic() - t < MAX_STALL:
            if self.released.is_set():
                why = "stall released"
                break
            try:
                if not self.down.recv(4096):
                    why = "client closed the stalled stream"
                    break
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (OSError, ValueError):
                why = "client closed the stalled stream"
                break
        self.entry["end"] = why
        self.entry["end_t"] = now()
        self.cut("cut")


# ---- one downstream connection: one request ----

def read_head(f):
    line = f.readline(65537)
    if not line:
        return None, []
    headers = []
    while True:
        h = f.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return line.decode("latin-1").rstrip("\r\n"), headers


def header(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def respond(down, code, body, extra=None, ctype="application/json"):
    head = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n" % (
        code, PHRASES.get(code, "Status"), ctype, len(body))
    for k, v in (extra or {}).items():
        head += "%s: %s\r\n" % (k, v)
    down.sendall(head.encode() + b"\r\n" + body)


def connect_upstream():
    s = socket.create_connection(UPSTREAM, timeout=15)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    u = CLIENT_CTX.wrap_socket(s, server_hostname=UPSTREAM[0])
    u.settimeout(None)
    return u


def serve(down):
    rf = down.makefile("rb")
    request_line, headers = read_head(rf)
    if not request_line:
        return
    method, target, _ = request_line.split(" ", 2)
    body = b""
    if header(headers, "expect") and header(headers, "expect").lower() == "100-continue":
        down.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if header(headers, "content-length"):
        body = rf.read(int(header(headers, "content-length")))
    elif (header(headers, "transfer-encoding") or "").lower() == "chunked":
        while True:
            n = int(rf.readline(1024).split(b";")[0].strip() or b"0", 16)
            if n == 0:
                while rf.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += rf.read(n)
            rf.readline(16)
    down.settimeout(None)
    entry = STATE.record(method, target)

    tokens = STATE.valid_tokens
    if tokens is not None:
        auth = header(headers, "authorization") or ""
        if not auth.lower().startswith("bearer ") or auth[7:].strip() not in tokens:
            entry.update(status=401, fault="token", end="answered", end_t=now())
            respond(down, 401, status_body(401, "Unauthorized"))
            return
    fault = STATE.claim_for_request(method, target, entry["id"])
    if fault is not None and HTTP_ACTION.match(fault["action"]):
        code = int(HTTP_ACTION.match(fault["action"]).group(1))
        extra = {}
        if fault["retry_after"] is not None:
            extra["Retry-After"] = str(fault["retry_after"])
        msg = "fault injected by the proxy" if code != 410 else "too old resource version: 1 (2)"
        entry.update(status=code, fault=fault["action"], end="answered", end_t=now())
        respond(down, code, status_body(code, msg), extra)
        return

    try:
        up = connect_upstream()
    except OSError as e:
        if fault is not None:
            STATE.give_back(fault)
        entry.update(status=502, end="upstream unreachable: %s" % e, end_t=now())
        respond(down, 502, status_body(502, "the proxy cannot reach the API server"))
        return
    out = "%s %s HTTP/1.1\r\nHost: %s:%d\r\n" % (method, target, UPSTREAM[0], UPSTREAM[1])
    for k, v in headers:
        if k.lower() not in HOP_HEADERS:
            out += "%s: %s\r\n" % (k, v)
    out += "Accept-Encoding: identity\r\nConnection: close\r\n"
    if body or method in ("POST", "PUT", "PATCH"):
        out += "Content-Length: %d\r\n" % len(body)
    up.sendall(out.encode("latin-1") + b"\r\n" + body)
    upf = up.makefile("rb")
    status_line, rheaders = read_head(upf)
    if not status_line:
        if fault is not None:
            STATE.give_back(fault)
        entry.update(status=502, end="upstream said nothing", end_t=now())
        respond(down, 502, status_body(502, "the API server closed the connection"))
        return
    code = int(status_line.split(" ")[1])
    entry["status"] = code
    head = status_line + "\r\n"
    for k, v in rheaders:
        if k.lower() not in ("transfer-encoding", "content-length", "connection", "keep-alive"):
            head += "%s: %s\r\n" % (k, v)
    head += "Connection: close\r\n"
    chunked = (header(rheaders, "transfer-encoding") or "").lower() == "chunked"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n\r\n"
        if fault is not None and not (200 <= code < 300):
            STATE.give_back(fault)
            fault = None
        Stream(down, up, upf, method, target, entry).run(head.encode("latin-1"), fault)
        return
    if fault is not None:
        STATE.give_back(fault)
    n = header(rheaders, "content-length")
    data = upf.read(int(n)) if n is not None else upf.read()
    down.sendall((head + "Content-Length: %d\r\n\r\n" % len(data)).encode("latin-1") + data)
    entry.update(end="answered", end_t=now())
    up.close()


def handle_conn(raw):
    down = None
    try:
        raw.settimeout(15)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        down = SERVER_CTX.wrap_socket(raw, server_side=True)
        serve(down)
    except (OSError, ValueError):
        pass
    finally:
        try:
            (down or raw).close()
        except OSError:
            pass


def accept_loop(lsock):
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=handle_conn, args=(conn,), daemon=True).start()


# ---- control ----

class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}") if n else {}

    def do_GET(self):
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        if u.path == "/requests":
            sub = q.get("match", [""])[0]
            with STATE.lock:
                log = [dict(e) for e in STATE.log if sub in e["path"] + "?" + e["query"]]
            counts = {}
            for e in log:
                k = "%s %s %s" % (e["method"], e["path"], "watch" if e["watch"] else "get")
                counts[k] = counts.get(k, 0) + 1
            return self.send(200, {"counts": counts, "log": log})
        if u.path == "/faults":
            with STATE.lock:
                return self.send(200, {"faults": [dict(f) for f in STATE.faults]})
        if u.path == "/streams":
            with STATE.lock:
                return self.send(200, {"streams": [{"id": s.entry["id"], "target": s.target, "state": s.state,
                                                    "events": s.entry["events"]} for s in STATE.streams]})
        if u.path == "/time":
            return self.send(200, {"now": now()})
        return self.send(404, {"error": "no such path"})

    def do_POST(self):
        u = urlsplit(self.path)
        try:
            body = self.body()
        except ValueError as e:
            return self.send(400, {"error": "bad JSON: %s" % e})
        if u.path == "/fault":
            specs = body.get("faults", body) if isinstance(body, dict) else body
            if isinstance(specs, dict):
                specs = [specs]
            try:
                ids = [STATE.add_fault(s) for s in specs]
            except (ValueError, TypeError) as e:
                return self.send(400, {"error": str(e)})
            return self.send(200, {"ids": ids})
        if u.path == "/tokens":
            valid = body.get("valid") if isinstance(body, dict) else None
            STATE.valid_tokens = set(valid) if valid else None
            return self.send(200, {"ok": True})
        if u.path == "/release":
            with STATE.lock:
                streams = list(STATE.streams)
            for st in streams:
                st.released.set()
            return self.send(200, {"ok": True})
        if u.path == "/reset":
            STATE.reset()
            return self.send(200, {"ok": True})
        return self.send(404, {"error": "no such path"})


# ---- start ----

def read_env(cluster_dir):
    env = {}
    with open(os.path.join(cluster_dir, "env")) as f:
        for line in f:
            m = re.match(r"^export ([A-Za-z0-9_]+)=(.*)$", line.rstrip("\n"))
            if m:
                env[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
    return env


def serving_context(ca, ca_key):
    """A certificate for 127.0.0.1 signed by the test CA, loaded and then removed from disk."""
    d = tempfile.mkdtemp(prefix="kinformer-proxy-")
    try:
        key, csr, crt, ext = (os.path.join(d, n) for n in ("key.pem", "csr.pem", "crt.pem", "ext.cnf"))
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
        run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-subj", "/CN=kinformer-fault-proxy", "-out", csr)
        run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", "0x" + os.urandom(12).hex(),
            "-sha256", "-days", "2", "-extfile", ext, "-out", crt)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    global SERVER_CTX, CLIENT_CTX, UPSTREAM
    ap = argparse.ArgumentParser(description="fault-injecting proxy for kinformer's specs")
    ap.add_argument("--cluster-dir", default=os.environ.get("KINFORMER_CLUSTER_DIR", ".cluster"))
    ap.add_argument("--max-seconds", type=float, default=1800, help="exit after this long")
    args = ap.parse_args()
    env = read_env(args.cluster_dir)
    server = urlsplit(env["KINFORMER_SERVER"])
    UPSTREAM = (server.hostname, server.port or 443)

    SERVER_CTX = serving_context(env["KINFORMER_CA"], env["KINFORMER_CA_KEY"])
    CLIENT_CTX = ssl.create_default_context(cafile=env["KINFORMER_CA"])
    CLIENT_CTX.load_cert_chain(env["KINFORMER_ADMIN_CERT"], env["KINFORMER_ADMIN_KEY"])
    CLIENT_CTX.set_alpn_protocols(["http/1.1"])

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    threading.Thread(target=accept_loop, args=(lsock,), daemon=True).start()

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()

    print("PROXY %d %d %d" % (lsock.getsockname()[1], control.server_address[1], os.getpid()), flush=True)
    # never outlive the spec that started us
    parent = os.getppid()
    deadline = time.monotonic() + args.max_seconds
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
