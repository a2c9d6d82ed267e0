#!/usr/bin/env python3
"""Accuracy of `sla smoke` when its own process is the bottleneck (issue 17; docs/performance.md).

The driver and `broker-ops sandbox` run as separate processes on this machine; the sandbox's AI
latency is lognormal:p50=40ms,p95=120ms (seed 7). Every run starts a fresh sandbox and measures
at once (cold: no warm-up), 400 chats at 20 and at 100 at once, three runs each, for each way of
running the driver:
  - plain: as a new user would;
  - pinned: driver and sandbox on different cores (`taskset -c 1` and `-c 0`);
  - busy: plain, while one busy-looping process per core competes for the CPU (a small or shared
    runner), which is where the driver must flag itself.
Each row compares the driver's reply P50 and P95 with the sandbox's ground truth (its own record
of when each reply was due; GET /_sandbox/ground-truth), and shows
the run's two flags beside it: the driver's saturation (its own scheduling lag and CPU) and the
path's queueing (what the way to and from the service added, by Ably's stamps on the echo and
the reply). The bar: within max(1 %, 2 ms) whenever the driver does
not flag itself; outside it, always flagged.

Usage: scripts/bench/smoke_accuracy.py [--runs 3] [--chats 400] [--concurrency 20,100]
"""

import argparse
import json
import os
import subprocess
import urllib.request

from benchlib import BIN, nearest_rank, start_sandbox, stop

LATENCY = "lognormal:p50=40ms,p95=120ms"


def hogs(n):
    """n processes that spin until killed."""
    return [subprocess.Popen(["python3", "-c", "while True: pass"]) for _ in range(n)]


def run(variant, chats, concurrency):
    pin = variant == "pinned"
    sb, env = start_sandbox("--ai-latency", LATENCY, "--seed", "7", prefix=("taskset", "-c", "0") if pin else ())
    load = hogs(os.cpu_count() or 1) if variant == "busy" else []
    try:
        cmd = [BIN, "sla", "smoke", "--chats", str(chats), "--concurrency", str(concurrency), "-o", "json",
               "--no-report", "--no-cleanup", "--reply-timeout", "60s"]
        if pin:
            cmd = ["taskset", "-c", "1", *cmd]
        out = subprocess.run(cmd, env=dict(os.environ, **env), capture_output=True, text=True)
        doc = json.loads(out.stdout)
        with urllib.request.urlopen(env["ABLY_REST_URL"] + "/_sandbox/ground-truth") as r:
            records = json.load(r)["records"]
    finally:
        for h in load:
            h.kill()
            h.wait()
        stop(sb)
    lat = [r["latency_us"] / 1000.0 for r in records if r["latency_us"] is not None]
    rows = []
    for name, p in (("p50", 50), ("p95", 95)):
        m, t = doc["reply_ms"][name], nearest_rank(lat, p)
        rows.append((name, m, t))
    return doc, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chats", type=int, default=400)
    ap.add_argument("--concurrency", default="20,100")
    ap.add_argument("--variants", default="plain,pinned,busy")
    a = ap.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit("build first: cargo build --release")
    print(f"{a.chats} chats per run, {LATENCY}, seed 7, a fresh sandbox per run (cold); bar max(1 %, 2 ms)")
    print(f"{'variant':<8} {'at once':>7} {'run':>3}  {'p50 driver/truth/diff':<26} {'p95 driver/truth/diff':<26} "
          f"{'lag p50/p99':>12} {'late/50':>7} {'cpu':>5} {'path mean/@p50/p95':>19}  flag              verdict")
    missed = 0
    for variant in a.variants.split(","):
        for c in [int(x) for x in a.concurrency.split(",")]:
            for i in range(a.runs):
                doc, rows = run(variant, a.chats, c)
                d, q = doc["driver"], doc.get("path") or {}
                outside = any(abs(m - t) > max(0.01 * t, 2.0) for _, m, t in rows)
                flags = [n for n, on in (("saturated", d["saturated"]), ("queued", q.get("queued"))) if on]
                flagged = bool(flags)
                verdict = "within bar" if not outside else ("outside, flagged" if flagged else "MISSED: outside, unflagged")
                missed += outside and not flagged
                cells = [f"{m:6.1f}/{t:6.1f}/{m - t:+5.1f}" for _, m, t in rows]
                print(f"{variant:<8} {c:>7} {i + 1:>3}  {cells[0]:<26} {cells[1]:<26} "
                      f"{d['lag_p50_ms']:>4.1f}/{d['lag_p99_ms']:>4.1f}ms {d.get('late_in_window', '-'):>7} "
                      f"{d['cpu_percent']:>4.0f}% {q.get('over_floor_mean_ms', 0):>5.1f}/{q.get('over_floor_at_p50_ms') or 0:>4.1f}/{q.get('over_floor_p95_ms', 0):>5.1f}ms  "
                      f"{'+'.join(flags) or '-':<17} {verdict}")
    print("bar MET" if missed == 0 else f"bar MISSED in {missed} run(s)")


if __name__ == "__main__":
    main()
