#!/usr/bin/env python3
"""Benchmark of `sla smoke` (docs/performance.md).

Accuracy: 1,000 chats, 200 at once, against a sandbox in a separate process whose AI latency is
lognormal:p50=80ms,p95=250ms (the production model scaled down ten times). The driver's reply
P50/P95/P99 are compared with the sandbox's own ground truth (GET /_sandbox/ground-truth); the bar
is max(1 %, 2 ms).

Cost: CPU time (user + system) of the driver process per chat, next to Artillery running the same
flow (contact, conversation, message, wait for the reply by polling Chatwoot, since Artillery's
HTTP engine has no SSE) against the same sandbox in the same run. Peak memory of the driver at
10,000 chats.

Usage: scripts/bench/smoke.py [--artillery DIR]   (DIR holds node_modules/.bin/artillery;
install it with `npm install --ignore-scripts artillery@2`, its default install downloads a browser)
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import BIN, ROOT, nearest_rank, start_sandbox as sandbox_process, stop

LATENCY = "lognormal:p50=80ms,p95=250ms"


def start_sandbox():
    return sandbox_process("--ai-latency", LATENCY, "--seed", "42")


def run_measured(cmd, env):
    """Runs cmd, returns (stdout, cpu seconds, peak RSS KiB) of that child alone."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu, after.ru_maxrss, wall


def truth(env):
    with urllib.request.urlopen(env["ABLY_REST_URL"] + "/_sandbox/ground-truth") as r:
        return json.load(r)


def smoke_env(env):
    e = dict(os.environ)
    e.update(env)
    return e


def accuracy():
    """A warm-up run (200 chats, so both processes have their connections and allocations), then
    the measured 1,000; the truth is the sandbox's records after the warm-up's."""
    sb, env = start_sandbox()
    warmup = 200
    try:
        subprocess.run([BIN, "sla", "smoke", "--chats", str(warmup), "--concurrency", "200", "-o", "json", "--no-report",
                        "--no-cleanup"], env=smoke_env(env), capture_output=True, check=True)
        out, cpu, rss, wall = run_measured(
            [BIN, "sla", "smoke", "--chats", "1000", "--concurrency", "200", "-o", "json", "--no-report", "--no-cleanup",
             "--reply-timeout", "60s"],
            smoke_env(env),
        )
        doc = json.loads(out.stdout)
        records = truth(env)["records"][warmup:]
    finally:
        stop(sb)
    lat = [r["latency_us"] / 1000.0 for r in records if r["latency_us"] is not None]
    rows = []
    ok = True
    for name, p in (("p50", 50), ("p95", 95), ("p99", 99)):
        m, t = doc["reply_ms"][name], nearest_rank(lat, p)
        tol = max(0.01 * t, 2.0)
        good = abs(m - t) <= tol
        ok &= good
        rows.append((name, m, t, m - t, tol, good))
    print(f"accuracy: 1000 chats, 200 at once, {LATENCY}, after a {warmup}-chat warm-up; "
          f"driver ok={doc['chats']['ok']} failed={doc['chats']['failed']}, sandbox replies={len(lat)}")
    for p, m, t, d, tol, good in rows:
        print(f"  {p}: driver {m:.3f} ms, sandbox truth {t:.3f} ms, diff {d:+.3f} ms (bar ±{tol:.2f} ms) {'OK' if good else 'MISSED'}")
    print(f"  driver CPU {cpu:.3f} s = {cpu / 1000 * 1e3:.3f} ms per chat; wall {wall:.2f} s")
    return ok, cpu / 1000


ARTILLERY_FLOW = """
config:
  target: "{base}"
  phases:
    - duration: {duration}
      arrivalRate: {rate}
  processor: "./flow.js"
  http:
    timeout: 60
scenarios:
  - flow:
      - post:
          url: "/public/api/v1/inboxes/{inbox}/contacts"
          json: {{ identifier: "art-{{{{ $uuid }}}}", name: "Artillery" }}
          capture: {{ json: "$.source_id", as: "contact" }}
      - post:
          url: "/public/api/v1/inboxes/{inbox}/contacts/{{{{ contact }}}}/conversations"
          json: {{}}
          capture: {{ json: "$.id", as: "conv" }}
      - post:
          url: "/public/api/v1/inboxes/{inbox}/contacts/{{{{ contact }}}}/conversations/{{{{ conv }}}}/messages"
          json: {{ content: "What deposit do I need?" }}
          capture: {{ json: "$.id", as: "msg" }}
      - loop:
          - get:
              url: "/public/api/v1/inboxes/{inbox}/contacts/{{{{ contact }}}}/conversations/{{{{ conv }}}}/messages"
              afterResponse: "checkReply"
          - think: 0.05
        whileTrue: "waiting"
"""

