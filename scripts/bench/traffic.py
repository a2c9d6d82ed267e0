#!/usr/bin/env python3
"""Benchmark of `broker-ops sandbox --traffic` (docs/performance.md): can one sandbox on this
machine carry a staging day's load, with the mirror on?

The sandbox (release build) runs simulated customers at RATE conversations a minute, each on
real-time (--ignore-flag, so that every one holds an SSE subscription and presence), 4 turns with
a mean think time of 28 s, so that over 1,000 subscriptions are held at once; it mirrors every
event into this machine's Redis and Postgres through its webhook. Every 5 s the script reads the
ground truth (GET /_sandbox/traffic) and the sandbox process's CPU time and RSS. Reported over the
steady part (after the ramp-up): conversations started a minute, streams held (min and max),
customers failed, the AI's reply P95 as the sandbox's ground truth has it (its own scheduling
included), mirror writes and errors, CPU and memory.

Bar: at least 600 started a minute with at least 1,000 streams held, no customer failed.

Usage: scripts/bench/traffic.py [--rate 600] [--seconds 300] [--think 25s]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

from benchlib import BIN, PG_ADMIN, REDIS, start_sandbox

DB = "bench_traffic"


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=600)
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--think", default="28s")
    a = ap.parse_args()
    subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {DB}", "-c", f"CREATE DATABASE {DB}"], check=True)
    db = PG_ADMIN.rsplit("/", 1)[0] + "/" + DB
    prefix = f"bench-traffic-{os.getpid()}:"
    env = {"DATABASE_URL": db, "REDIS_URL": REDIS, "REDIS_KEY_PREFIX": prefix, "BULL_PREFIX": prefix + "bull"}
    subprocess.run([BIN, "db", "migrate"], check=True, env=dict(os.environ, **env), stdout=subprocess.DEVNULL)
    p, exports = start_sandbox("--mirror", "--traffic", str(a.rate), "--traffic-turns", "4-4", "--traffic-think", a.think,
                               "--traffic-dashboard", "0", "--ignore-flag", "--seed", "1", env=env)
    base = exports["ABLY_REST_URL"]
    samples = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < a.seconds:
            time.sleep(5)
            t = get(base + "/_sandbox/traffic")
            samples.append((time.monotonic() - start, t["started"], t["held_streams"], t["failed"], t["active"],
                            cpu_seconds(p.pid), rss_mib(p.pid)))
            s = samples[-1]
            print(f"{s[0]:6.0f}s started {s[1]:6d} active {s[4]:5d} streams {s[2]:5d} failed {s[3]:3d} "
                  f"rss {s[6]:6.1f} MiB", file=sys.stderr)
        truth = get(base + "/_sandbox/ground-truth")
        traffic = get(base + "/_sandbox/traffic")
    finally:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            print("the sandbox did not stop within 30 s of SIGTERM", file=sys.stderr)
        # Leave the machine's Redis and Postgres as they were: every key under the run's prefix
        # (the mirror's streams and the queue's jobs), and the database.
        keys = subprocess.run(["redis-cli", "-u", REDIS, "--scan", "--pattern", prefix + "*"],
                              capture_output=True, text=True).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-u", REDIS, "del", *keys[i:i + 500]], stdout=subprocess.DEVNULL)
        subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {DB}"])
    # The steady part: the second half of the run (the ramp-up to a full house takes about one
    # conversation's life, ~2 minutes).
    steady = len(samples) // 2
    a0, a1 = samples[steady], samples[-1]
    minutes = (a1[0] - a0[0]) / 60
    rate = (a1[1] - a0[1]) / minutes
    cpu = (a1[5] - a0[5]) / (a1[0] - a0[0]) * 100
    held = [s[2] for s in samples[steady:]]
    out = {
        "rate_asked_per_min": a.rate,
        "steady_seconds": round(a1[0] - a0[0]),
        "started_per_min": round(rate, 1),
        "streams_held_min": min(held),
        "streams_held_max": max(held),
        "failed": a1[3],
        "failures": traffic["failures"],
        "reply_ms_p95_ground_truth": truth["reply_ms"]["p95"],
        "mirror": truth["mirror"],
        "cpu_percent_of_one_core": round(cpu),
        "rss_mib_end": round(a1[6], 1),
        "events": traffic["events"],
    }
    print(json.dumps(out, indent=2))
    ok = rate >= 0.95 * 600 and min(held) >= 1000 and a1[3] == 0
    print(f"bar (>= 600/min with >= 1,000 streams held, none failed): {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
