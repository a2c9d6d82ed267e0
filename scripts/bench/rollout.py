#!/usr/bin/env python3
"""Benchmark of `broker-ops rollout` (docs/performance.md).

1. `rollout which -` over 1,000,000 conversation ids read from stdin (`-o ndjson`, output
   discarded), the flag at 50 %, against the peer: unleash-client (Node, its own Client and
   strategies, tests/interop/unleash-rollout.js) deciding the same ids in the same run. Both
   are timed as whole processes, three runs each, alternating; the answers are compared.
2. `rollout status` with 20,000 conversations active in the mirror: wall time of the process.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth), node with tests/interop installed, and the
release binary. Usage: scripts/bench/rollout.py
"""

import json
import os
import statistics
import subprocess
import time

from benchlib import BIN, PG_ADMIN, ROOT

DB = "broker_ops_bench_rollout"
PG = f"postgres://postgres@127.0.0.1:5432/{DB}"
N = 1_000_000


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True, capture_output=True)


def timed(cmd, **kw):
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, **kw)
    return time.perf_counter() - t, out.stdout


def main():
    psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {DB}")
    psql(PG_ADMIN, f"CREATE DATABASE {DB}")
    env = dict(os.environ, DATABASE_URL=PG, USER="bench")
    try:
        subprocess.run([BIN, "db", "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([BIN, "rollout", "set", "--percent", "50", "--reason", "bench", "--yes"], env=env,
                       check=True, capture_output=True)
        ids = [str(i * 7 + 1) if i % 2 == 0 else f"conv-{i:08x}" for i in range(N)]
        ids_text = ("\n".join(ids) + "\n").encode()
        toggle = {"name": "ENABLE_ABLY_REALTIME", "enabled": True, "strategies": [{"name": "flexibleRollout",
                  "constraints": [], "parameters": {"rollout": "50", "stickiness": "conversationId",
                                                    "groupId": "ENABLE_ABLY_REALTIME"}}]}
        peer_input = json.dumps({"toggle": toggle, "ids": ids}).encode()
        ours_t, peer_t = [], []
        for _ in range(3):
            t, out = timed([BIN, "-o", "ndjson", "rollout", "which", "-"], input=ids_text, env=env)
            ours_t.append(t)
            ours = [json.loads(line)["enabled"] for line in out.splitlines()]
            t, out = timed(["node", "unleash-rollout.js"], input=peer_input, cwd=os.path.join(ROOT, "tests", "interop"))
            peer_t.append(t)
            theirs = json.loads(out)
            assert ours == theirs, "the answers differ"
        print(f"rollout which over {N:,} ids: {', '.join(f'{t:.2f}' for t in ours_t)} s; "
              f"unleash-client (node): {', '.join(f'{t:.2f}' for t in peer_t)} s; "
              f"ratio of medians {statistics.median(ours_t) / statistics.median(peer_t):.2f}; answers identical")
        psql(PG, "INSERT INTO chat_events (id, conversation_id, channel, name, data, occurred_at) "
                 "SELECT 'e' || g, 'c' || g, 'conversation:c' || g, 'message:user', '{}'::jsonb, now() - interval '1 minute' "
                 "FROM generate_series(1, 20000) g")
        st = []
        for _ in range(3):
            t, out = timed([BIN, "-o", "json", "rollout", "status"], env=env)
            st.append(t)
        doc = json.loads(out)
        print(f"rollout status with {doc['active']:,} active conversations ({doc['on']:,} on): "
              f"{', '.join(f'{t * 1000:.0f}' for t in st)} ms")
    finally:
        psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {DB}")


if __name__ == "__main__":
    main()