ARTILLERY_JS = """
module.exports = {
  checkReply(req, res, ctx, ee, next) {
    try {
      const list = JSON.parse(res.body);
      ctx.vars.replied = list.some(m => m.message_type === 1 && m.id > ctx.vars.msg);
    } catch (e) { ctx.vars.replied = false; }
    return next();
  },
  waiting(ctx, next) { return next(!ctx.vars.replied); },
};
"""


def driver_cost(chats, rate):
    """The driver on the poll transport, the same flow Artillery runs."""
    sb, env = start_sandbox()
    try:
        out, cpu, rss, wall = run_measured(
            [BIN, "sla", "smoke", "--chats", str(chats), "--rate", f"{rate}/s", "--transport", "poll", "--poll-interval", "50ms",
             "-o", "json", "--no-report", "--no-cleanup", "--reply-timeout", "60s"],
            smoke_env(env),
        )
        doc = json.loads(out.stdout)
    finally:
        stop(sb)
    return doc["chats"]["ok"], cpu


def artillery_cost(artillery_dir, chats, rate):
    exe = os.path.join(artillery_dir, "node_modules", ".bin", "artillery")
    sb, env = start_sandbox()
    work = tempfile.mkdtemp()
    try:
        with open(os.path.join(work, "flow.yml"), "w") as f:
            f.write(ARTILLERY_FLOW.format(base=env["CHATWOOT_BASE_URL"], inbox=env["CHATWOOT_INBOX_IDENTIFIER"],
                                          duration=chats // rate, rate=rate))
        with open(os.path.join(work, "flow.js"), "w") as f:
            f.write(ARTILLERY_JS)
        e = dict(os.environ, ARTILLERY_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
        out, cpu, rss, wall = run_measured([exe, "run", "--quiet", os.path.join(work, "flow.yml"), "-o",
                                            os.path.join(work, "out.json")], e)
        if out.returncode != 0:
            print(out.stdout[-2000:], out.stderr[-2000:], file=sys.stderr)
        with open(os.path.join(work, "out.json")) as f:
            counters = json.load(f)["aggregate"]["counters"]
        completed = counters.get("vusers.completed", 0)
    finally:
        stop(sb)
        shutil.rmtree(work, ignore_errors=True)
    return completed, cpu


def peak_memory():
    sb, env = start_sandbox()
    try:
        out, cpu, rss, wall = run_measured(
            ["/usr/bin/time", "-f", "%M", BIN, "sla", "smoke", "--chats", "10000", "--concurrency", "200", "-o", "json",
             "--no-report", "--no-cleanup", "--reply-timeout", "60s"],
            smoke_env(env),
        )
        peak_kib = int(out.stderr.strip().splitlines()[-1])
        doc = json.loads(out.stdout)
    finally:
        stop(sb)
    print(f"memory: 10000 chats, 200 at once: driver peak RSS {peak_kib / 1024:.1f} MiB, ok={doc['chats']['ok']}, wall {wall:.1f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--artillery", help="directory with node_modules/.bin/artillery")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    ok, _ = accuracy()
    chats, rate = 600, 20
    done, cpu = driver_cost(chats, rate)
    print(f"cost (poll flow, {chats} chats at {rate}/s): broker-ops CPU {cpu:.3f} s for {done} chats = {cpu / max(done, 1) * 1e3:.3f} ms per chat")
    if args.artillery:
        adone, acpu = artillery_cost(args.artillery, chats, rate)
        print(f"cost (poll flow, {chats} chats at {rate}/s): Artillery CPU {acpu:.3f} s for {adone} chats = {acpu / max(adone, 1) * 1e3:.3f} ms per chat")
        ratio = (cpu / max(done, 1)) / (acpu / max(adone, 1))
        print(f"  ratio broker-ops / Artillery CPU per chat: {ratio:.4f} (goal <= 0.1) {'OK' if ratio <= 0.1 else 'MISSED'}")
    peak_memory()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
