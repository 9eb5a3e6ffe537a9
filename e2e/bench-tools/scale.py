#!/usr/bin/env python3
"""One wave of the scale benchmark (driven by e2e/bench-scale; standard library only).

    scale.py wave --server URL --ca F --cert F --key F --kind ours|pravega --namespace NS
                  --first I --count N --pid PID --user NAME --audit FILE
                  --settle S --steady S [--metrics URL] [--label L] [--timeout S]

Creates N ZookeeperClusters (3 members each) named zk-I .. zk-(I+N-1) in NS, one POST after the
other, and watches StatefulSets, PodDisruptionBudgets and Services in NS: a cluster's children
exist when a StatefulSet, a PDB and two Services owned by it have been seen (the Pravega operator
creates a third Service, its admin server; it is not waited for). Latency of a cluster: from the
answer to its POST to the ADDED event of its last child. Meanwhile the operator's CPU (utime +
stime of /proc/PID/stat) and RSS (VmRSS) are sampled. After the wave and SETTLE seconds, one
steady window of STEADY seconds, once the StatefulSet controller has made all the pods: CPU, RSS, and the API requests of USER in the API server's
audit log, reads (get, list, watch) and writes (create, update, patch, delete) per minute.
Prints one tab-separated row (see HEADER). With --control-plane, also logs the CPU each
control-plane process and the whole machine used during the wave.
"""

import argparse
import calendar
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.request

HEADER = [
    "label", "operator", "clusters", "wave", "children_ok", "p50_s", "p95_s", "p99_s", "max_s",
    "wave_s", "wave_cpu_m", "wave_rss_peak_mib", "steady_cpu_m", "steady_rss_mib",
    "reads_per_min", "writes_per_min", "writes_by_resource", "queue_depth", "passes_per_cluster",
]
TICK = os.sysconf("SC_CLK_TCK")
READS = {"get", "list", "watch"}
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def log(*a):
    print(time.strftime("%H:%M:%S", time.gmtime()), "scale:", *a, file=sys.stderr, flush=True)


class Api:
    def __init__(self, server, ca, cert, key):
        u = urllib.request.urlparse(server)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)

    def conn(self, timeout=30):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def machine_ticks():
    """(busy, total) CPU ticks of the whole machine, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle, iowait
    return sum(v) - idle, sum(v)


def control_plane_ticks(pids):
    """CPU ticks of each control-plane process named in PIDS ("name=pid,..."); a process that is
    gone counts 0."""
    out = {}
    for item in filter(None, pids.split(",")):
        name, _, pid = item.partition("=")
        try:
            out[name] = cpu_ticks(int(pid))
        except (OSError, ValueError):
            out[name] = 0
    return out


def status_mib(pid, *keys):
    """Fields of /proc/PID/status given in kB (VmRSS, RssAnon, ...), in MiB, read at once."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in keys:
                found[key] = int(rest.split()[0]) / 1024.0
    return found


def rss_mib(pid):
    return status_mib(pid, "VmRSS").get("VmRSS", 0.0)


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class Children:
    """Watches the children kinds in one namespace; records when each cluster's set is complete."""

    PATHS = {
        "sts": "/apis/apps/v1/namespaces/{ns}/statefulsets",
        "pdb": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
        "svc": "/api/v1/namespaces/{ns}/services",
    }

    def __init__(self, api, ns):
        self.api, self.ns = api, ns
        self.lock = threading.Lock()
        self.seen = {}  # cluster -> {"sts": n, "pdb": n, "svc": n}
        self.done = {}  # cluster -> monotonic time of completion
        self.ready = threading.Event()
        self.started = 0

    def _owner(self, obj):
        for ref in obj.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == "ZookeeperCluster":
                return ref.get("name")
        return None

    def _add(self, kind, obj, now):
        owner = self._owner(obj)
        if owner is None:
            return
        with self.lock:
            s = self.seen.setdefault(owner, {"sts": set(), "pdb": set(), "svc": set()})
            s[kind].add(obj["metadata"]["name"])
            if owner not in self.done and s["sts"] and s["pdb"] and len(s["svc"]) >= 2:
                self.done[owner] = now

    def _watch(self, kind):
        path = self.PATHS[kind].format(ns=self.ns)
        while True:
            try:
                c = self.api.conn(timeout=3600)
                c.request("GET", path)
                r = c.getresponse()
                listing = json.loads(r.read())
                now = time.monotonic()
                for item in listing.get("items", []):
                    self._add(kind, item, now)
                rv = listing["metadata"]["resourceVersion"]
                c.request("GET", f"{path}?watch=1&allowWatchBookmarks=true&resourceVersion={rv}")
                r = c.getresponse()
                with self.lock:
                    self.started += 1
                    if self.started >= len(self.PATHS):
                        self.ready.set()
                while True:
                    line = r.readline()
                    if not line:
                        break
                    ev = json.loads(line)
                    if ev.get("type") == "ADDED":
                        self._add(kind, ev["object"], time.monotonic())
            except Exception as e:  # a dropped watch is listed and watched again
                log(f"watch of {kind} restarted: {e}")
                time.sleep(0.5)

    def start(self):
        for kind in self.PATHS:
            threading.Thread(target=self._watch, args=(kind,), daemon=True).start()
        if not self.ready.wait(60):
            raise SystemExit("the watches of the children did not start within 60 s")


