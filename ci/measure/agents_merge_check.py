"""Checks a `loadgen run --agents` report against its agents' own interval logs.

Used by ci/measure/agents.sh: the merged `rtmc` histogram is rebuilt with Python's `hdrh`
(a second HdrHistogram implementation) from every `agents/*.hlog` of the report directory,
and its count and percentiles are compared with `report.json`; the merged counts must be
the agents' sums and nothing may be lost, duplicated or reordered. Exits 1 on a mismatch.

Usage: agents_merge_check.py REPORT_DIR
"""

import glob
import json
import os
import sys

from hdrh.histogram import HdrHistogram

# loadgen's histograms: 1 µs … 60 s, 3 significant digits.
LOWEST_US, HIGHEST_US, DIGITS = 1, 60_000_000, 3
# Two implementations may pick a different value inside one bucket (3 digits: 0.1 %).
RELATIVE_TOLERANCE = 0.002


def interval_histograms(path, tag):
    """Yields the histograms tagged `tag` of the interval log at `path`."""
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or line.startswith('"'):
                continue
            fields = line.split(",")
            line_tag = None
            if fields[0].startswith("Tag="):
                line_tag = fields[0][len("Tag="):]
                fields = fields[1:]
            if line_tag != tag or len(fields) != 4:
                continue
            yield HdrHistogram.decode(fields[3].encode("ascii"), b64_wrap=True)


def main(report_dir):
    with open(os.path.join(report_dir, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    rtmc = report["rtmc"]
    problems = []
    logs = sorted(glob.glob(os.path.join(report_dir, "agents", "*.hlog")))
    if len(logs) != len(report["agents"]):
        problems.append(f"{len(logs)} agent logs for {len(report['agents'])} agents")
    merged = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
    for path in logs:
        for h in interval_histograms(path, "rtmc"):
            merged.add(h)
    lat = rtmc["latency"]
    if merged.get_total_count() != lat["count"]:
        problems.append(f"count: hdrh {merged.get_total_count()}, report {lat['count']}")
    for pct, key in [(50.0, "p50_ms"), (90.0, "p90_ms"), (99.0, "p99_ms"), (99.9, "p99_9_ms")]:
        want_ms = merged.get_value_at_percentile(pct) / 1000.0
        got_ms = lat[key]
        if abs(want_ms - got_ms) > RELATIVE_TOLERANCE * max(want_ms, got_ms) + 0.001:
            problems.append(f"p{pct}: hdrh {want_ms:.3f} ms, report {got_ms:.3f} ms")
        print(f"p{pct}: hdrh {want_ms:.3f} ms, report {got_ms:.3f} ms")
    for key in ["deliveries", "published", "acked"]:
        total = sum(a[key] for a in report["agents"])
        if total != rtmc[key]:
            problems.append(f"{key}: agents sum to {total}, report {rtmc[key]}")
    acc = rtmc["accounting"]
    for key in ["lost", "duplicates", "out_of_order", "gaps"]:
        if acc[key] != 0:
            problems.append(f"{key}: {acc[key]}")
    print(f"{len(logs)} agents, {acc['receivers']} receivers, {rtmc['deliveries']} deliveries")
    for p in problems:
        print(f"MISMATCH: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
