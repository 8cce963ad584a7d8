#!/usr/bin/env python3
"""kinformer benchmark peer: an informer written with the official `kubernetes` client
the way its users write one: list into a dict keyed by namespace/name, then
`watch.Watch().stream(...)` from the list's resourceVersion, applying events to the dict
and calling a handler. Objects are the client's model classes (the default
deserialization), not raw dicts.

CLI and output are shared by every peer (the bench runner parses them):
  --kubeconfig PATH --kind configmaps|pods [--namespace NS] [--events M]
  [--handler true|false] [--all-resources --idle S]
JSON lines on stdout: {"phase":"synced",...}, then {"phase":"done",...} after M
MODIFIED events, or {"phase":"idle",...} after the idle period.
"""
import time

START = time.monotonic()  # before the heavy imports: importing the client is part of its cost

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


def mem_kb():
    rss = hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def synced_line(count):
    rss, hwm = mem_kb()
    emit({"phase": "synced", "t": round(time.monotonic() - START, 6), "count": count,
          "rss_kb": rss, "hwm_kb": hwm, "cpu_s": round(cpu_s(), 6)})


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--kind", default="configmaps", choices=["configmaps", "pods"])
    p.add_argument("--namespace")
    p.add_argument("--events", type=int, default=0)
    p.add_argument("--handler", default="true", choices=["true", "false"])
    p.add_argument("--all-resources", action="store_true")
    p.add_argument("--idle", type=float, default=0.0)
    return p.parse_args()


class Informer:
    """list + watch into a dict, with an optional handler (typed API functions)."""

    def __init__(self, list_fn, kwargs, handler):
        self.list_fn = list_fn
        self.kwargs = kwargs
        self.handler = handler
        self.store = {}
        self.rv = None
        self.names = 0  # what the handler accumulates, so reading the name is not dead code

    def on_event(self, obj):
        # the handler: read the object's name
        self.names += len(obj.metadata.name)

    def relist(self):
        lst = self.list_fn(**self.kwargs)
        store = {}
        for obj in lst.items:
            m = obj.metadata
            store[f"{m.namespace}/{m.name}"] = obj
            if self.handler:
                self.on_event(obj)
        self.store = store
        self.rv = lst.metadata.resource_version

    def run(self, on_synced, on_update):
        """on_synced() once after the first list; on_update() after every MODIFIED."""
        self.relist()
        on_synced()
        while True:
            w = watch.Watch()
            try:
                for ev in w.stream(self.list_fn, resource_version=self.rv,
                                   allow_watch_bookmarks=True, **self.kwargs):
                    typ = ev["type"]
                    if typ == "BOOKMARK":
                        continue  # Watch.stream already moved its resource_version
                    obj = ev["object"]
                    m = obj.metadata
                    key = f"{m.namespace}/{m.name}"
                    if typ == "DELETED":
                        self.store.pop(key, None)
                    else:
                        self.store[key] = obj
                    if self.handler:
                        self.on_event(obj)
                    if typ == "MODIFIED":
                        on_update()
                if w.resource_version:
                    self.rv = w.resource_version
            except ApiException as e:
                if e.status != 410:
                    raise
                self.relist()  # resourceVersion too old: list again, then watch from there


def run_one(args, api_client):
    v1 = client.CoreV1Api(api_client)
    if args.kind == "configmaps":
        fn = v1.list_namespaced_config_map if args.namespace else v1.list_config_map_for_all_namespaces
    else:
        fn = v1.list_namespaced_pod if args.namespace else v1.list_pod_for_all_namespaces
    kwargs = {"namespace": args.namespace} if args.namespace else {}
    inf = Informer(fn, kwargs, args.handler == "true")
    state = {"t0": None, "n": 0}

    def on_synced():
        synced_line(len(inf.store))
        if args.events <= 0:
            sys.stdout.flush()
            os._exit(0)
        state["t0"] = time.monotonic()

    def on_update():
        state["n"] += 1
        if state["n"] == args.events:
            rss, hwm = mem_kb()
            emit({"phase": "done", "t": round(time.monotonic() - state["t0"], 6), "events": state["n"],
                  "rss_kb": rss, "hwm_kb": hwm, "cpu_s": round(cpu_s(), 6)})
            os._exit(0)

    inf.run(on_synced, on_update)


def run_all(args, api_client):
    """One informer (thread) per preferred resource that supports list and watch, with the
    client's DynamicClient, which is what the official client offers for arbitrary kinds."""
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.resource import Resource

    cache = os.path.join(tempfile.mkdtemp(prefix="peer-py-"), "discovery.json")
    dc = DynamicClient(api_client, cache_file=cache)
    resources = [r for kind_list in dc.resources for r in kind_list  # one list per kind
                 if type(r) is Resource and r.preferred and r.verbs  # not the *List pseudo-kinds
                 and "list" in r.verbs and "watch" in r.verbs]
    handler = args.handler == "true"
    stores = [dict() for _ in resources]
    ready = [threading.Event() for _ in resources]

    def informer(i, res):
        store = stores[i]
        names = 0
        while True:
            try:
                lst = res.get()
                store.clear()
                for item in lst.items:
                    m = item.metadata
                    store[f"{m.namespace}/{m.name}"] = item
                    if handler:
                        names += len(m.name)
                rv = lst.metadata.resourceVersion
                ready[i].set()
                while True:  # the watch ends when the server closes it; resume from rv
                    for ev in dc.watch(res, resource_version=rv, watcher=watch.Watch(),
                                       allow_watch_bookmarks=True):
                        if ev["type"] == "BOOKMARK":
                            rv = ev["raw_object"]["metadata"]["resourceVersion"]
                            continue
                        obj = ev["object"]
                        m = obj.metadata
                        key = f"{m.namespace}/{m.name}"
                        if ev["type"] == "DELETED":
                            store.pop(key, None)
                        else:
                            store[key] = obj
                        if handler:
                            names += len(m.name)
                        rv = m.resourceVersion
            except ApiException as e:
                if e.status != 410:  # 410: resourceVersion too old, list again at once
                    print(f"peer.py: {res.group_version}/{res.name}: {e.status} {e.reason}", file=sys.stderr)
                    time.sleep(1)
            except Exception as e:  # keep the informer alive, as an operator would
                print(f"peer.py: {res.group_version}/{res.name}: {e!r}", file=sys.stderr)
                time.sleep(1)

    for i, res in enumerate(resources):
        threading.Thread(target=informer, args=(i, res), daemon=True).start()
    for ev in ready:
        ev.wait()
    synced_line(sum(len(s) for s in stores))
    c0 = cpu_s()
    time.sleep(args.idle)
    rss, _ = mem_kb()
    emit({"phase": "idle", "t": args.idle, "informers": len(resources),
          "cpu_s": round(cpu_s() - c0, 6), "rss_kb": rss})
    os._exit(0)


def main():
    args = parse_args()
    api_client = config.new_client_from_config(config_file=args.kubeconfig)
    if args.all_resources:
        run_all(args, api_client)
    else:
        run_one(args, api_client)


if __name__ == "__main__":
    main()