def cluster_body(kind, ns, name):
    if kind == "ours":
        return {
            "apiVersion": "zookeeper.ensemble.dev/v1alpha1", "kind": "ZookeeperCluster",
            "metadata": {"name": name, "namespace": ns}, "spec": {"replicas": 3},
        }
    return {
        "apiVersion": "zookeeper.pravega.io/v1beta1", "kind": "ZookeeperCluster",
        "metadata": {"name": name, "namespace": ns}, "spec": {"replicas": 3},
    }


def cluster_path(kind, ns):
    if kind == "ours":
        return f"/apis/zookeeper.ensemble.dev/v1alpha1/namespaces/{ns}/zookeeperclusters"
    return f"/apis/zookeeper.pravega.io/v1beta1/namespaces/{ns}/zookeeperclusters"


class Sampler(threading.Thread):
    """Peak RSS of the operator while the wave lasts."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except OSError:
                return
            self.stop.wait(0.25)


def audit_counts(path, offset, user, t_from, t_to):
    """Requests of USER whose stage ResponseComplete (or ResponseStarted for watches) falls in
    [t_from, t_to] (unix seconds), counted once per audit ID."""
    reads = writes = 0
    by_resource = {}
    seen = set()
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            if ev.get("user", {}).get("username") != user:
                continue
            if ev.get("stage") not in ("ResponseComplete", "ResponseStarted", "Panic"):
                continue
            aid = ev.get("auditID")
            if aid in seen:
                continue
            ts = ev.get("stageTimestamp", "")
            try:
                t = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
                t += float("0" + ts[19:].rstrip("Z")) if len(ts) > 20 else 0.0
            except ValueError:
                continue
            if not (t_from <= t <= t_to):
                continue
            seen.add(aid)
            verb = ev.get("verb")
            if verb in READS:
                reads += 1
            elif verb in WRITES:
                writes += 1
                ref = ev.get("objectRef", {})
                res = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
                key = f"{verb}:{res}"
                by_resource[key] = by_resource.get(key, 0) + 1
    return reads, writes, by_resource


def count_pods(api, ns):
    c = api.conn()
    c.request("GET", f"/api/v1/namespaces/{ns}/pods?limit=1")
    listing = json.loads(c.getresponse().read())
    return len(listing.get("items", [])) + int(listing["metadata"].get("remainingItemCount") or 0)


def queue_depth(url):
    if not url:
        return "n/a"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except Exception as e:
        return f"error:{e}"
    for line in text.splitlines():
        if line.startswith("workqueue_depth{") and 'name="zookeepercluster"' in line:
            return line.rsplit(" ", 1)[1]
        if line.startswith("zookeeper_operator_reconcile_queue_depth "):
            return line.rsplit(" ", 1)[1]
    return "not exposed"


def passes(url):
    """Reconcile passes so far: this operator's zookeeper_operator_reconciles_total, the Pravega
    operator's controller_runtime_reconcile_total of its zookeepercluster controller (all results)."""
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except Exception:
        return None
    total = None
    for line in text.splitlines():
        if line.startswith("zookeeper_operator_reconciles_total") or (
            line.startswith("controller_runtime_reconcile_total{") and 'controller="zookeepercluster"' in line
        ):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


