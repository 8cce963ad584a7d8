#!/usr/bin/env python3
"""The benchmark runner: every peer in turn on each workload, several times,
medians, one Markdown table. See bench/README.md.

  python3 bench/run.py [--runs 3] [--quick] [--smoke] [--only W1,W2] [--peers a,b]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.environ.get("KINFORMER_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kinformer"))
BIN = os.path.join(HERE, "bin")
# W3 and W4 run on the local control plane (make cluster, or the one make test starts)
CLUSTER = os.environ.get("KINFORMER_CLUSTER_DIR", os.path.join(ROOT, ".cluster"))


def lua_env():
    env = dict(os.environ)
    env["LUA_PATH"] = f"{ROOT}/lua/?.lua;{ROOT}/lua/?/init.lua;;"
    env["LUA_CPATH"] = f"{ROOT}/lua/?.so;;"
    return env


def peers():
    """name -> function(kubeconfig, kind, namespace, events, handler, extra) -> argv"""
    cargo_target = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "cargo-target"))
    venv = os.path.join(CACHE, "bench-venv")

    def kinformer(store_only=False):
        def argv(kc, kind, ns, events, handler, extra):
            a = ["lua5.4", os.path.join(HERE, "peers/kinformer/peer.lua"), "--kubeconfig", kc, "--kind", kind,
                 "--events", str(events), "--handler", "false" if store_only or not handler else "true"]
            if ns:
                a += ["--namespace", ns]
            return a + extra
        return argv

    def client_go(mode):
        def argv(kc, kind, ns, events, handler, extra):
            a = [os.path.join(BIN, "client-go-peer"), "-mode", mode, "-kubeconfig", kc, "-kind", kind,
                 "-events", str(events), "-handler=" + ("true" if handler else "false")]
            if ns:
                a += ["-namespace", ns]
            return a + [x.replace("--", "-", 1) if x.startswith("--") else x for x in extra]
        return argv

    def dashed(prog):
        def argv(kc, kind, ns, events, handler, extra):
            a = prog + ["--kubeconfig", kc, "--kind", kind, "--events", str(events),
                        "--handler", "true" if handler else "false"]
            if ns:
                a += ["--namespace", ns]
            return a + extra
        return argv

    return {
        "kinformer": kinformer(),
        "kinformer store-only": kinformer(store_only=True),
        "client-go dynamic": client_go("dynamic"),
        "client-go typed": client_go("typed"),
        "kube-rs": dashed([os.path.join(cargo_target, "release", "kube-rs-peer")]),
        "python": dashed([os.path.join(venv, "bin", "python"), os.path.join(HERE, "peers/python/peer.py")]),
    }


def run_peer(argv, timeout, env=None):
    """Runs a peer; returns its JSON lines by phase, and its TCP connection count seen while idle."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or lua_env())
    phases = {}
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise RuntimeError(f"{argv[0]} timed out; stderr: {err[-400:]}")
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                d = json.loads(line)
                phases[d.get("phase")] = d
            except ValueError:
                pass
    if p.returncode != 0 or "synced" not in phases:
        raise RuntimeError(f"{' '.join(argv[:3])}... exited {p.returncode}; stderr: {err[-600:]}")
    return phases


