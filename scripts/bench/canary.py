#!/usr/bin/env python3
"""Benchmark of `broker-ops mirror canary` against the sandbox (docs/performance.md).

The sandbox mirrors through its webhook and receiver into the real Redis and Postgres. Each
round runs, one after the other:
  - `broker-ops mirror canary -o json`: the whole process, start to exit (wall), and the
    latencies it reports, compared with the sandbox's own record of the same message
    (`/_sandbox/mirror?id=`);
  - the peer: what an operator would script without broker-ops, in bash: `curl` publishes a
    message with a unique id, then `redis-cli XREVRANGE` and `psql` poll (every 10 ms) until the
    id is in both stores. Its wall time is measured the same way.
Prints the median and P95 of both, the ratio broker-ops / peer, the canary's error against the
sandbox's record, and its deliver leg (publish -> SSE subscriber). The peer does not subscribe:
the canary's subscriber leg is work the peer leaves out.

Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (trust auth), as scripts/test
starts, and the release binary. Usage: scripts/bench/canary.py [ROUNDS]
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid

from benchlib import BIN, PG_ADMIN, REDIS, start_sandbox, stop

DB = "broker_ops_bench_canary"
PG = f"postgres://postgres@127.0.0.1:5432/{DB}"
PREFIX = "bench:canary:"

PEER = r"""
set -eu
id="peer-canary-$(cat /proc/sys/kernel/random/uuid)"
curl -sf -o /dev/null -u "$ABLY_API_KEY" -H 'content-type: application/json' \
  -d "{\"id\":\"$id\",\"name\":\"broker-ops:canary\",\"data\":\"{}\",\"encoding\":\"json\"}" \
  "$ABLY_REST_URL/channels/conversation:broker-ops-canary/messages"
until redis-cli -h 127.0.0.1 XREVRANGE "${PREFIX}chat:events:broker-ops-canary" + - COUNT 200 | grep -qx "$id"; do sleep 0.01; done
until [ "$(psql -tAq "$PG" -c "SELECT EXISTS (SELECT 1 FROM chat_events WHERE id = '$id')")" = t ]; do sleep 0.01; done
"""


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    subprocess.run(["psql", "-q", PG_ADMIN, "-c", f"DROP DATABASE IF EXISTS {DB}"], check=True)
    subprocess.run(["psql", "-q", PG_ADMIN, "-c", f"CREATE DATABASE {DB}"], check=True)
    base_env = dict(os.environ, REDIS_URL=REDIS, DATABASE_URL=PG, REDIS_KEY_PREFIX=PREFIX)
    sb, env = start_sandbox("--mirror", "--key-prefix", PREFIX, env=base_env)
    run_env = dict(base_env, **env)
    ours, peer, errors, deliver = [], [], [], []
    try:
        for _ in range(rounds):
            t = time.perf_counter()
            out = subprocess.run([BIN, "-o", "json", "mirror", "canary"], env=run_env, capture_output=True, text=True)
            ours.append((time.perf_counter() - t) * 1000)
            doc = json.loads(out.stdout)
            assert out.returncode == 0, out.stdout + out.stderr
            checks = {c["name"]: c for c in doc["checks"]}
            cid = checks["publish"]["detail"].split()[1]
            rec = json.load(urllib.request.urlopen(f"{env['ABLY_REST_URL']}/_sandbox/mirror?id={cid}"))["record"]
            for store in ("redis", "postgres"):
                errors.append(checks[store]["value"] - rec[f"{store}_ms"])
            deliver.append(checks["deliver"]["value"])
            t = time.perf_counter()
            subprocess.run(["bash", "-c", PEER], env=dict(run_env, PG=PG, PREFIX=PREFIX), check=True)
            peer.append((time.perf_counter() - t) * 1000)
    finally:
        stop(sb)
        subprocess.run(["psql", "-q", PG_ADMIN, "-c", f"DROP DATABASE IF EXISTS {DB}"], check=True)
        keys = subprocess.run(["redis-cli", "-h", "127.0.0.1", "--scan", "--pattern", PREFIX + "*"],
                              capture_output=True, text=True).stdout.split()
        if keys:
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "DEL", *keys], capture_output=True)
    m_ours, m_peer = statistics.median(ours), statistics.median(peer)
    print(f"rounds: {rounds}")
    print(f"broker-ops mirror canary (whole process): median {m_ours:.1f} ms, p95 {pct(ours, 95):.1f} ms, max {max(ours):.1f} ms")
    print(f"peer (bash: curl + redis-cli + psql polling): median {m_peer:.1f} ms, p95 {pct(peer, 95):.1f} ms")
    print(f"ratio broker-ops / peer (median wall): {m_ours / m_peer:.2f}")
    print(f"deliver leg (publish -> SSE subscriber, as reported): median {statistics.median(deliver):.1f} ms, "
          f"max {max(deliver):.1f} ms")
    print(f"canary latency minus the sandbox's record: median {statistics.median(errors):.2f} ms, "
          f"max {max(errors):.2f} ms, min {min(errors):.2f} ms")


if __name__ == "__main__":
    main()
