"""Slow Stripe (issue 12): the fake Stripe answers every `POST /v1/payment_intents` in 400 ms
(a `delay` fault, `when: before`, set for this scenario and cleared after), and

  * app:        48 concurrent buyers create intents through nginx for 15 s
                (`wrk -t2 -c48 -d15s`, every request its own listing, 48 buyer tokens in turn),
                while `GET /api/health` and a signed webhook delivery (`payment_intent.succeeded`,
                a new event for a new pre-created payment each time, `POST /api/payments/webhook`
                through nginx) are each probed 10 times a second from Python threads, and
                `pg_stat_activity` is sampled every 0.25 s (the app's connections:
                application_name = 'payments' on the app's database);
  * fake alone: what the fake serves at the same latency and concurrency: `wrk -t2 -c48 -d15s`
                straight at `POST /v1/payment_intents` over HTTPS, with the bench's secret key
                and the form body the app sends (destination charge, manual capture, metadata),
                a new Idempotency-Key per request.

The two targets are interleaved (app, fake, app, fake, …), ROUNDS each (3) after a 3-second
warm-up of each, and the table quotes medians. Before each run the fake's webhook queue is
drained (`/_control/webhooks/wait`), so no run inherits the previous one's deliveries. Both wrk
scripts hold every thread's first request until the last thread has initialised
(PLATFORM-NOTES), and count responses by status class and 2xx answers per second.

Throughput counts 2xx answers only, over the steady part of each run: seconds SKIP (3) to the
end, wrk's last partial second left out; the whole-run figure is printed beside it. The fake is
a `ThreadingHTTPServer`, whose accept queue holds 5 connections (socketserver's default): most of
wrk's 48 keep-alive connections only get in after one or two SYN retransmits (1 s, 3 s), and wrk
spins on the CPU while its TLS handshakes wait, so the first seconds of the fake-alone run measure
that start-up, not the fake. The app target's connections to the fake are one per call and hit
the same queue all along: that cost stays in the app's figure (see the listen-overflow column).

CPU is accounted per component for every run (from /proc: the app processes, nginx, the
PostgreSQL cluster, the fake, wrk, this driver, and the machine's total), so a missed target
comes with the figures to say where the time went.

Usage: python3 bench/slow_stripe.py BASE_URL RUN_DIR   (scripts/bench.sh calls it last).
Exits 1 unless: create-intent (2xx/s) >= 80% of the fake alone; health p99 <= 50 ms and webhook
p99 <= 50 ms during the app runs; no response >= 500 anywhere, no socket error, no probe error;
the app's PostgreSQL connections never above DATABASE_POOL_SIZE x app processes; every webhook
probe answered 200 completed its payment; and every create-intent answered 2xx has its payment
with an intent in the database.
Settings: BENCH_ROUNDS (3), SLOW_STRIPE_SECONDS (15), SLOW_STRIPE_SKIP_SECONDS (3),
SLOW_STRIPE_DELAY_MS (400), SLOW_STRIPE_CONNECTIONS (48), SLOW_STRIPE_LISTINGS (15000), PG_BIN.
"""

import datetime
import http.client
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from measure import ROUNDS  # noqa: E402
from purchases import onboarded_account, token  # noqa: E402
from webhooks import PG_BIN, Database, event_body, log, machine, make_pool, raw_request, read_env  # noqa: E402
from webhooks import PATH as WEBHOOK_PATH  # noqa: E402
from webhooks import setup as webhook_profiles  # noqa: E402

SECONDS = int(os.environ.get("SLOW_STRIPE_SECONDS", 15))
DELAY_MS = int(os.environ.get("SLOW_STRIPE_DELAY_MS", 400))
CONNECTIONS = int(os.environ.get("SLOW_STRIPE_CONNECTIONS", 48))
THREADS = 2
LISTINGS = int(os.environ.get("SLOW_STRIPE_LISTINGS", 15000))
BUYERS = CONNECTIONS
PROBE_HZ = 10
SAMPLE_SECONDS = 0.25
SKIP = int(os.environ.get("SLOW_STRIPE_SKIP_SECONDS", 3))   # seconds of each run left out of the steady-state rate
MIN_RATIO, MAX_P99_MS = 0.80, 50.0
LISTING_PREFIX = "00000000-0000-4000-a000-"   # + HHMMSS + 6 digits; bench/purchases.py uses …-9000-…
WRK_TIMEOUT = "10s"
FAULT = {"type": "delay", "when": "before", "delay_ms": DELAY_MS, "method": "POST",
         "path_prefix": "/v1/payment_intents", "count": 1_000_000}

