#!/usr/bin/env python3
"""Where the governed gateway waits on locks under load.

Starts the mock provider and the governed gateway of gateway_bench.py (virtual key, team
budget, key and team rate limits, audit log: every request takes the budget, rate-limit
and concurrency counters of the same key and team, the worst case for their locks), then
for 1 connection (the baseline: nothing to contend with) and for --conns connections
(default 64) runs closed-loop load while `perf record` samples the gateway's CPU time with
call stacks. Reports throughput, CPU per request, the share of the gateway's samples spent
in a contended lock (std's futex mutex and rwlock slow paths, parking_lot's, the futex
system call: idle worker threads parking count too, so this is an upper bound), attributed
to the innermost sluice function on the stack, and the share spent in the budget and
rate-limit counters at all.

Usage:  python3 tests/bench/lock_profile.py [--secs 5] [--conns 64] [--no-build]
Needs `perf` (linux-perf); software clock sampling, so it works without hardware counters.
"""

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_bench as gb  # noqa: E402

# Frames that mean "waiting for a lock someone else holds".
CONTENDED = re.compile(
    r"lock_contended|futex::Mutex::lock|read_contended|write_contended|lock_slow|"
    r"parking_lot.*(lock_slow|park)|syscall.*futex|futex_wait|__lll_lock_wait")
OURS = re.compile(r"sluice_(gateway|shared)::")
# Frames of the budget and rate-limit counters (admission and settlement).
COUNTERS = re.compile(r"sluice_gateway::governance::(admit|limits|budget|counters)")


def profile(oha_bin, gov, key, secs, conns, out_dir):
    data = Path(out_dir) / f"perf-{conns}.data"
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "499", "--call-graph",
                             "dwarf,32768", "-p", str(gov.proc.pid), "-o", str(data), "--", "sleep",
                             str(secs + 1)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c0 = gov.cpu_seconds()
    r = gb.oha(oha_bin, gov.url + "/v1/chat/completions", secs, conns=conns, key=key)
    c1 = gov.cpu_seconds()
    perf.wait()
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym"], capture_output=True,
                            text=True).stdout
    samples = contended = counters = 0
    sites = collections.Counter()
    for stack in script.split("\n\n"):
        # Each frame is "ADDRESS SYMBOL", innermost first.
        frames = [l.strip().partition(" ")[2] for l in stack.splitlines() if l.strip()]
        if not frames:
            continue
        samples += 1
        if any(COUNTERS.search(f) for f in frames):
            counters += 1
        hit = next((i for i, f in enumerate(frames) if CONTENDED.search(f)), None)
        if hit is None:
            continue
        contended += 1
        site = next((f for f in frames[hit:] if OURS.search(f)), "(outside sluice)")
        sites[re.sub(r"\s*\(inlined\)$", "", site)[:160]] += 1
    served = max(r["rps"] * secs, 1)
    return {"conns": conns, "rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "cpu_us_per_req": (c1 - c0) * 1e6 / served, "samples": samples, "contended": contended,
            "share": contended / samples if samples else float("nan"),
            "counters_share": counters / samples if samples else float("nan"), "sites": sites.most_common(8)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        gb.build()
    oha_bin = gb.ensure_oha()
    tmp = tempfile.mkdtemp()
    mock = gb.Server([str(gb.RELEASE / "sluice-mock-provider"), "--listen", "127.0.0.1:0"])
    cfg = Path(tmp) / "governed.toml"
    cfg.write_text(gb.governed_config(mock.url, Path(tmp) / "bench.db"))
    gov = gb.Server([str(gb.RELEASE / "sluice-gateway"), "serve", "--config", str(cfg)],
                    env={"BENCH_KEY": "bench-key", "BENCH_ADMIN": gb.ADMIN_TOKEN})
    try:
        key = gb.bootstrap(gov.url)
        gb.oha(oha_bin, gov.url + "/v1/chat/completions", 2, rate=500, conns=16, key=key)
        runs = [profile(oha_bin, gov, key, args.secs, conns, tmp) for conns in (1, args.conns)]
    finally:
        gov.stop()
        mock.stop()
    m = gb.machine()
    print(f"## Lock contention in the governed gateway — {m['date']}\n")
    print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, {m['rustc']}. "
          "Load generator, mock provider and gateway share these cores.\n")
    print("| connections | rps | p50 ms | p99 ms | CPU µs/request | samples | in a contended lock "
          "| in the budget and limit counters |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['conns']} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
              f"{r['cpu_us_per_req']:.1f} | {r['samples']} | {r['share'] * 100:.2f} % | "
              f"{r['counters_share'] * 100:.2f} % |")
    base, loaded = runs
    print(f"\nContended share at {loaded['conns']} connections vs 1: "
          f"{loaded['share'] * 100:.2f} % vs {base['share'] * 100:.2f} %.\n")
    for r in runs:
        print(f"Where, at {r['conns']} connection(s) (innermost sluice frame, samples):\n")
        for site, n in r["sites"] or [("(none)", 0)]:
            print(f"- {site}: {n}")
        print()


if __name__ == "__main__":
    main()