class Replay:
    def __init__(self, objects, events, kind):
        self.dir = tempfile.mkdtemp(prefix="replay")
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.p = subprocess.Popen([os.path.join(BIN, "replay"), "-objects", str(objects), "-events", str(events),
                                   "-kind", kind, "-kubeconfig-out", self.kubeconfig],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("REPLAY"):
            raise RuntimeError("the replay server did not start: " + self.p.stderr.read()[-400:])

    def cpu_s(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def w1_sync(cfg, names, P):
    """W1: N objects listed: time to synced, peak RSS, RSS per cached object."""
    n, kind = cfg["w1_objects"], "pods"
    rows = {}
    for name in names:
        times, hwms, per = [], [], []
        for _ in range(cfg["runs"]):
            base = Replay(0, 0, kind)
            try:
                empty = run_peer(P[name](base.kubeconfig, kind, "default", 0, True, []), 300)
            finally:
                base.close()
            rp = Replay(n, 0, kind)
            try:
                full = run_peer(P[name](rp.kubeconfig, kind, "default", 0, True, []), 1800)
            finally:
                rp.close()
            times.append(full["synced"]["t"])
            hwms.append(full["synced"]["hwm_kb"])
            per.append((full["synced"]["rss_kb"] - empty["synced"]["rss_kb"]) * 1024 / max(1, n))
        rows[name] = {"sync_s": median(times), "peak_rss_mb": median(hwms) / 1024, "bytes_per_obj": median(per)}
        print(f"  W1 {name}: {rows[name]}", file=sys.stderr)
    return rows


def w2_stream(cfg, names, P):
    """W2: M MODIFIED events after sync: events per second, CPU seconds per 100,000 events."""
    n, m, kind = cfg["w2_objects"], cfg["w2_events"], "configmaps"
    rows = {}
    for name in names:
        rates, cpus = [], []
        for _ in range(cfg["runs"]):
            rp = Replay(n, m, kind)
            try:
                ph = run_peer(P[name](rp.kubeconfig, kind, "default", m, True, []), 1800)
            finally:
                rp.close()
            done = ph.get("done")
            if not done:
                raise RuntimeError(f"{name} did not finish W2")
            rates.append(done["events"] / done["t"])
            cpus.append((done["cpu_s"] - ph["synced"]["cpu_s"]) / done["events"] * 100000)
        rows[name] = {"events_per_s": median(rates), "cpu_s_per_100k": median(cpus)}
        print(f"  W2 {name}: {rows[name]}", file=sys.stderr)
    return rows


def kubectl(args, kc):
    return subprocess.run([os.path.join(CLUSTER, "bin/kubectl"), "--kubeconfig", kc] + args,
                          capture_output=True, text=True)


def w3_real(cfg, names, P):
    """W3: N ConfigMaps on the local control plane: time to synced and RSS."""
    kc = os.path.join(CLUSTER, "kubeconfig")
    n, ns = cfg["w3_objects"], "bench-w3"
    kubectl(["create", "namespace", ns], kc)
    have = kubectl(["get", "configmaps", "-n", ns, "--no-headers"], kc).stdout.count("\n")
    if have < n:
        data = "x" * 900
        items = [{"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": f"cm-{i:05d}", "namespace": ns, "labels": {"app": "bench"}},
                  "data": {"payload": data}} for i in range(have, n)]
        for i in range(0, len(items), 500):
            doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": items[i:i + 500]})
            r = subprocess.run([os.path.join(CLUSTER, "bin/kubectl"), "--kubeconfig", kc, "create", "-f", "-"],
                               input=doc, capture_output=True, text=True)
            if r.returncode != 0 and "AlreadyExists" not in r.stderr:
                raise RuntimeError("W3 setup: " + r.stderr[-300:])
    rows = {}
    for name in names:
        times, rss = [], []
        for _ in range(cfg["runs"]):
            ph = run_peer(P[name](kc, "configmaps", ns, 0, True, []), 600)
            times.append(ph["synced"]["t"])
            rss.append(ph["synced"]["rss_kb"])
        rows[name] = {"sync_s": median(times), "rss_mb": median(rss) / 1024}
        print(f"  W3 {name}: {rows[name]}", file=sys.stderr)
    return rows


def tcp_connections(pid, port):
    count = 0
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                remote, state, inode = parts[2], parts[3], parts[9]
                if inode in inodes and state == "01" and int(remote.split(":")[1], 16) == port:
                    count += 1
    return count


def w4_breadth(cfg, names, P):
    """W4: one informer per preferred resource, idle: CPU used, connections open."""
    kc = os.path.join(CLUSTER, "kubeconfig")
    with open(os.path.join(CLUSTER, "env")) as f:
        port = int([l for l in f if l.startswith("export KINFORMER_SERVER=")][0].rsplit(":", 1)[1])
    rows = {}
    for name in names:
        argv = P[name](kc, "configmaps", None, 0, True, ["--all-resources", "--idle", str(cfg["w4_idle"])])
        cpus, conn_counts, informers = [], [], None
        for _ in range(cfg["runs"]):
            # stderr to a file: a peer that reports much (errors while idle) must not fill a pipe nobody reads
            errf = tempfile.TemporaryFile(mode="w+")
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, text=True, env=lua_env())
            conns = None
            out_lines = []
            while True:
                line = p.stdout.readline()
                if not line:
                    break
                out_lines.append(line)
                if '"synced"' in line:
                    time.sleep(min(5, cfg["w4_idle"] / 2))
                    conns = tcp_connections(p.pid, port)
            p.wait()
            phases = {}
            for line in out_lines:
                try:
                    d = json.loads(line)
                    phases[d["phase"]] = d
                except ValueError:
                    pass
            errf.seek(0)
            err_text = errf.read()
            errf.close()
            if "idle" not in phases:
                raise RuntimeError(f"{name} did not finish W4: {err_text[-400:]}")
            informers = phases["idle"]["informers"]
            cpus.append(phases["idle"]["cpu_s"])
            conn_counts.append(conns)
        rows[name] = {"informers": informers, "idle_cpu_s": median(cpus), "connections": median(conn_counts)}
        print(f"  W4 {name}: {rows[name]}", file=sys.stderr)
    return rows


def fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def table(results, names):
    cols = [("W1", "sync_s", "W1 sync s", True), ("W1", "peak_rss_mb", "W1 peak RSS MB", True),
            ("W1", "bytes_per_obj", "W1 bytes/object", True), ("W2", "events_per_s", "W2 events/s", False),
            ("W2", "cpu_s_per_100k", "W2 CPU s/100k", True), ("W3", "sync_s", "W3 sync s", True),
            ("W3", "rss_mb", "W3 RSS MB", True), ("W4", "idle_cpu_s", "W4 idle CPU s", True),
            ("W4", "connections", "W4 connections", True)]
    cols = [c for c in cols if c[0] in results]
    lines = ["| peer | " + " | ".join(c[2] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in names:
        cells = [fmt(results[w].get(name, {}).get(k), 3 if k == "idle_cpu_s" else 2) for w, k, _, _ in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("kinformer's ratio to each peer (below 1 is better for time, memory and CPU; above 1 for events/s):")
    lines.append("")
    lines.append("| kinformer vs | " + " | ".join(c[2] for c in cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for name in names:
        if name.startswith("kinformer"):
            continue
        cells = []
        for w, k, _, _ in cols:
            ours = results[w].get("kinformer", {}).get(k)
            theirs = results[w].get(name, {}).get(k)
            cells.append(fmt(ours / theirs, 2) + "x" if ours is not None and theirs else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny workloads, one run: the harness works")
    ap.add_argument("--only", default="W1,W2,W3,W4")
    ap.add_argument("--peers", default="")
    args = ap.parse_args()
    P = peers()
    names = [n for n in P if not args.peers or n in args.peers.split(",")]
    cfg = {"runs": args.runs, "w1_objects": 100000, "w2_objects": 1000, "w2_events": 200000,
           "w3_objects": 10000, "w4_idle": 60}
    if args.smoke:
        cfg.update(runs=1, w1_objects=20, w2_objects=10, w2_events=50, w3_objects=20, w4_idle=2)
    work = {"W1": w1_sync, "W2": w2_stream, "W3": w3_real, "W4": w4_breadth}
    results = {}
    started = time.time()
    for w in args.only.split(","):
        print(f"{w}: {work[w].__doc__}", file=sys.stderr)
        results[w] = work[w](cfg, names, P)
    md = ["# kinformer benchmark", "",
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"{cfg['runs']} runs each, medians; {int(time.time() - started)} s in all.", "",
          table(results, names), ""]
    text = "\n".join(md)
    if not args.smoke:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", "latest.md"), "w") as f:
            f.write(text)
    print(text)
    cg = "client-go dynamic"

    def ratio(w, k):
        try:
            return results[w]["kinformer"][k] / results[w][cg][k]
        except (KeyError, TypeError, ZeroDivisionError):
            return float("nan")
    print(f"memory_per_object={ratio('W1', 'bytes_per_obj'):.2f} sync_time={ratio('W1', 'sync_s'):.2f} "
          f"events_per_s={ratio('W2', 'events_per_s'):.2f}")


if __name__ == "__main__":
    main()