# The common part of both wrk scripts: thread ids, the start gate (the last thread to
# initialise opens it; wrk's format check calls request() on thread 0 before the other threads
# exist, and is answered without waiting), per-thread request numbers k = offset + n * threads
# + id (never the same k twice), status classes counted in response(), one JSON line at the end.
LUA_COMMON = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int, bench_timespec *); ]]
local clock = ffi.new("bench_timespec")
local function now()  -- CLOCK_MONOTONIC, in seconds
    ffi.C.clock_gettime(1, clock)
    return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end
local threads = {}
local counter = 0

function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
    table.insert(threads, thread)
end

function init(args)
    gate, nthreads, offset = args[1], tonumber(args[2]), tonumber(args[3])
    n, c2, c3, c4, c5, codes, seen, per_second, t0 = 0, 0, 0, 0, 0, "", {}, {}, now()
    if id == nthreads - 1 then
        local f = assert(io.open(gate, "w"))
        f:write("ready")
        f:close()
    end
end

function request()
    if id == 0 and not verified then
        verified = true
    elseif not ready then
        while true do
            local f = io.open(gate, "r")
            if f then f:close() break end
        end
        ready = true
    end
    local k = offset + n * nthreads + id
    n = n + 1
    return build(k)
end

function response(status, headers, body)
    if status < 300 then
        c2 = c2 + 1
        local second = 1 + math.floor(now() - t0)
        per_second[second] = (per_second[second] or 0) + 1
    elseif status < 400 then c3 = c3 + 1
    elseif status < 500 then c4 = c4 + 1
    else c5 = c5 + 1 end
    if status >= 300 and not seen[status] then
        seen[status] = true
        local text = string.gsub(string.gsub(body or "", "%s+", " "), '[^%w%p ]', "?")
        codes = codes .. status .. " " .. string.sub(string.gsub(text, '["\\]', "'"), 1, 160) .. " | "
    end
end

function done(summary, latency, requests)
    local t2, t3, t4, t5, maxn, all, seconds, last = 0, 0, 0, 0, 0, "", {}, 0
    for _, t in ipairs(threads) do
        t2 = t2 + t:get("c2"); t3 = t3 + t:get("c3"); t4 = t4 + t:get("c4"); t5 = t5 + t:get("c5")
        if t:get("n") > maxn then maxn = t:get("n") end
        all = all .. t:get("codes")
        for second, count in pairs(t:get("per_second")) do
            seconds[second] = (seconds[second] or 0) + count
            if second > last then last = second end
        end
    end
    local series = {}
    for second = 1, last do series[second] = tostring(seconds[second] or 0) end
    local e = summary.errors
    io.write(string.format(
        '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"s2xx":%d,"s3xx":%d,"s4xx":%d,"s5xx":%d,' ..
        '"socket_errors":%d,"timeouts":%d,"max_n":%d,"per_second":[%s],"samples":"%s"}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), t2, t3, t4, t5,
        e.connect + e.read + e.write + e.timeout, e.timeout, maxn, table.concat(series, ","), all))
