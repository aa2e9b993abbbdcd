#!/usr/bin/env python3
"""Sluice gateway benchmark.

Measures, in one run on loopback, latency (p50/p99) and throughput at fixed offered
loads (open-loop, with oha's latency correction so slow responses are not hidden) for:

  direct   client -> mock provider
  proxy    client -> sluice-bench-proxy (minimal hyper pass-through) -> mock: the floor
  gateway  client -> sluice-gateway (alias routing, weighted keys, health, metrics) -> mock
  gov      the same gateway with governance on: virtual-key auth, a team budget, key and
           team rate limits, cost, and every request in the hash-chained SQLite audit log
  guard    the routing gateway plus guardrails: every built-in detector (secrets, PII,
           injection) on the request and on the answer
  full     governance and guardrails together

then the highest throughput each sustains (closed loop, fixed connection count), the
streaming time-to-first-token overhead (gateway vs direct, sequential requests), and the
gateway's resident memory (and, with --soak-secs, its growth over a long run).

With --baseline-gateway PATH (another build of sluice-gateway, e.g. from an earlier
commit), two more paths run interleaved with the rest: gateway-base and gov-base, the
routing and governed configurations on that binary; the report then compares this build
with it, path by path, from the same rounds.

Usage:  python3 tests/bench/gateway_bench.py [--secs 10] [--rates 1000,5000] [--soak-secs 600]
                                             [--baseline-gateway PATH]
Prints a markdown report (and writes JSON to bench-results/). Builds release binaries and
installs the `oha` load generator from crates.io into target/bench-tools if it is missing.
"""

import argparse
import urllib.request
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "target" / "release"
OHA_VERSION = "1.16.0"
BODY = json.dumps({
    "model": "default",
    "messages": [{"role": "user", "content": "Say hello to the benchmark"}],
    "max_tokens": 16,
})


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build():
    print("building release binaries…", file=sys.stderr)
    sh(["cargo", "build", "--release", "--workspace", "--bins"], cwd=ROOT)


def ensure_oha():
    found = shutil.which("oha")
    local = ROOT / "target" / "bench-tools" / "bin" / "oha"
    if found:
        return found
    if not local.exists():
        print(f"installing oha {OHA_VERSION} into target/bench-tools…", file=sys.stderr)
        sh(["cargo", "install", "oha", "--version", OHA_VERSION, "--locked",
            "--root", str(ROOT / "target" / "bench-tools")])
    return str(local)


class Server:
    """A child process that prints `listening on http://ADDR` when ready."""

    def __init__(self, args, env=None):
        full_env = dict(os.environ, RUST_LOG="warn", **(env or {}))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=full_env, text=True)
        deadline = time.time() + 30
        line = ""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited early")
        else:
            raise RuntimeError(f"{args[0]} did not start: {line!r}")
        self.url = line.strip().removeprefix("listening on ")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for l in f:
                if l.startswith("VmRSS:"):
                    return int(l.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self):
        """User + system CPU time the process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def oha(bin_, url, secs, rate=None, conns=64, key="bench"):
    cmd = [bin_, "--no-tui", "--output-format", "json", "-z", f"{secs}s", "-c", str(conns),
           "-m", "POST", "-H", "content-type: application/json", "-H", f"authorization: Bearer {key}",
           "-d", BODY]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    summary = data["summary"]
    pct = data["latencyPercentiles"]
    codes = data.get("statusCodeDistribution", {})
    total = sum(codes.values()) or 1
    return {
        "rps": summary["requestsPerSec"],
        "p50_ms": pct["p50"] * 1000,
        "p99_ms": pct["p99"] * 1000,
        "ok_ratio": codes.get("200", 0) / total,
        "requests": total,
    }


def chat_request(url, body, key="bench"):
    """(host, port, the raw HTTP/1.1 bytes of a chat completion POST of `body`)."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {key}\r\ncontent-length: {len(payload)}\r\n\r\n")
    return host, int(port), head.encode() + payload