def wave(a):
    api = Api(a.server, a.ca, a.cert, a.key)
    children = Children(api, a.namespace)
    children.start()
    names = [f"zk-{i}" for i in range(a.first, a.first + a.count)]
    applied = {}
    sampler = Sampler(a.pid)
    sampler.start()
    p0 = passes(a.metrics)
    c0, t0 = cpu_ticks(a.pid), time.monotonic()
    cp0, m0 = control_plane_ticks(a.control_plane), machine_ticks()
    conn = api.conn()
    path = cluster_path(a.kind, a.namespace)
    for name in names:
        body = json.dumps(cluster_body(a.kind, a.namespace, name))
        for attempt in range(5):
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                text = r.read()
                break
            except (http.client.HTTPException, OSError):
                conn = api.conn()
        if r.status not in (200, 201):
            raise SystemExit(f"creating {name} failed: HTTP {r.status} {text[:300]!r}")
        applied[name] = time.monotonic()
    created_in = time.monotonic() - t0
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        with children.lock:
            if all(n in children.done for n in names):
                break
        time.sleep(0.1)
    t1 = time.monotonic()
    c1 = cpu_ticks(a.pid)
    cp1, m1 = control_plane_ticks(a.control_plane), machine_ticks()
    sampler.stop.set()
    with children.lock:
        lat = [children.done[n] - applied[n] for n in names if n in children.done]
    ok = len(lat)
    wave_s = t1 - t0
    wave_cpu = (c1 - c0) / TICK / wave_s * 1000.0
    log(f"{a.kind}: {a.count} created in {created_in:.1f}s, children of {ok}/{a.count} within {wave_s:.1f}s")
    # where the machine's CPU went during the wave: is the control plane or the operator the limit?
    cores = os.cpu_count() or 1
    busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * cores
    shares = ", ".join(f"{n} {(cp1[n] - cp0.get(n, 0)) / TICK / wave_s * 1000.0:.0f}m" for n in cp1)
    log(
        f"{a.kind}: CPU during the {wave_s:.1f}s wave: machine busy {busy:.2f} of {cores} cores; "
        f"{shares + ', ' if shares else ''}operator {wave_cpu:.0f}m, benchmark and others the rest"
    )

    # the StatefulSet controller creates the pods (Pending) at its own pace; the operators see
    # each one, so the steady window starts once all of them exist, and SETTLE seconds later
    # (with OrderedReady, the Pravega operator's default, it makes only the first pod of each
    # cluster, which never becomes Ready here: the count stops growing rather than reaching 3 each)
    want = 3 * (a.first + a.count - 1)
    pods_deadline = time.monotonic() + a.timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < pods_deadline:
        pods = count_pods(api, a.namespace)
        if pods >= want:
            break
        if pods != last:
            last, since = pods, time.monotonic()
        elif time.monotonic() - since >= 10:
            log(f"{a.kind}: {pods} pods (of 3 per cluster) exist, no more for 10 s")
            break
        time.sleep(2)
    else:
        log(f"{a.kind}: only {pods} of {want} pods exist after {a.timeout:.0f}s; measuring anyway")
    time.sleep(a.settle)
    offset = os.path.getsize(a.audit)
    s0, w0 = cpu_ticks(a.pid), time.time()
    m0 = time.monotonic()
    time.sleep(a.steady)
    s1, w1 = cpu_ticks(a.pid), time.time()
    steady_s = time.monotonic() - m0
    steady_cpu = (s1 - s0) / TICK / steady_s * 1000.0
    mem = status_mib(a.pid, "VmRSS", "RssAnon", "RssFile", "RssShmem")
    steady_rss = mem.pop("VmRSS", 0.0)
    parts = ", ".join(f"{k[3:].lower()} {v:.1f} MiB" for k, v in mem.items())
    log(f"{a.kind} ({a.label}) at {a.first + a.count - 1} clusters, steady RSS {steady_rss:.1f} MiB: {parts}")
    depth = queue_depth(a.metrics)
    p1 = passes(a.metrics)
    # passes from the wave's first POST to the end of the steady window, per cluster of the wave
    per_cluster = f"{(p1 - p0) / a.count:.1f}" if p0 is not None and p1 is not None else "n/a"
    time.sleep(2)  # the audit log is written in batches
    reads, writes, by_res = audit_counts(a.audit, offset, a.user, w0, w1)
    per_min = 60.0 / steady_s
    by_res_s = ",".join(f"{k}={v * per_min:.0f}" for k, v in sorted(by_res.items(), key=lambda kv: -kv[1])[:4]) or "-"
    row = [
        a.label, a.kind, str(a.first + a.count - 1), str(a.count), f"{ok}/{a.count}",
        f"{percentile(lat, 50):.2f}", f"{percentile(lat, 95):.2f}", f"{percentile(lat, 99):.2f}",
        f"{max(lat) if lat else float('nan'):.2f}", f"{wave_s:.1f}", f"{wave_cpu:.0f}",
        f"{sampler.peak:.1f}", f"{steady_cpu:.0f}", f"{steady_rss:.1f}",
        f"{reads * per_min:.0f}", f"{writes * per_min:.0f}", by_res_s, depth, per_cluster,
    ]
    print("\t".join(row), flush=True)


