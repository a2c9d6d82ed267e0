#!/usr/bin/env python3
"""Benchmark of `rollout observe` (docs/performance.md): 200 channels' occupancy against the
sandbox, the bar under 2 s.

A sandbox (release build, its own process) mirrors into a scratch database with the flag at
50 % and simulated customers (900 a minute, 8 turns with 5 s think times, so that they stay
live); once 450 messages have been sent (over 200 conversations), `rollout observe --sample 200` runs 5 times (whole
processes: the Postgres reads, the 200 occupancy requests at the default pace of 300 a second,
32 at once). Prints each wall time and the median.

Usage: scripts/bench/observe.py
"""

import json
import os
import statistics
import subprocess
import time
import urllib.request

from benchlib import BIN, PG_ADMIN, REDIS, start_sandbox

DB = "bench_observe"


def main():
    subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {DB}", "-c", f"CREATE DATABASE {DB}"], check=True)
    prefix = f"bench-observe-{os.getpid()}:"
    env = dict(os.environ, DATABASE_URL=PG_ADMIN.rsplit("/", 1)[0] + "/" + DB, REDIS_URL=REDIS,
               REDIS_KEY_PREFIX=prefix, BULL_PREFIX=prefix + "bull", USER="bench")
    subprocess.run([BIN, "db", "migrate"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([BIN, "rollout", "set", "--percent", "50", "--reason", "bench", "--yes"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    p, exports = start_sandbox("--mirror", "--traffic", "900", "--traffic-turns", "8-8", "--traffic-think", "5s",
                               "--seed", "1", env=env)
    env.update(exports)
    try:
        while True:
            with urllib.request.urlopen(exports["ABLY_REST_URL"] + "/_sandbox/traffic") as r:
                t = json.load(r)
            if t["events"]["messages"] >= 450:
                break
            time.sleep(1)
        times, last = [], None
        for _ in range(5):
            t0 = time.monotonic()
            out = subprocess.run([BIN, "-o", "json", "rollout", "observe", "--sample", "200"], env=env,
                                 capture_output=True, text=True)
            times.append(time.monotonic() - t0)
            last = json.loads(out.stdout)
        sampled = sum(c["value"] for c in last["checks"] if c["name"].endswith("_sampled"))
        print(json.dumps({"sampled": sampled, "state": last["state"], "seconds": [round(x, 3) for x in times],
                          "median_s": round(statistics.median(times), 3)}, indent=2))
        print(f"bar (200 channels under 2 s): {'met' if statistics.median(times) < 2 and sampled >= 200 else 'MISSED'}")
    finally:
        p.terminate()
        p.wait(timeout=30)
        keys = subprocess.run(["redis-cli", "-u", REDIS, "--scan", "--pattern", prefix + "*"],
                              capture_output=True, text=True).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-u", REDIS, "del", *keys[i:i + 500]], stdout=subprocess.DEVNULL)
        subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {DB}"])


if __name__ == "__main__":
    main()
