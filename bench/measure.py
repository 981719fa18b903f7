"""Measure the running stack with wrk: the static nginx endpoint, /api/health and /api/ready,
interleaved, ROUNDS times each; print medians and ratios to the static figure as a markdown
table, and exit 1 unless /api/health reaches 15% of static with no error responses.

Usage: python3 bench/measure.py BASE_URL   (scripts/bench.sh starts the stack and calls this)
"""

import datetime
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path

TARGETS = [("nginx static", "/bench/static"), ("GET /api/health", "/api/health"), ("GET /api/ready", "/api/ready")]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
WRK = ["wrk", "-t2", "-c32", f"-d{os.environ.get('BENCH_SECONDS', 10)}s"]
SCRIPT = Path(__file__).with_name("summary.lua")
HEALTH_MIN_RATIO = 0.15


def preflight(base):
    """Every target answers 2xx before anything is measured (wrk only counts >= 400)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    for _, path in TARGETS:
        with urllib.request.urlopen(base + path, context=context, timeout=10) as response:
            assert 200 <= response.status < 300, (path, response.status)


def wrk(url, seconds=None, headers=()):
    args = [*WRK[:-1], f"-d{seconds}s"] if seconds else WRK
    header_args = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run([*args, *header_args, "-s", str(SCRIPT), url], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def machine():
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    return f"{os.cpu_count()} cores, {model}, Linux {platform.release()}"


def main(base):
    preflight(base)
    for _, path in TARGETS:  # warm up connections, caches and the app's database connections
        wrk(base + path, seconds=2)
    runs = {name: [] for name, _ in TARGETS}
    for round_number in range(1, ROUNDS + 1):
        for name, path in TARGETS:
            result = wrk(base + path)
            runs[name].append(result)
            print(f"round {round_number} {name:16} {result['rps']:10.0f} req/s  p50 {result['p50_us'] / 1000:.2f} ms  "
                  f"p99 {result['p99_us'] / 1000:.2f} ms  errors {result['status_errors']}/{result['socket_errors']}",
                  file=sys.stderr, flush=True)

    static_rps = statistics.median(r["rps"] for r in runs[TARGETS[0][0]])
    print(f"\n{datetime.date.today().isoformat()} — {machine()}; `{' '.join(WRK)}` over HTTPS through nginx, "
          f"{ROUNDS} interleaved runs per target, medians; WORKERS={os.environ.get('WORKERS', 'default')}\n")
    print("| target | req/s | p50 ms | p99 ms | non-2xx | socket errors | req/s vs static |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    failures = []
    for name, _ in TARGETS:
        rps = statistics.median(r["rps"] for r in runs[name])
        p50 = statistics.median(r["p50_us"] for r in runs[name]) / 1000
        p99 = statistics.median(r["p99_us"] for r in runs[name]) / 1000
        bad = sum(r["status_errors"] for r in runs[name])
        socket_errors = sum(r["socket_errors"] for r in runs[name])
        ratio = rps / static_rps
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {bad} | {socket_errors} | {ratio:.1%} |")
        if bad or socket_errors:
            failures.append(f"{name}: {bad} non-2xx responses, {socket_errors} socket errors")
    health_ratio = statistics.median(r["rps"] for r in runs["GET /api/health"]) / static_rps
    if health_ratio < HEALTH_MIN_RATIO:
        failures.append(f"GET /api/health at {health_ratio:.1%} of static, below {HEALTH_MIN_RATIO:.0%}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
