#!/usr/bin/env python3
"""Benchmark of the probes (docs/performance.md).

1. `ably backlog` on a queue with 1,000 and with 1,000,000 waiting jobs, plus 100 active
   conversations mirrored by the sandbox into Redis and Postgres: wall time, and the Redis commands
   the probe sent (INFO stats total_commands_processed before and after, minus the INFO calls),
   which must not grow with the number of jobs.
2. `ably health` with 50 channels (occupancy of each, requests run concurrently): wall time next to
   the slowest single request (one `GET /channels/{id}` and one `GET /time`, timed alone).

Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (trust auth), as scripts/test starts.
Usage: scripts/bench/probes.py
"""

import json
import os
import statistics
import subprocess
import time
import urllib.request
import base64

from benchlib import BIN, PG_ADMIN, REDIS, ROOT, start_sandbox as sandbox_process

PG = "postgres://postgres@127.0.0.1:5432/broker_ops_bench"
PREFIX = "bench:probes:"


def rcli(*args, stdin=None):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", *args], input=stdin, capture_output=True, text=True, check=True).stdout


def commands_processed():
    for line in rcli("INFO", "stats").splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    raise SystemExit("no total_commands_processed")


def fill_queue(queue, jobs):
    key = f"{PREFIX}bull:{queue}:wait"
    rcli("DEL", key)
    batch = 10000
    lines = []
    for start in range(0, jobs, batch):
        ids = " ".join(str(i) for i in range(start, min(start + batch, jobs)))
        lines.append(f"LPUSH {key} {ids}")
    subprocess.run(["redis-cli", "-h", "127.0.0.1"], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    # The oldest job (id 0 at the tail) with its timestamp, 5 s ago.
    rcli("HSET", f"{PREFIX}bull:{queue}:0", "timestamp", str(int(time.time() * 1000) - 5000), "name", "message_created")
    rcli("HSET", f"{PREFIX}bull:{queue}:meta", "opts.maxLenEvents", "10000")
    assert int(rcli("LLEN", key)) == jobs


def timed(cmd, env):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, out


def start_sandbox(extra_env=None, args=()):
    return sandbox_process("--ai-latency", "fixed:5ms", *args, env=extra_env)


def backlog_bench():
    subprocess.run(["psql", PG_ADMIN, "-qc", "DROP DATABASE IF EXISTS broker_ops_bench"], check=True, capture_output=True)
    subprocess.run(["psql", PG_ADMIN, "-qc", "CREATE DATABASE broker_ops_bench"], check=True, capture_output=True)
    for k in rcli("--scan", "--pattern", f"{PREFIX}*").split():
        rcli("DEL", k)
    sb, env = start_sandbox({"REDIS_URL": REDIS, "DATABASE_URL": PG}, ("--mirror", "--key-prefix", PREFIX))
    try:
        smoke_env = dict(os.environ, **env)
        subprocess.run([BIN, "sla", "smoke", "--chats", "100", "--concurrency", "20", "--no-report", "--no-cleanup", "-q"],
                       env=smoke_env, check=True, capture_output=True)
        time.sleep(0.5)
        active = int(rcli("ZCARD", f"{PREFIX}chat:conversations:active"))
        probe_env = dict(os.environ, **env, REDIS_URL=REDIS, DATABASE_URL=PG, REDIS_KEY_PREFIX=PREFIX, BULL_PREFIX=f"{PREFIX}bull")
        rows = []
        for jobs in (1_000, 1_000_000):
            queue = f"q{jobs}"
            fill_queue(queue, jobs)
            walls, cmds = [], []
            for _ in range(5):
                before = commands_processed()
                wall, out = timed([BIN, "ably", "backlog", "--queue", queue, "--top", "100", "-o", "json"], probe_env)
                after = commands_processed()
                walls.append(wall)
                cmds.append(after - before - 1)  # the INFO of `after` counts itself
                doc = json.loads(out.stdout)
            waiting = next(c for c in doc["checks"] if c["name"] == "waiting")["value"]
            rows.append((jobs, statistics.median(walls), statistics.median(cmds), waiting, doc["state"]))
            rcli("DEL", f"{PREFIX}bull:{queue}:wait")
        print(f"backlog: {active} active conversations mirrored into Redis and Postgres; --top 100")
        for jobs, wall, cmds, waiting, state in rows:
            print(f"  {jobs:>9} waiting jobs: wall {wall * 1e3:.1f} ms (median of 5), Redis commands {cmds}, waiting={waiting:.0f}, state {state}")
    finally:
        sb.terminate()
        sb.wait()


def health_bench():
    sb, env = start_sandbox()
    try:
        key = env["ABLY_API_KEY"]
        auth = "Basic " + base64.b64encode(key.encode()).decode()
        for i in range(50):
            req = urllib.request.Request(f"{env['ABLY_REST_URL']}/channels/conversation:{i}/messages", data=b'{"data":1}',
                                         headers={"Authorization": auth, "Content-Type": "application/json"})
            urllib.request.urlopen(req).read()
        penv = dict(os.environ, **env)

        def single(path):
            t = []
            for _ in range(20):
                req = urllib.request.Request(f"{env['ABLY_REST_URL']}{path}", headers={"Authorization": auth})
                t0 = time.perf_counter()
                urllib.request.urlopen(req).read()
                t.append(time.perf_counter() - t0)
            return statistics.median(t)

        one_channel = single("/channels/conversation:1")
        one_time = single("/time")
        one_stats = single("/stats?limit=1000&unit=minute")
        walls = []
        for _ in range(10):
            wall, out = timed([BIN, "ably", "health", "--prefix", "conversation:", "--limit", "50", "--no-status", "-o", "json"], penv)
            walls.append(wall)
            doc = json.loads(out.stdout)
        n_occ = sum(1 for c in doc["checks"] if c["name"].startswith("occupancy"))
        # The empty probe: the same process with no occupancy checks, to separate startup from requests.
        base = [timed([BIN, "ably", "health", "--no-status", "-o", "json"], penv)[0] for _ in range(10)]
        print(f"health: {n_occ} channels; whole process median {statistics.median(walls) * 1e3:.1f} ms, "
              f"same probe without channels {statistics.median(base) * 1e3:.1f} ms; single requests (median of 20): "
              f"GET /channels/{{id}} {one_channel * 1e3:.2f} ms, GET /time {one_time * 1e3:.2f} ms, GET /stats {one_stats * 1e3:.2f} ms")
        print(f"  the 50 occupancy look-ups added {(statistics.median(walls) - statistics.median(base)) * 1e3:.1f} ms "
              f"(sequentially they would take about {50 * one_channel * 1e3:.1f} ms)")
    finally:
        sb.terminate()
        sb.wait()


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    backlog_bench()
    health_bench()


if __name__ == "__main__":
    main()