end
"""

# The app: a buyer (48 tokens in turn) reserves listing k.
APP_BUILD = r"""
local tokens = {__TOKENS__}
function build(k)
    local body = string.format('{"listing_id":"__PREFIX__%06d"}', k)
    return wrk.format("POST", "/api/payments/create-intent",
        {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[1 + k % #tokens]}, body)
end
"""

# The fake alone: the app's destination-charge create (PurchaseIntent.parameters), encoded the
# way the app's FormEncoding does, under a new Idempotency-Key.
FAKE_BUILD = r"""
function build(k)
    local listing = string.format("__PREFIX__%06d", k)
    local amount = 1000 + k % 500
    local body = "amount=" .. amount .. "&currency=usd&capture_method=manual&payment_method_types%5B0%5D=card"
        .. "&application_fee_amount=" .. math.floor(amount / 10) .. "&transfer_data%5Bdestination%5D=__ACCOUNT__"
        .. "&transfer_group=listing%3A" .. listing
        .. "&metadata%5Bpayment_id%5D=bench-" .. k .. "&metadata%5Blisting_id%5D=" .. listing
        .. "&metadata%5Bbuyer_id%5D=bench-buyer&metadata%5Bseller_id%5D=bench-seller"
    return wrk.format("POST", "/v1/payment_intents",
        {["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = "Bearer __KEY__",
         ["Stripe-Version"] = "2024-06-20", ["Idempotency-Key"] = "__RUN__-" .. k}, body)
end
"""


def insecure_context():
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def control(env, method, path, body=None):
    """A call to the fake's control API; returns the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(env["STRIPE_API_BASE"] + path, method=method, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=insecure_context(), timeout=120) as response:
        return json.load(response)


# --- data --------------------------------------------------------------------------------------------

def setup(db, account, tag):
    """A seller able to take charges (the fake's onboarded `account`), BUYERS buyers, and LISTINGS
    fresh listings with known ids (…-a000-HHMMSSkkkkkk: new ones on every run); and the profiles
    bench/webhooks.py's payment pools draw from (already there when that benchmark ran first)."""
    if int(db.value("SELECT count(*) FROM profiles WHERE user_id LIKE 'bench-seller-%' "
                    "AND stripe_account_id LIKE 'acct\\_bench\\_%'")) < 400:
        webhook_profiles(db)
    db.run(f"""
        INSERT INTO profiles (user_id, roles, stripe_account_id, charges_enabled, payouts_enabled, details_submitted)
        VALUES ('slow-seller-{tag}', '{{seller}}', '{account}', true, true, true);
        INSERT INTO profiles (user_id, roles) SELECT 'slow-buyer-{tag}-' || n, '{{buyer}}' FROM generate_series(1, {BUYERS}) n;
        INSERT INTO listings (id, seller_id, title, price_cents, currency)
        SELECT format('{LISTING_PREFIX}{tag}%s', lpad(i::text, 6, '0'))::uuid,
               (SELECT id FROM profiles WHERE user_id = 'slow-seller-{tag}'), 'Slow Stripe listing', 1000 + i % 500, 'usd'
        FROM generate_series(0, {LISTINGS - 1}) AS i;
        ANALYZE listings; ANALYZE payments; ANALYZE profiles;
    """)


# --- CPU accounting ---------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def read_pid(path):
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def processes():
    """{pid: (ppid, comm, cpu seconds)} of every process now."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        out[int(entry.name)] = (int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def component_roots(run_dir):
    roots = {"app": [read_pid(p) for p in sorted(Path(run_dir).glob("app-*.pid"))],
             "nginx": [read_pid(Path(run_dir) / "nginx/logs/nginx.pid")],
             "postgres": [read_pid(Path(run_dir) / "pg/data/postmaster.pid")],
             "fake Stripe": [read_pid(Path(run_dir) / "stripe.pid")],
             "driver (Python)": [os.getpid()]}
    return {name: {pid for pid in pids if pid} for name, pids in roots.items()}


def listen_overflows():
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0][1:], lines[1][1:])).get("ListenOverflows", 0))


def cpu_snapshot(roots):
    """CPU seconds used so far per component (a root process and its descendants), by the
    driver's reaped children (wrk), and by the whole machine (busy, from /proc/stat); and the
    listen-queue overflows so far."""
    procs = processes()
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    totals = {}
    for name, pids in roots.items():
        seen, stack = set(), list(pids)
        while stack:
            pid = stack.pop()
            if pid in seen or pid not in procs:
                continue
            seen.add(pid)
            stack.extend(children.get(pid, []))
        totals[name] = sum(procs[pid][2] for pid in seen)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)   # wrk, once it has exited and been reaped
    totals["wrk"] = children.ru_utime + children.ru_stime
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(fields) - fields[3] - fields[4]) / TICK   # all but idle and iowait
    totals["other processes"] = busy - sum(totals.values())   # e.g. a test suite sharing the machine
    totals["machine (all)"] = busy
    totals["listen overflows"] = listen_overflows()
    return totals


def cpu_share(before, after, seconds):
    """Cores used per component over `seconds` (and listen-queue overflows, a count)."""
    share = {name: max(0.0, after[name] - before[name]) / seconds for name in after}
    share["listen overflows"] = after["listen overflows"] - before["listen overflows"]
    return share


# --- probes and sampler -------------------------------------------------------------------------

class Probe(threading.Thread):
    """Sends one request PROBE_HZ times a second (open loop, on a schedule) over a kept-alive HTTPS
    connection, and records each latency and status until stopped."""

    def __init__(self, base, make_request):
        super().__init__(daemon=True)
        self.parts = urllib.parse.urlsplit(base)
        self.make_request = make_request
        self.stop_event = threading.Event()
        self.latencies, self.statuses, self.errors = [], [], []

    def connect(self):
        return http.client.HTTPSConnection(self.parts.hostname, self.parts.port, context=insecure_context(), timeout=10)

    def run(self):
        connection = self.connect()
        start, i = time.monotonic(), 0
        while not self.stop_event.is_set():
            due = start + i / PROBE_HZ
            i += 1
            pause = due - time.monotonic()
            if pause > 0 and self.stop_event.wait(pause):
                break
            method, path, body, headers = self.make_request(len(self.latencies) + len(self.errors))
            began = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                self.latencies.append((time.perf_counter() - began) * 1000)
                self.statuses.append(response.status)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = self.connect()
            except (OSError, http.client.HTTPException) as error:
                self.errors.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = self.connect()
        connection.close()

    def stop(self):
        self.stop_event.set()
        self.join(timeout=30)


class ConnectionSampler:
    """One psql session that counts the app's connections every SAMPLE_SECONDS (`\\watch`)."""

    def __init__(self, db, database):
        self.sql = (f"SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity "
                    f"WHERE application_name = 'payments' AND datname = '{database}';\n\\watch {SAMPLE_SECONDS}\n")
        self.process = subprocess.Popen([str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-F", " ", db.admin_url],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.samples = []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()
        self.process.stdin.write(self.sql)
        self.process.stdin.flush()

    def read(self):
        for line in self.process.stdout:
            fields = line.split()
            if len(fields) == 2 and all(f.isdigit() for f in fields):
                self.samples.append((int(fields[0]), int(fields[1])))

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.reader.join(timeout=10)
        return self.samples


# --- the runs ------------------------------------------------------------------------------------------

def run_wrk(url, script, workdir, offset, seconds):
    gate = Path(workdir) / f"gate-{time.monotonic_ns()}"
    out = subprocess.run(["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", WRK_TIMEOUT,
                          "-s", str(script), url, "--", str(gate), str(THREADS), str(offset)],
                         capture_output=True, text=True, timeout=seconds + 120)
    gate.unlink(missing_ok=True)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{out.stdout}{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["rps_run"] = result["s2xx"] / (result["duration_us"] / 1e6)
    # Steady state: the 2xx answers of whole seconds SKIP … seconds-1, wrk's last, partial second
    # left out (see the module's docstring: the fake's 5-deep accept queue delays wrk's start).
    steady = result["per_second"][SKIP:seconds]
    result["rps"] = sum(steady) / len(steady) if steady else result["rps_run"]
    result["non2xx"] = result["requests"] - result["s2xx"]
    return result


def drain(env):
    """Waits until the fake has delivered every queued webhook (the previous run's events)."""
    if not control(env, "POST", "/_control/webhooks/wait", {"timeout": 60}).get("idle"):
        log("    note: the fake's webhook queue did not drain within 60 s")


def percentile(values, q):
    """Nearest-rank percentile (q in 0…100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * q // 100) - 1))]


def app_round(db, env, base, script, workdir, offset, run, secret, database, roots, seconds):
    # One pre-created `processing` payment per webhook probe, completed by its event.
    events = PROBE_HZ * seconds * 2 + 50
    make_pool(db, f"SELECT 'pi_{run}_' || n AS name FROM generate_series(0, {events - 1}) n")
    host = urllib.parse.urlsplit(base).netloc

    def webhook(n):
        raw = raw_request(host, secret, event_body(run, n))
        head, body = raw.split(b"\r\n\r\n", 1)
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        headers.pop("Host", None)
        return "POST", WEBHOOK_PATH, body, headers

    probes = {"GET /api/health": Probe(base, lambda n: ("GET", "/api/health", None, {})),
              "POST /api/payments/webhook": Probe(base, webhook)}
    drain(env)
    sampler = ConnectionSampler(db, database)
    time.sleep(2 * SAMPLE_SECONDS)
    before = cpu_snapshot(roots)
    started = time.monotonic()
    for probe in probes.values():
        probe.start()
    try:
        result = run_wrk(base + "/api/payments/create-intent", script, workdir, offset, seconds)
    finally:
        for probe in probes.values():
            probe.stop()
        elapsed = time.monotonic() - started
        after = cpu_snapshot(roots)
        samples = sampler.stop()
    result["cpu"] = cpu_share(before, after, elapsed)
    result["connections"] = max((s[0] for s in samples), default=None)
    result["active"] = max((s[1] for s in samples), default=None)
    result["connection_samples"] = len(samples)
    result["probes"] = {}
    for name, probe in probes.items():
        answered = probe.latencies   # every answer, whatever its status
        result["probes"][name] = {
            "sent": len(probe.latencies) + len(probe.errors),
            "p50": percentile(answered, 50) if answered else None, "p99": percentile(answered, 99) if answered else None,
            "max": max(answered) if answered else None,
            "non2xx": sum(1 for s in probe.statuses if not 200 <= s < 300),
            "5xx": sum(1 for s in probe.statuses if s >= 500),
            "codes": sorted({s for s in probe.statuses if not 200 <= s < 300}),
            "errors": probe.errors}
    # Every delivery answered 200 completed its payment (processing → succeeded).
    delivered = sum(1 for status in probes["POST /api/payments/webhook"].statuses if status == 200)
    completed = int(db.value(f"SELECT count(*) FROM payments WHERE stripe_payment_intent_id LIKE 'pi\\_{run}\\_%' "
                             f"AND status = 'succeeded'"))
    result["webhook_check"] = None if completed == delivered else \
        f"{delivered} webhook deliveries answered 200, {completed} payments succeeded"
    return result


def fake_round(env, script, workdir, offset, roots, seconds):
    drain(env)
    before = cpu_snapshot(roots)
    started = time.monotonic()
    result = run_wrk(env["STRIPE_API_BASE"] + "/v1/payment_intents", script, workdir, offset, seconds)
    result["cpu"] = cpu_share(before, cpu_snapshot(roots), time.monotonic() - started)
    return result


def write_script(workdir, name, build):
    path = Path(workdir) / name
    path.write_text(LUA_COMMON + build)
    return path


def describe(name, r):
    line = (f"{name:44} {r['rps']:7.1f} 2xx/s steady ({r['rps_run']:.1f} whole run)  p50 {r['p50_us'] / 1000:7.1f} ms  "
            f"p99 {r['p99_us'] / 1000:7.1f} ms  non-2xx {r['non2xx']} (5xx {r['s5xx']})  socket {r['socket_errors']}"
            f"\n      2xx per second: {r['per_second']}")
    if r.get("samples"):
        line += f"\n      statuses: {r['samples'][:400]}"
    if "probes" in r:
        for probe, p in r["probes"].items():
            line += (f"\n      {probe:28} {p['sent']:4} sent  p50 {p['p50'] or 0:6.2f} ms  p99 {p['p99'] or 0:7.2f} ms  "
                     f"max {p['max'] or 0:7.2f} ms  non-2xx {p['non2xx']}  errors {len(p['errors'])}")
        line += f"\n      app connections: max {r['connections']} ({r['active']} active at most), {r['connection_samples']} samples"
    line += "\n      cores: " + ", ".join(f"{k} {v:.2f}" if k != "listen overflows" else f"{k} {v}"
                                   for k, v in r["cpu"].items())
    return line


def main(base, run_dir):
    env = read_env(run_dir)
    db = Database(env["DATABASE_URL"])
    database = urllib.parse.urlsplit(env["DATABASE_URL"]).path.lstrip("/") or "payments"
    secret = env["STRIPE_WEBHOOK_SECRETS"].split(",")[0].strip()
    pool_size = int(env.get("DATABASE_POOL_SIZE") or 16)
    app_processes = len(list(Path(run_dir).glob("app-*.pid"))) or 1
    connection_limit = pool_size * app_processes
    tag = time.strftime("%H%M%S")
    account = onboarded_account(env)
    log(f"slow Stripe: seeding {LISTINGS} listings, {BUYERS} buyers")
    setup(db, account, tag)
    tokens = ",".join(f'"{token(env["AUTH_JWT_SECRET"], f"slow-buyer-{tag}-{n}")}"' for n in range(1, BUYERS + 1))
    roots = component_roots(run_dir)

    names = (f"fake alone: POST /v1/payment_intents ({DELAY_MS} ms)", "app: POST /api/payments/create-intent")
    runs = {name: [] for name in names}
    offset_app = offset_fake = 0
    with tempfile.TemporaryDirectory(prefix="slow-stripe-") as workdir:
        app_script = write_script(workdir, "app.lua", APP_BUILD.replace("__TOKENS__", tokens)
                                  .replace("__PREFIX__", LISTING_PREFIX + tag))
        fake_script = write_script(workdir, "fake.lua", FAKE_BUILD.replace("__PREFIX__", LISTING_PREFIX + tag)
                                   .replace("__ACCOUNT__", account).replace("__KEY__", env["STRIPE_SECRET_KEY"])
                                   .replace("__RUN__", f"slow-{tag}"))
        control(env, "POST", "/_control/faults", FAULT)
        try:
            log(f"warm-up (3 s each); fake delay fault {DELAY_MS} ms on POST /v1/payment_intents")
            warm = app_round(db, env, base, app_script, workdir, offset_app, f"s{tag}w", secret, database, roots, 3)
            offset_app += warm["max_n"] * THREADS + THREADS
            warm_answered = warm["s2xx"]
            warm = fake_round(env, fake_script, workdir, offset_fake, roots, 3)
            offset_fake += warm["max_n"] * THREADS + THREADS
            for r in range(1, ROUNDS + 1):
                if offset_app + 130 * SECONDS > LISTINGS:
                    raise RuntimeError(f"{LISTINGS} listings are not enough for round {r}: raise SLOW_STRIPE_LISTINGS")
                app = app_round(db, env, base, app_script, workdir, offset_app, f"s{tag}r{r}", secret, database, roots,
                                SECONDS)
                offset_app += app["max_n"] * THREADS + THREADS
                log(f"round {r} {describe(names[1], app)}")
                fake = fake_round(env, fake_script, workdir, offset_fake, roots, SECONDS)
                offset_fake += fake["max_n"] * THREADS + THREADS
                log(f"round {r} {describe(names[0], fake)}")
                runs[names[0]].append(fake)
                runs[names[1]].append(app)
        finally:
            control(env, "DELETE", "/_control/faults")
    drain(env)

    def med(name, key):
        return statistics.median(r[key] for r in runs[name])

    made = int(db.value(f"SELECT count(*) FROM payments p JOIN profiles b ON b.id = p.buyer_id "
                        f"WHERE b.user_id LIKE 'slow-buyer-{tag}-%' AND p.stripe_payment_intent_id IS NOT NULL"))
    answered = warm_answered + sum(r["s2xx"] for r in runs[names[1]])
    fake_rps, app_rps = med(names[0], "rps"), med(names[1], "rps")
    ratio = app_rps / fake_rps if fake_rps else 0.0

    print(f"\n{datetime.date.today().isoformat()} — {machine()}; the fake Stripe answers every POST /v1/payment_intents "
          f"in {DELAY_MS} ms; `wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s` over HTTPS, {ROUNDS} interleaved rounds, "
          f"medians; app with its defaults (WORKERS={env.get('WORKERS') or 'default'}, "
          f"STRIPE_WORKERS={env.get('STRIPE_WORKERS') or 'default'}, DATABASE_POOL_SIZE={env.get('DATABASE_POOL_SIZE') or 'default'}, "
          f"{app_processes} app process(es))\n")
    print(f"| target | 2xx/s, s {SKIP}–{SECONDS} | 2xx/s, whole run | p50 ms | p99 ms | non-2xx | ≥ 500 | socket errors "
          f"| vs fake alone |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        rps = med(name, "rps")
        print(f"| {name} | {rps:,.1f} | {med(name, 'rps_run'):,.1f} | {med(name, 'p50_us') / 1000:.1f} | "
              f"{med(name, 'p99_us') / 1000:.1f} | "
              f"{sum(r['non2xx'] for r in runs[name])} | {sum(r['s5xx'] for r in runs[name])} | "
              f"{sum(r['socket_errors'] for r in runs[name])} | {rps / fake_rps:.1%} |")
    print(f"\nDuring the app runs ({PROBE_HZ} probes/s each, kept-alive HTTPS connections; p50/p99 are medians of the "
          f"per-round figures, max over all rounds):\n")
    print("| probe | sent | p50 ms | p99 ms | worst round p99 ms | max ms | non-2xx | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    probe_p99 = {}
    for probe in runs[names[1]][0]["probes"]:
        per = [r["probes"][probe] for r in runs[names[1]]]
        p50 = statistics.median(p["p50"] for p in per if p["p50"] is not None)
        probe_p99[probe] = statistics.median(p["p99"] for p in per if p["p99"] is not None)
        worst = max(p["p99"] for p in per if p["p99"] is not None)
        print(f"| {probe} | {sum(p['sent'] for p in per)} | {p50:.2f} | {probe_p99[probe]:.2f} | {worst:.2f} | "
              f"{max(p['max'] for p in per if p['max'] is not None):.2f} | {sum(p['non2xx'] for p in per)} | "
              f"{sum(len(p['errors']) for p in per)} |")
    max_connections = max((r["connections"] or 0) for r in runs[names[1]])
    print(f"\nPostgreSQL connections of the app (pg_stat_activity, application_name = 'payments', every "
          f"{SAMPLE_SECONDS} s): max {max_connections} per round "
          f"{[r['connections'] for r in runs[names[1]]]} (at most {max(r['active'] or 0 for r in runs[names[1]])} active); "
          f"limit {pool_size} × {app_processes} = {connection_limit}.")
    print(f"\nCores used per component during the runs (medians of the rounds; {os.cpu_count()} cores in all), and "
          f"the kernel's listen-queue overflows (connections dropped by a full accept queue, summed):\n")
    components = [c for c in runs[names[1]][0]["cpu"] if c != "listen overflows"]
    print("| run | " + " | ".join(components) + " | listen overflows |")
    print("|---|" + "---:|" * (len(components) + 1))
    for name in names:
        print(f"| {name.split(':')[0]} | " + " | ".join(f"{statistics.median(r['cpu'][c] for r in runs[name]):.2f}"
                                                        for c in components)
              + f" | {sum(r['cpu']['listen overflows'] for r in runs[name])} |")
    print(f"\nDatabase check: {made} payments with an intent for {answered} create-intents answered 2xx (warm-up "
          f"included; requests still in flight when wrk stopped complete after it counted).")

    failures = []
    if ratio < MIN_RATIO:
        failures.append(f"create-intent at {app_rps:.1f}/s, {ratio:.1%} of the fake alone ({fake_rps:.1f}/s), "
                        f"below {MIN_RATIO:.0%}")
    for probe, p99 in probe_p99.items():
        if p99 > MAX_P99_MS:
            failures.append(f"{probe} p99 {p99:.1f} ms during the scenario, above {MAX_P99_MS:.0f} ms")
    for name in names:
        for r in runs[name]:
            if r["s5xx"] or r["socket_errors"] or (name == names[0] and r["non2xx"]):
                failures.append(f"{name}: {r['non2xx']} non-2xx ({r['s5xx']} ≥ 500), {r['socket_errors']} socket errors: "
                                f"{r['samples'][:300]}")
    for r in runs[names[1]]:
        for probe, p in r["probes"].items():
            if p["5xx"] or p["errors"]:
                failures.append(f"{probe}: {p['5xx']} answers ≥ 500 ({p['codes']}), errors {p['errors'][:3]}")
        if r.get("webhook_check"):
            failures.append(f"webhook probe: {r['webhook_check']}")
        if r["connections"] is None:
            failures.append("no pg_stat_activity sample during an app run")
    if max_connections > connection_limit:
        failures.append(f"the app held {max_connections} PostgreSQL connections, above {pool_size} × {app_processes}")
    if made < answered:
        failures.append(f"only {made} payments with an intent for {answered} create-intents answered 2xx")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
