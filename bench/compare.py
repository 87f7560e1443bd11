#!/usr/bin/env python3
"""`evdispatch bench` of this build against the same benchmark built from another commit,
in one run: the two programs take turns (A B A B ...) so that both see the same machine, and
the table gives each one's median and their ratio. This machine is shared and noisy: compare
ratios, not absolute numbers across days.

    python3 bench/compare.py --rev aad8977 -- --batch-size 100 --duration 3s --baseline none

The other commit is checked out with `git worktree` under build/compare/src-REV and built
(Release, the command-line program only) in build/compare/REV; later runs reuse both.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

METRICS = [
    ("delivered_events_per_sec", "delivered events/s", True),
    ("process_ns_p50", "process() p50 ns", False),
    ("process_ns_p99", "process() p99 ns", False),
    ("e2e_latency_ms_p50", "accept->ack p50 ms", False),
    ("cpu_ns_per_event.producers", "CPU ns/event producers", False),
    ("cpu_ns_per_event.dispatcher", "CPU ns/event dispatcher", False),
    ("cpu_ns_per_event.collector", "CPU ns/event collector", False),
]


def build_other(root, rev):
    sha = subprocess.check_output(["git", "-C", root, "rev-parse", "--short", rev],
                                  text=True).strip()
    src = os.path.join(root, "build", "compare", "src-" + sha)
    out = os.path.join(root, "build", "compare", sha)
    if not os.path.isdir(src):
        subprocess.check_call(["git", "-C", root, "worktree", "add", "--detach", src, sha],
                              stdout=subprocess.DEVNULL)
    if not os.path.isfile(os.path.join(out, "build.ninja")):
        subprocess.check_call(
            ["cmake", "-S", src, "-B", out, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
             "-DEVDISPATCH_BUILD_TESTS=OFF", "-DEVDISPATCH_BUILD_BENCH=OFF",
             "-DEVDISPATCH_BUILD_EXAMPLES=OFF", "-DEVDISPATCH_PYTHON=OFF"],
            stdout=subprocess.DEVNULL)
    subprocess.check_call(["cmake", "--build", out, "--target", "evdispatch_cli"],
                          stdout=subprocess.DEVNULL)
    return sha, os.path.join(out, "evdispatch")


def value(report, dotted):
    v = report
    for part in dotted.split("."):
        if not isinstance(v, dict) or part not in v or v[part] is None:
            return None
        v = v[part]
    return float(v)


def run(cli, args):
    out = subprocess.run([cli, "bench", "--json", "--quiet", *args], stdout=subprocess.PIPE,
                         text=True, timeout=900)
    report = json.loads(out.stdout)
    return report.get("evdispatch", report)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", required=True, help="the other commit (e.g. the previous main)")
    ap.add_argument("--cli", default="build/release/evdispatch", help="this build's program")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each, taking turns")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("bench_args", nargs="*", help="after --: arguments of `evdispatch bench`")
    a = ap.parse_args()
    root = subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True).strip()
    sha, other = build_other(root, a.rev)
    runs = {"this": [], sha: []}
    for _ in range(a.rounds):
        runs[sha].append(run(other, a.bench_args))
        runs["this"].append(run(a.cli, a.bench_args))
    rows = []
    for key, label, higher_better in METRICS:
        med = {}
        for who, reports in runs.items():
            vals = [v for v in (value(r, key) for r in reports) if v is not None]
            med[who] = statistics.median(vals) if vals else None
        ratio = (med["this"] / med[sha]) if med["this"] is not None and med[sha] else None
        rows.append({"metric": key, "label": label, "before": med[sha], "after": med["this"],
                     "ratio": ratio, "higher_is_better": higher_better})
    result = {"rev": sha, "rounds": a.rounds, "bench_args": a.bench_args, "rows": rows}
    if a.json:
        print(json.dumps(result))
        return 0
    print("evdispatch bench %s: %s (before) against this build (after), median of %d each,"
          " taking turns" % (" ".join(a.bench_args), sha, a.rounds))
    print("%-26s %14s %14s %8s" % ("", "before", "after", "ratio"))
    for r in rows:
        if r["before"] is None or r["after"] is None:
            continue
        print("%-26s %14.1f %14.1f %8.2f" % (r["label"], r["before"], r["after"], r["ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
