#!/usr/bin/env python3
"""Benchmark of `sla report` (docs/performance.md).

5,000,000 mirrored events (2,500,000 message/reply pairs over 50,000 conversations in the last
24 h, lognormal reply times, median 1.5 s), written into Postgres with generate_series into the
table `broker-ops db migrate` makes. Measured, three times each, alternating, the median:
- `broker-ops sla report --since 24h --by 1h -o json` (wall time, peak RSS via os.wait4);
- psql running the same percentiles with a window function (the next event of each conversation,
  `lead()`) and `percentile_disc`, per hour.
The bar: no slower than the psql query, RSS under 64 MiB.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and a release build.
Usage: scripts/bench/report.py [--pairs 2500000] [--keep]
"""

import argparse
import os
import statistics
import subprocess
import time

from benchlib import BIN, PG_ADMIN

PG = "postgres://postgres@127.0.0.1:5432/broker_ops_bench_report"

PEER = """
WITH ev AS (
  SELECT name, occurred_at, lead(name) OVER w AS next_name, lead(occurred_at) OVER w AS next_at
  FROM chat_events
  WHERE occurred_at >= now() - interval '24 hours' AND name IN ('message:user', 'message:ai')
  WINDOW w AS (PARTITION BY conversation_id ORDER BY occurred_at, id)
)
SELECT date_trunc('hour', occurred_at) AS hour, count(*) AS replies,
       percentile_disc(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY next_at - occurred_at) AS p,
       max(next_at - occurred_at)
FROM ev WHERE name = 'message:user' AND next_name = 'message:ai'
GROUP BY 1 ORDER BY 1
"""


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], stdout=subprocess.DEVNULL, check=True)


def fill(pairs):
    psql(PG_ADMIN, "DROP DATABASE IF EXISTS broker_ops_bench_report")
    psql(PG_ADMIN, "CREATE DATABASE broker_ops_bench_report")
    subprocess.run([BIN, "db", "migrate"], env=dict(os.environ, DATABASE_URL=PG), check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", PG], check=True, stdout=subprocess.DEVNULL, input=f"""
        SELECT setseed(0.7);
        CREATE TEMP TABLE pairs AS SELECT k, (k % 50000) AS c,
          date_trunc('milliseconds', now() - interval '24 hours' + k * (interval '23 hours 50 minutes' / {pairs})) AS at,
          round(exp(ln(1500) + 0.6 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::int AS lat_ms
        FROM generate_series(0, {pairs - 1}) k;
        INSERT INTO chat_events (id, conversation_id, channel, name, data, client_id, occurred_at)
        SELECT 'u-' || k, c::text, 'conversation:' || c, 'message:user',
          jsonb_build_object('messageId', k, 'conversationId', c, 'content', 'customer message number ' || k),
          'contact:' || c, at FROM pairs
        UNION ALL
        SELECT 'a-' || k, c::text, 'conversation:' || c, 'message:ai',
          jsonb_build_object('messageId', 10000000 + k, 'conversationId', c, 'content', 'AI reply number ' || k,
                             'replyTo', k, 'latencyMs', lat_ms),
          'ai-worker', at + lat_ms * interval '1 millisecond' FROM pairs;
        ANALYZE chat_events;
    """, text=True)


def ours():
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "-o", "json", "sla", "report", "--since", "24h", "--by", "1h"],
                         env=dict(os.environ, DATABASE_URL=PG), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sla report failed: {err.decode()[-2000:]}")
    return time.monotonic() - t0, ru.ru_maxrss / 1024


def peer():
    t0 = time.monotonic()
    psql(PG, PEER)
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2_500_000)
    ap.add_argument("--keep", action="store_true", help="reuse the database of an earlier run")
    a = ap.parse_args()
    if not a.keep:
        fill(a.pairs)
    ours(), peer()  # warm the cache for both
    mine, rss, theirs = [], [], []
    for _ in range(3):
        w, r = ours()
        mine.append(w)
        rss.append(r)
        theirs.append(peer())
    m, t = statistics.median(mine), statistics.median(theirs)
    print(f"events {2 * a.pairs:,}: sla report {m:.2f} s (runs {', '.join(f'{x:.2f}' for x in mine)}), "
          f"peak RSS {max(rss):.1f} MiB; psql window+percentile_disc {t:.2f} s "
          f"(runs {', '.join(f'{x:.2f}' for x in theirs)}); ratio {m / t:.2f} of psql "
          f"(bar <= 1.00: {'met' if m <= t else 'MISSED'}; RSS bar < 64 MiB: {'met' if max(rss) < 64 else 'MISSED'})")


if __name__ == "__main__":
    main()