def connect(host, port):
    """A TCP connection with Nagle off, as an HTTP client's would be."""
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def ttfb_samples(url, model, n):
    """Sequential streaming requests; time from sending to the first content byte."""
    host, port, req = chat_request(url, {"model": model, "stream": True,
                                         "messages": [{"role": "user", "content": "stream please"}]})
    samples = []
    for _ in range(n):
        s = connect(host, port)
        t0 = time.perf_counter()
        s.sendall(req)
        buf = b""
        while b"Hello" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        samples.append((time.perf_counter() - t0) * 1000)
        s.close()
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p99_ms": samples[int(len(samples) * 0.99) - 1]}


def sequential_samples(url, model, n, key="bench"):
    """One client, one keep-alive connection, one request at a time (a developer's coding
    agent): per-request latency in µs, as the median and p99 of `n` requests."""
    host, port, req = chat_request(url, dict(json.loads(BODY), model=model), key)
    s = connect(host, port)
    samples = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError(f"{url} closed the connection")
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = next(int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")
                          if l.lower().startswith(b"content-length:"))
            while len(rest) < length:
                rest += s.recv(65536)
            samples.append((time.perf_counter() - t0) * 1e6)
    finally:
        s.close()
    samples.sort()
    return {"p50_us": statistics.median(samples), "p99_us": samples[int(len(samples) * 0.99) - 1]}