def report(path):
    """The rows of PATH as a table, then ours/Pravega for each label and size."""
    with open(path) as f:
        rows = [dict(zip(HEADER, line.rstrip("\n").split("\t"))) for line in f if line.strip()]
    rows = [r for r in rows if r.get("label") != "label"]
    for r in rows:  # CPU time the wave cost (its rate times its length: a faster wave has a higher rate)
        try:
            r["wave_cpu_s"] = f"{float(r['wave_cpu_m']) * float(r['wave_s']) / 1000.0:.1f}"
        except (KeyError, ValueError):
            r["wave_cpu_s"] = "-"
    cols = [
        ("label", "label"), ("operator", "operator"), ("clusters", "clusters"), ("children_ok", "children"),
        ("p50_s", "p50 s"), ("p95_s", "p95 s"), ("p99_s", "p99 s"), ("wave_s", "wave s"), ("wave_cpu_m", "wave CPU m"),
        ("wave_cpu_s", "wave CPU s"), ("wave_rss_peak_mib", "wave RSS MiB"), ("steady_cpu_m", "steady CPU m"), ("steady_rss_mib", "steady RSS MiB"),
        ("reads_per_min", "reads/min"), ("writes_per_min", "writes/min"), ("queue_depth", "queue"),
        ("passes_per_cluster", "passes/cluster"),
    ]
    widths = [max(len(h), *(len(r.get(k, "")) for r in rows)) if rows else len(h) for k, h in cols]
    print("  ".join(h.ljust(w) for (k, h), w in zip(cols, widths)))
    for r in rows:
        print("  ".join(r.get(k, "").ljust(w) for (k, h), w in zip(cols, widths)))
    pravega = {r["clusters"]: r for r in rows if r["operator"] == "pravega"}
    ratios = [("p50_s", "p50"), ("p99_s", "p99"), ("wave_cpu_m", "wave CPU"), ("wave_cpu_s", "wave CPU time"), ("steady_cpu_m", "steady CPU"),
              ("steady_rss_mib", "steady RSS"), ("reads_per_min", "reads/min"), ("writes_per_min", "writes/min")]
    out = []
    for r in rows:
        p = pravega.get(r["clusters"])
        if r["operator"] != "ours" or p is None:
            continue
        parts = []
        for k, h in ratios:
            try:
                a, b = float(r[k]), float(p[k])
                parts.append(f"{h} {a / b:.2f}" if b else f"{h} {r[k]}/0")
            except (KeyError, ValueError):
                parts.append(f"{h} -")
        out.append(f"  {r['label']} {r['clusters']} clusters: " + ", ".join(parts))
    if out:
        print("ratios ours/Pravega (below 1: ours uses less):")
        print("\n".join(out))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wave")
    for flag in ("server", "ca", "cert", "key", "namespace", "user", "audit"):
        w.add_argument("--" + flag, required=True)
    w.add_argument("--kind", choices=["ours", "pravega"], required=True)
    w.add_argument("--first", type=int, required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--pid", type=int, required=True)
    w.add_argument("--settle", type=float, default=15)
    w.add_argument("--steady", type=float, default=60)
    w.add_argument("--timeout", type=float, default=300)
    w.add_argument("--metrics", default="")
    w.add_argument("--label", default="run")
    w.add_argument("--control-plane", default="", help="name=pid,... of the control plane's processes")
    sub.add_parser("header")
    rep = sub.add_parser("report")
    rep.add_argument("results")
    a = p.parse_args()
    if a.cmd == "header":
        print("\t".join(HEADER))
    elif a.cmd == "report":
        report(a.results)
    else:
        wave(a)


if __name__ == "__main__":
    main()
