#!/usr/bin/env python3
"""Benchmark of the HTML report's cost (docs/performance.md): what writing the report files adds
to a run.

One sandbox smoke (200 chats, 20 at once) leaves its histograms in an interval log; then, in
alternating order, N times each, `sla merge run.hlog --no-report` (read, merge, judge, render the
JSON on stdout) and `sla merge run.hlog --report-dir DIR` (the same, plus the Markdown, JSON, SVG
and HTML files). The difference of the medians is what the four report files cost. The page's
own cost is read from the run itself (`-vv` logs "wrote the HTML page render_us=… total_us=…":
building the page, then writing it atomically, flushed to disk, as every report file is). The
bar: the page adds under 5 ms to a run.

Needs a release build. Usage: scripts/bench/pages.py [rounds, default 40]
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import BIN


PAGE = re.compile(r"wrote the HTML page render_us=(\d+) total_us=(\d+) bytes=(\d+)")


def timed(args, cwd):
    """Wall ms of the run, and the page's (render, total) ms when it wrote one."""
    t = time.perf_counter()
    r = subprocess.run([BIN, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = (time.perf_counter() - t) * 1000.0
    m = PAGE.search(r.stderr)
    return wall, (m and (int(m[1]) / 1000.0, int(m[2]) / 1000.0, int(m[3])))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([BIN, "sla", "smoke", "--sandbox", "--chats", "200", "--concurrency", "20",
                        "--histogram-out", "run.hlog", "--no-report"],
                       cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bare, files, pages = [], [], []
        for i in range(rounds):
            pair = [("bare", ["-vv", "-o", "json", "sla", "merge", "run.hlog", "--no-report"]),
                    ("files", ["-vv", "-o", "json", "sla", "merge", "run.hlog", "--report-dir", f"out{i}"])]
            if i % 2:
                pair.reverse()
            for name, args in pair:
                wall, page = timed(args, d)
                (bare if name == "bare" else files).append(wall)
                if page:
                    pages.append(page)
    mb, mf = statistics.median(bare), statistics.median(files)
    render = sorted(p[0] for p in pages)
    total = sorted(p[1] for p in pages)
    p95 = lambda v: v[min(len(v) - 1, int(len(v) * 0.95))]
    print(f"sla merge without files: median {mb:.2f} ms; with Markdown, JSON, SVG and HTML: median {mf:.2f} ms "
          f"(the four files: {mf - mb:+.2f} ms)")
    print(f"the HTML page ({pages[0][2] / 1024:.1f} KiB): built in median {statistics.median(render):.2f} ms "
          f"(P95 {p95(render):.2f}), built and written in median {statistics.median(total):.2f} ms "
          f"(P95 {p95(total):.2f}); bar: under 5 ms")


if __name__ == "__main__":
    main()