def overhead_buckets(url):
    """The gateway's own `sluice_gateway_overhead_seconds` histogram (request time minus
    upstream time), summed over its `api` labels: {upper bound in seconds: cumulative count}."""
    with urllib.request.urlopen(url + "/metrics") as r:
        text = r.read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("sluice_gateway_overhead_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_quantile(before, after, q):
    """Quantile (µs) of the samples recorded between two snapshots, interpolated linearly
    inside the bucket it falls in."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return float("nan")
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= q * total:
            if bound == float("inf"):
                return lower * 1e6
            return (lower + (bound - lower) * (q * total - below) / max(count - below, 1e-9)) * 1e6
        lower, below = bound, count
    return float("nan")


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for l in f:
                if l.startswith("model name"):
                    cpu = l.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "kernel": platform.release(),
            "rustc": rustc, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def gateway_config(mock_url):
    return f"""
[server]
listen = "127.0.0.1:0"

[providers.primary]
kind = "openai"
base_url = "{mock_url}/v1"
keys = [{{ value = "env:BENCH_KEY", weight = 3 }}, {{ value = "env:BENCH_KEY", weight = 1 }}]

[providers.secondary]
kind = "openai"
base_url = "{mock_url}/v1"
keys = [{{ value = "env:BENCH_KEY" }}]

[aliases.default]
targets = [{{ model = "primary/gpt-4o-mini", weight = 3 }}, {{ model = "secondary/gpt-4o-mini", weight = 1 }}]
fallbacks = ["secondary/gpt-4o-mini"]
"""


ADMIN_TOKEN = "bench-admin-token-0123456789"
# The paths that are a sluice-gateway (they expose its own overhead histogram); with a
# baseline binary, also BASELINES.
GATEWAYS = ("gateway", "gov", "guard", "full")
BASELINES = {"gateway-base": "gateway", "gov-base": "gov"}


def admin(base, path, body):
    req = urllib.request.Request(base + "/api/v1" + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def governed_config(mock_url, db):
    return gateway_config(mock_url) + f"""
[governance]
database = "{db}"
admin_token = "env:BENCH_ADMIN"
"""


def bootstrap(base):
    """An org, team and user, a key for the user, a budget and rate limits that the
    benchmark never reaches (so every check runs and none refuses)."""
    admin(base, "/orgs", {"name": "Bench", "id": "bench"})
    admin(base, "/teams", {"org_id": "bench", "name": "Load", "id": "load"})
    admin(base, "/users", {"team_id": "load", "email": "load@bench.test", "id": "loader"})
    key = admin(base, "/keys", {"name": "bench", "user_id": "loader"})
    admin(base, "/budgets", {"scope_kind": "team", "scope_id": "load", "window": "month", "limit_usd": 1e9})
    admin(base, "/limits", {"scope_kind": "key", "scope_id": key["key"]["id"], "rpm": 10_000_000, "concurrency": 100_000})
    admin(base, "/limits", {"scope_kind": "team", "scope_id": "load", "tpm": 1_000_000_000})
    return key["secret"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secs", type=int, default=10, help="seconds per load step")
    ap.add_argument("--rates", default="1000,5000", help="fixed offered loads (RPS)")
    ap.add_argument("--max-conns", type=int, default=64, help="connections for the max-throughput run")
    ap.add_argument("--max-rounds", type=int, default=3,
                    help="rounds of the max-throughput run; paths rotate and the median is reported")
    ap.add_argument("--repeats", type=int, default=5,
                    help="rounds per fixed load; paths run in a rotated order each round and the "
                         "median is reported (run-to-run noise on a small machine is tens of µs)")
    ap.add_argument("--ttft-samples", type=int, default=300)
    ap.add_argument("--seq-requests", type=int, default=1000,
                    help="requests per round of the one-client sequential run")
    ap.add_argument("--seq-rounds", type=int, default=3)
    ap.add_argument("--soak-secs", type=int, default=0, help="also run the gateway this long at the top rate and track RSS")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--baseline-gateway", type=Path,
                    help="another sluice-gateway binary to compare with (paths gateway-base, gov-base)")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]

    if not args.no_build:
        build()
    oha_bin = ensure_oha()
    tmp = tempfile.mkdtemp()
    cfg = Path(tmp) / "bench.toml"
    mock = Server([str(RELEASE / "sluice-mock-provider"), "--listen", "127.0.0.1:0"])
    cfg.write_text(gateway_config(mock.url))
    proxy = Server([str(RELEASE / "sluice-bench-proxy"), "--listen", "127.0.0.1:0", "--upstream", mock.url])
    gw = Server([str(RELEASE / "sluice-gateway"), "serve", "--config", str(cfg)], env={"BENCH_KEY": "bench-key"})
    gcfg = Path(tmp) / "governed.toml"
    gcfg.write_text(governed_config(mock.url, Path(tmp) / "bench.db"))
    gov = Server([str(RELEASE / "sluice-gateway"), "serve", "--config", str(gcfg)],
                 env={"BENCH_KEY": "bench-key", "BENCH_ADMIN": ADMIN_TOKEN})
    gov_key = bootstrap(gov.url)
    guarded = Path(tmp) / "guarded.toml"
    guarded.write_text(gateway_config(mock.url) + "\n[guardrails]\n")
    guard = Server([str(RELEASE / "sluice-gateway"), "serve", "--config", str(guarded)],
                   env={"BENCH_KEY": "bench-key"})
    fcfg = Path(tmp) / "full.toml"
    fcfg.write_text(governed_config(mock.url, Path(tmp) / "full.db") + "\n[guardrails]\n")
    full = Server([str(RELEASE / "sluice-gateway"), "serve", "--config", str(fcfg)],
                  env={"BENCH_KEY": "bench-key", "BENCH_ADMIN": ADMIN_TOKEN})
    full_key = bootstrap(full.url)
    targets = {"direct": mock.url, "proxy": proxy.url, "gateway": gw.url, "gov": gov.url, "guard": guard.url,
               "full": full.url}
    keys = {"gov": gov_key, "full": full_key}
    servers = {"direct": mock, "proxy": proxy, "gateway": gw, "gov": gov, "guard": guard, "full": full}
    gateways = list(GATEWAYS)
    if args.baseline_gateway:
        base_bin = str(args.baseline_gateway.resolve())
        servers["gateway-base"] = Server([base_bin, "serve", "--config", str(cfg)], env={"BENCH_KEY": "bench-key"})
        bcfg = Path(tmp) / "governed-base.toml"
        bcfg.write_text(governed_config(mock.url, Path(tmp) / "base.db"))
        servers["gov-base"] = Server([base_bin, "serve", "--config", str(bcfg)],
                                     env={"BENCH_KEY": "bench-key", "BENCH_ADMIN": ADMIN_TOKEN})
        keys["gov-base"] = bootstrap(servers["gov-base"].url)
        for name in BASELINES:
            targets[name] = servers[name].url
            gateways.append(name)
    results = {"machine": machine(), "fixed": {}, "max": {}, "sequential": {}, "ttft": {}, "rss_mb": {},
               "gateways": gateways, "baseline": str(args.baseline_gateway or "")}
    try:
        # Warm every path (connection pools, allocator) before measuring.
        for name, url in targets.items():
            oha(oha_bin, url + "/v1/chat/completions", 2, rate=500, conns=16, key=keys.get(name, "bench"))
        results["rss_mb"]["gateway_idle_warm"] = gw.rss_mb()
        names = list(targets)
        for rate in rates:
            runs = {name: [] for name in names}
            for round_ in range(args.repeats):
                order = names[round_ % len(names):] + names[:round_ % len(names)]
                for name in order:
                    own = name in gateways
                    before = overhead_buckets(targets[name]) if own else None
                    r = oha(oha_bin, targets[name] + "/v1/chat/completions", args.secs, rate=rate, conns=64,
                            key=keys.get(name, "bench"))
                    if own:
                        # What the gateway itself spends on each request (its own histogram),
                        # free of the extra loopback hop that any proxy pays.
                        after = overhead_buckets(targets[name])
                        r["own_p50_us"] = bucket_quantile(before, after, 0.5)
                        r["own_p99_us"] = bucket_quantile(before, after, 0.99)
                    runs[name].append(r)
                    print(f"  {rate:>6} rps  {name:<8} p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                          f"achieved {r['rps']:.0f} rps  ok {r['ok_ratio']:.4f}"
                          + (f"  in-gateway p50 {r['own_p50_us']:.1f} µs" if own else ""), file=sys.stderr)
            for name, rs in runs.items():
                med = {k: statistics.median(x[k] for x in rs) for k in ("rps", "p50_ms", "p99_ms")}
                med["ok_ratio"] = min(x["ok_ratio"] for x in rs)
                med["requests"] = sum(x["requests"] for x in rs)
                med["p50_runs_ms"] = [round(x["p50_ms"], 3) for x in rs]
                # Overhead over the direct path measured in the same round: rounds drift
                # together (the machine's state changes), so pairing them cancels most of it.
                med["p50_overhead_runs_us"] = [round((x["p50_ms"] - d["p50_ms"]) * 1000, 1)
                                               for x, d in zip(rs, runs["direct"])]
                med["p99_overhead_runs_us"] = [round((x["p99_ms"] - d["p99_ms"]) * 1000, 1)
                                               for x, d in zip(rs, runs["direct"])]
                med["p50_overhead_us"] = statistics.median(med["p50_overhead_runs_us"])
                med["p99_overhead_us"] = statistics.median(med["p99_overhead_runs_us"])
                # Over the minimal proxy of the same round: what the gateway adds beyond
                # the hop itself.
                med["p50_over_proxy_us"] = statistics.median(
                    (x["p50_ms"] - p["p50_ms"]) * 1000 for x, p in zip(rs, runs["proxy"]))
                if name in gateways:
                    med["own_p50_runs_us"] = [round(x["own_p50_us"], 1) for x in rs]
                    med["own_p50_us"] = statistics.median(x["own_p50_us"] for x in rs)
                    med["own_p99_us"] = statistics.median(x["own_p99_us"] for x in rs)
                results["fixed"].setdefault(str(rate), {})[name] = med
            results["rss_mb"][f"gateway_after_{rate}"] = gw.rss_mb()
        max_runs = {name: [] for name in names}
        for round_ in range(args.max_rounds):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                sut = servers[name]
                c0, m0 = sut.cpu_seconds(), mock.cpu_seconds()
                r = oha(oha_bin, targets[name] + "/v1/chat/completions", args.secs, conns=args.max_conns,
                        key=keys.get(name, "bench"))
                c1, m1 = sut.cpu_seconds(), mock.cpu_seconds()
                served = max(r["rps"] * args.secs, 1)
                # CPU per request of the process under test (for `direct`, the mock itself):
                # the steadiest efficiency figure on a machine whose cores are shared.
                r["cpu_us_per_req"] = (c1 - c0) * 1e6 / served
                r["mock_cpu_us_per_req"] = (m1 - m0) * 1e6 / served
                max_runs[name].append(r)
                print(f"  max      {name:<8} {r['rps']:.0f} rps  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                      f"cpu {r['cpu_us_per_req']:.1f} µs/req", file=sys.stderr)
        for name, rs in max_runs.items():
            med = {k: statistics.median(x[k] for x in rs)
                   for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "mock_cpu_us_per_req")}
            med["rps_runs"] = [round(x["rps"]) for x in rs]
            med["ratio_runs"] = [round(x["rps"] / p["rps"], 3) for x, p in zip(rs, max_runs["proxy"])]
            med["ratio_to_proxy"] = statistics.median(med["ratio_runs"])
            results["max"][name] = med
        results["rss_mb"]["gateway_after_max"] = gw.rss_mb()
        results["rss_mb"]["gov_after_max"] = gov.rss_mb()
        results["rss_mb"]["full_after_max"] = full.rss_mb()
        for name in BASELINES:
            if name in servers:
                results["rss_mb"][f"{name}_after_max"] = servers[name].rss_mb()
        # One client at a time (no concurrency): the latency a single developer sees.
        seq_runs = {name: [] for name in names}
        for round_ in range(args.seq_rounds):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                model = "gpt-4o-mini" if name in ("direct", "proxy") else "default"
                seq_runs[name].append(sequential_samples(targets[name], model, args.seq_requests,
                                                         keys.get(name, "bench")))
        for name, rs in seq_runs.items():
            results["sequential"][name] = {
                "p50_us": statistics.median(x["p50_us"] for x in rs),
                "p99_us": statistics.median(x["p99_us"] for x in rs),
                "overhead_runs_us": [round(x["p50_us"] - d["p50_us"], 1) for x, d in zip(rs, seq_runs["direct"])],
            }
            results["sequential"][name]["overhead_us"] = statistics.median(
                results["sequential"][name]["overhead_runs_us"])
        ttfb_samples(mock.url, "gpt-4o-mini", 20)
        ttfb_samples(gw.url, "default", 20)
        results["ttft"]["direct"] = ttfb_samples(mock.url, "gpt-4o-mini", args.ttft_samples)
        results["ttft"]["gateway"] = ttfb_samples(gw.url, "default", args.ttft_samples)
        if args.soak_secs:
            samples = []
            rate = max(rates)
            done = threading.Event()

            def sample():
                while not done.is_set():
                    samples.append((time.time(), gw.rss_mb()))
                    done.wait(5)

            t = threading.Thread(target=sample)
            t.start()
            r = oha(oha_bin, gw.url + "/v1/chat/completions", args.soak_secs, rate=rate, conns=64)
            done.set()
            t.join()
            t0 = samples[0][0] if samples else 0
            series = [(ts - t0, m) for ts, m in samples]
            results["soak_series_mb"] = [(round(t), round(m, 2)) for t, m in series]
            # Growth: the last minute against the first minute after a 60 s warm-up (the
            # working set at this load), each as its median, so that one sample taken
            # during a transient burst does not decide the result either way.
            warm = [(t, m) for t, m in series if t >= 60] or series
            first = [m for t, m in warm if t < warm[0][0] + 60]
            last = [m for t, m in warm if t > warm[-1][0] - 60]
            start, end = statistics.median(first), statistics.median(last)
            results["soak"] = {"secs": args.soak_secs, "rate": rate, "result": r,
                               "rss_start_mb": start, "rss_end_mb": end,
                               "rss_max_mb": max(m for _, m in warm),
                               "growth_pct": (end - start) / start * 100}
    finally:
        for s in reversed(list(servers.values())):
            s.stop()

    report(results, rates)
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"gateway-{int(time.time())}.json").write_text(json.dumps(results, indent=2))


def report(r, rates):
    m = r["machine"]
    print(f"## Gateway benchmark — {m['date']}\n")
    print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, {m['rustc']}. "
          "Load generator, mock provider and the system under test share these cores.\n")
    print("### Fixed offered load (open loop, latency-corrected; median of the rounds)\n")
    print("| offered rps | path | achieved rps | p50 ms | p99 ms | ok | p50 per round |")
    print("|---|---|---|---|---|---|---|")
    for rate in rates:
        for name, x in r["fixed"][str(rate)].items():
            rounds = ", ".join(f"{v:.3f}" for v in x.get("p50_runs_ms", []))
            print(f"| {rate} | {name} | {x['rps']:.0f} | {x['p50_ms']:.3f} | {x['p99_ms']:.3f} | {x['ok_ratio']:.4f} | {rounds} |")
    print("\n### Overhead over direct (p50, µs; median of the per-round differences)\n")
    print("Ratios are to the routing-only gateway (`gov / gateway` is governance's cost, `guard /")
    print("gateway` guardrails' own), and `full / gov` is what guardrails add on top of governance.\n")
    print("| offered rps | proxy | gateway | gov | gov / gateway | guard | guard / gateway | full | full / gateway "
          "| full / gov | gateway p99 overhead µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for rate in rates:
        f = r["fixed"][str(rate)]
        over = {name: f[name]["p50_overhead_us"] for name in f}
        ratio = lambda a, b: over[a] / over[b] if over[b] > 0 else float("nan")
        print(f"| {rate} | {over['proxy']:.0f} | {over['gateway']:.0f} | {over['gov']:.0f} | "
              f"{ratio('gov', 'gateway'):.2f} | {over['guard']:.0f} | {ratio('guard', 'gateway'):.2f} | "
              f"{over['full']:.0f} | {ratio('full', 'gateway'):.2f} | {ratio('full', 'gov'):.2f} | "
              f"{f['gateway']['p99_overhead_us']:.0f} |")
    print("\n### What the gateway adds beyond the hop, and what it spends itself (p50, µs)\n")
    print("Over the minimal proxy: median of the per-round differences. In-gateway: the gateway's own")
    print("`sluice_gateway_overhead_seconds` histogram over the same runs (request time minus upstream")
    print("time; read off its buckets), median of the rounds.\n")
    print("| offered rps | path | over the minimal proxy | in-gateway p50 | in-gateway p99 | in-gateway p50 per round |")
    print("|---|---|---|---|---|---|")
    for rate in rates:
        f = r["fixed"][str(rate)]
        for name in r["gateways"]:
            x = f[name]
            print(f"| {rate} | {name} | {x['p50_over_proxy_us']:.0f} | {x['own_p50_us']:.1f} | {x['own_p99_us']:.1f} | "
                  f"{', '.join(f'{v:.1f}' for v in x['own_p50_runs_us'])} |")
    print("\nPer-round p50 overheads (µs):\n")
    for rate in rates:
        f = r["fixed"][str(rate)]
        for name in ["proxy"] + r["gateways"]:
            print(f"- {rate} rps {name}: {', '.join(f'{v:.0f}' for v in f[name]['p50_overhead_runs_us'])}")
    print("\n### Highest throughput (closed loop; median of the rounds)\n")
    print("| path | rps | ratio to proxy | p50 ms | p99 ms | CPU µs/request (process under test) | mock CPU µs/request | rps per round |")
    print("|---|---|---|---|---|---|---|---|")
    for name, x in r["max"].items():
        print(f"| {name} | {x['rps']:.0f} | {x['ratio_to_proxy']:.2f} | {x['p50_ms']:.3f} | {x['p99_ms']:.3f} | "
              f"{x['cpu_us_per_req']:.1f} | {x['mock_cpu_us_per_req']:.1f} | {', '.join(str(v) for v in x['rps_runs'])} |")
    print("\n### One client, sequential requests on one keep-alive connection (µs; median of the rounds)\n")
    print("| path | p50 | p99 | p50 over direct | per round |")
    print("|---|---|---|---|---|")
    for name, x in r["sequential"].items():
        print(f"| {name} | {x['p50_us']:.0f} | {x['p99_us']:.0f} | {x['overhead_us']:.0f} | "
              f"{', '.join(f'{v:.0f}' for v in x['overhead_runs_us'])} |")
    if r.get("baseline"):
        compare(r, rates)
    t = r["ttft"]
    print("\n### Streaming time to first token (sequential)\n")
    print("| path | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, x in t.items():
        print(f"| {name} | {x['p50_ms']:.3f} | {x['p99_ms']:.3f} |")
    print(f"\nTTFT overhead p50: {(t['gateway']['p50_ms'] - t['direct']['p50_ms']) * 1000:.0f} µs\n")
    print("### Gateway memory (RSS)\n")
    for k, v in r["rss_mb"].items():
        print(f"- {k}: {v:.1f} MB")
    if "soak" in r:
        s = r["soak"]
        print(f"- soak {s['secs']} s at {s['rate']} rps: start {s['rss_start_mb']:.1f} MB, end {s['rss_end_mb']:.1f} MB, "
              f"max {s['rss_max_mb']:.1f} MB, growth {s['growth_pct']:+.1f} %; p50 {s['result']['p50_ms']:.3f} ms, "
              f"p99 {s['result']['p99_ms']:.3f} ms, ok {s['result']['ok_ratio']:.4f}")
        series = r.get("soak_series_mb", [])
        per_minute = [f"{m:.1f}" for t, m in series if t % 60 < 5]
        print(f"- RSS each minute (MB): {', '.join(per_minute)}")


def compare(r, rates):
    """This build against the baseline binary, from the same interleaved rounds."""
    print(f"\n### This build vs the baseline (`{r['baseline']}`), same run\n")
    print("Ratios are this build / baseline: above 1 is better for rps, worse for the others.\n")
    print("| measure | gateway | gateway-base | ratio | gov | gov-base | ratio |")
    print("|---|---|---|---|---|---|---|")

    def row(label, get, fmt="{:.1f}"):
        cells = []
        for new in ("gateway", "gov"):
            a, b = get(new), get(new + "-base")
            ratio = a / b if b else float("nan")
            cells += [fmt.format(a), fmt.format(b), f"{ratio:.3f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")

    row("max rps", lambda n: r["max"][n]["rps"], "{:.0f}")
    row("max CPU µs/request", lambda n: r["max"][n]["cpu_us_per_req"])
    row("max p50 ms", lambda n: r["max"][n]["p50_ms"], "{:.3f}")
    row("max p99 ms", lambda n: r["max"][n]["p99_ms"], "{:.3f}")
    for rate in rates:
        f = r["fixed"][str(rate)]
        row(f"{rate} rps p50 over direct µs", lambda n: f[n]["p50_overhead_us"])
        row(f"{rate} rps p99 over direct µs", lambda n: f[n]["p99_overhead_us"])
        row(f"{rate} rps in-gateway p50 µs", lambda n: f[n]["own_p50_us"])
    row("sequential p50 µs", lambda n: r["sequential"][n]["p50_us"], "{:.0f}")
    row("sequential p99 µs", lambda n: r["sequential"][n]["p99_us"], "{:.0f}")


if __name__ == "__main__":
    main()
