"""What every benchmark in scripts/bench/ shares: where the release binary is, the local servers,
and a `broker-ops sandbox` process on a free port."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "broker-ops")
REDIS = "redis://127.0.0.1:6379"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def start_sandbox(*args, env=None, prefix=()):
    """Starts `broker-ops sandbox` on port 0 with `args` (after `prefix`, e.g. `taskset -c 0`);
    returns the process and the variables of the export line it prints first (ABLY_API_KEY,
    ABLY_REST_URL, CHATWOOT_...)."""
    p = subprocess.Popen([*prefix, BIN, "sandbox", "--listen", "127.0.0.1:0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, **(env or {})))
    line = p.stdout.readline().strip()
    return p, dict(kv.split("=", 1) for kv in line.removeprefix("export ").split())


def stop(p):
    p.terminate()
    p.wait(timeout=10)


def nearest_rank(values, p):
    """The p-th percentile by nearest rank, as the sandbox's ground truth and hdrhistogram report it."""
    v = sorted(values)
    k = max(1, -(-len(v) * p // 100))  # ceil
    return v[int(k) - 1]
