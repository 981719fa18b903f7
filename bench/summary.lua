-- wrk script for scripts/bench.sh: builds no requests of its own (wrk's plain GET, so there
-- is nothing to load per thread and no thread starts before another is ready) and prints
-- one JSON line when the run ends. wrk counts statuses >= 400 in errors.status.
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status_errors":%d,"socket_errors":%d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.status, e.connect + e.read + e.write + e.timeout))
end
