#!/usr/bin/env python3
"""Benchmark of `broker-ops monitor` (docs/performance.md): a sweep runs every probe at once, so
it should take as long as its slowest probe, not their sum.

The sandbox mirrors into the real Redis and Postgres, and a smoke of 40 chats first leaves a
window of traffic for the SLA probe to read. Each round runs, one after the other, in a new
order every round:
  - each probe alone, as an operator would run it: `ably health`, `ably backlog`,
    `sla report --since -15m --parallel 1`, `mirror canary` (whole process, start to exit);
  - `broker-ops monitor` (whole process: the lock, the rule state, the same four probes at once,
    the rules, the state saved), with its CPU time (user + system, from the kernel's account
    of the child).
Prints, per round, the monitor's wall time minus the slowest probe alone in that round (the bar:
at most 20 ms), their ratio, and the CPU time of a sweep.

Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (trust auth), as scripts/test
starts, and the release binary. Usage: scripts/bench/monitor.py [ROUNDS]
"""

import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import BIN, PG_ADMIN, REDIS, nearest_rank, start_sandbox, stop

DB = "broker_ops_bench_monitor"
PG = f"postgres://postgres@127.0.0.1:5432/{DB}"
PREFIX = "bench:monitor:"

PROBES = {
    "ably health": ["ably", "health"],
    "ably backlog": ["ably", "backlog"],
    # One partition, as the monitor's SLA probe runs it (a 15-minute window is small).
    "sla report": ["sla", "report", "--since", "-15m", "--parallel", "1"],
    "mirror canary": ["mirror", "canary"],
}


def timed(args, env):
    """Wall ms and CPU ms (user + system) of one run of the binary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([BIN, "-o", "json", *args], env=env, capture_output=True, text=True)
    wall = (time.perf_counter() - t) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000
    if not out.stdout.strip():
        raise SystemExit(f"{args}: no output (exit {out.returncode}): {out.stderr}")
    return wall, cpu, json.loads(out.stdout)


def cleanup():
    subprocess.run(["psql", "-q", PG_ADMIN, "-c", f"DROP DATABASE IF EXISTS {DB}"], check=True)
    keys = subprocess.run(["redis-cli", "-h", "127.0.0.1", "--scan", "--pattern", PREFIX + "*"],
                          capture_output=True, text=True).stdout.split()
    if keys:
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "DEL", *keys], capture_output=True)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    cleanup()
    subprocess.run(["psql", "-q", PG_ADMIN, "-c", f"CREATE DATABASE {DB}"], check=True)
    base_env = dict(os.environ, REDIS_URL=REDIS, DATABASE_URL=PG, REDIS_KEY_PREFIX=PREFIX)
    sb, env = start_sandbox("--mirror", "--key-prefix", PREFIX, "--ai-latency", "fixed:50ms", env=base_env)
    state = tempfile.mkdtemp(prefix="bench-monitor-")
    run_env = dict(base_env, **env, BROKER_OPS_STATE_DIR=state)
    rng = random.Random(7)
    over, ratio, cpu_sweep, inner = [], [], [], []
    alone = {name: [] for name in PROBES}
    slowest_name = {name: 0 for name in PROBES}
    try:
        seed = subprocess.run([BIN, "sla", "smoke", "--chats", "40", "--concurrency", "10", "--no-report"],
                              env=run_env, capture_output=True, text=True)
        assert seed.returncode == 0, seed.stdout + seed.stderr
        for _ in range(rounds):
            order = list(PROBES) + ["monitor"]
            rng.shuffle(order)
            walls, monitor = {}, None
            for name in order:
                if name == "monitor":
                    monitor = timed(["monitor", "--probe-timeout", "30s"], run_env)
                else:
                    walls[name] = timed(PROBES[name], run_env)[0]
                    alone[name].append(walls[name])
            wall, cpu, doc = monitor
            ran = [p["probe"] for p in doc["probes"] if p["status"] == "ran"]
            assert len(ran) == 4, f"every probe must run: {doc['probes']}"
            slowest = max(walls.values())
            slowest_name[max(walls, key=walls.get)] += 1
            over.append(wall - slowest)
            ratio.append(wall / slowest)
            cpu_sweep.append(cpu)
            inner.append(doc["elapsed_ms"] - max(p["elapsed_ms"] for p in doc["probes"]))
    finally:
        stop(sb)
        cleanup()
    print(f"rounds: {rounds}")
    for name, xs in alone.items():
        print(f"{name} alone (whole process): median {statistics.median(xs):.1f} ms, p95 {nearest_rank(xs, 95):.1f} ms")
    print("slowest alone, rounds: " + ", ".join(f"{n} {c}" for n, c in slowest_name.items()))
    print(f"monitor minus the slowest probe alone, same round: median {statistics.median(over):+.1f} ms, "
          f"p95 {nearest_rank(over, 95):+.1f} ms, max {max(over):+.1f} ms (bar: at most +20 ms)")
    print(f"ratio monitor / slowest probe alone (median): {statistics.median(ratio):.2f}")
    print(f"inside the monitor, run minus its slowest probe (opening Redis and Postgres once, lock, state, rules): "
          f"median {statistics.median(inner):.1f} ms, max {max(inner):.1f} ms")
    print(f"CPU per sweep (user + system, whole process): median {statistics.median(cpu_sweep):.1f} ms, "
          f"p95 {nearest_rank(cpu_sweep, 95):.1f} ms")


if __name__ == "__main__":
    main()
