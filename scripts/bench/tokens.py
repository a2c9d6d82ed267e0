#!/usr/bin/env python3
"""Benchmark of `token verify` against node + jsonwebtoken / jose (docs/performance.md).

1. One process: whole-process wall time of `broker-ops token verify TOKEN` against
   `node verify-peer.js one jsonwebtoken TOKEN` (node startup + require + verify), 30 runs each,
   medians compared. Goal: broker-ops at most 1/10 of node's wall time.
2. Batch: `broker-ops token verify --batch` on N tokens (default 1,000,000; ~15 % invalid) against
   jsonwebtoken and jose verifying the same file in a loop, same machine, same run.
   Goal: at least 5x their throughput. The peer needs `npm ci` in tests/interop.

Usage: scripts/bench/tokens.py [--tokens N]
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import tempfile
import time

from benchlib import BIN, ROOT

PEER = os.path.join(ROOT, "scripts", "bench", "verify-peer.js")
SECRET = "bench-secret-0123456789abcdef0123456789"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_token(i, now):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "default"}, separators=(",", ":")).encode())
    exp = now - 3600 if i % 10 == 0 else now + 86400  # every tenth expired
    claims = {"iss": "ai-broker", "aud": "chat-resume", "conversationId": 1000 + i % 5000,
              "email": f"user{i % 977}@example.com", "iat": now, "exp": exp, "jti": f"{i:032x}"}
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    secret = SECRET if i % 20 != 7 else "another-secret-" + "x" * 30  # every twentieth forged
    sig = b64(hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{sig}"


def median_wall(cmd, env, runs=30):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1_000_000)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env["RESUME_TOKEN_SECRET"] = SECRET
    # The same checks on both sides: the peer verifies issuer and audience, so pin them here too
    # (the default contract, the product plan's, checks neither).
    env["BROKER_OPS_CONTRACT_TOKEN_ISSUER"] = "ai-broker"
    env["BROKER_OPS_CONTRACT_TOKEN_AUDIENCE"] = "chat-resume"
    env["BROKER_OPS_CONTRACT_TOKEN_REQUIRED"] = "conversationId,email,iat,exp,jti"
    now = int(time.time())
    one = make_token(1, now)

    ours = median_wall([BIN, "token", "verify", one], env)
    node = median_wall(["node", PEER, "one", "jsonwebtoken", one], env)
    print(f"one process: broker-ops {ours * 1e3:.2f} ms, node+jsonwebtoken {node * 1e3:.2f} ms (medians of 30); "
          f"ratio {ours / node:.3f} (goal <= 0.1) {'OK' if ours / node <= 0.1 else 'MISSED'}")

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tokens.txt")
        with open(path, "w") as f:
            for i in range(args.tokens):
                f.write(make_token(i, now) + "\n")
        t0 = time.perf_counter()
        with open(path, "rb") as fin:
            r = subprocess.run([BIN, "token", "verify", "--batch"], env=env, stdin=fin, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        secs = time.perf_counter() - t0
        ours_rate = args.tokens / secs
        print(f"batch: broker-ops {args.tokens} tokens in {secs:.2f} s = {ours_rate:,.0f} tokens/s ({r.stderr.strip()})")
        for lib in ("jsonwebtoken", "jose"):
            out = subprocess.run(["node", PEER, "batch", lib, path], env=env, capture_output=True, text=True, check=True)
            doc = json.loads(out.stdout)
            ratio = ours_rate / doc["per_second"]
            print(f"batch: {lib} {doc['tokens']} tokens in {doc['seconds']:.2f} s = {doc['per_second']:,.0f} tokens/s "
                  f"(valid {doc['valid']}); broker-ops is {ratio:.1f}x (goal >= 5x) {'OK' if ratio >= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
