import Synchronization

/// Process-wide counters and one latency histogram, exposed in Prometheus text format at
/// `/metrics`. Names carry their labels (`name{label="value"}`), which keeps this a dictionary.
public final class Metrics: Sendable {
    private let counters = Mutex<[String: Int]>([:])
    /// Request counts are sharded by worker so that workers do not contend for one lock.
    private let requestShards: [Shard] = (0..<Metrics.shardCount).map { _ in Shard() }
    private static let shardCount = 64
    private let durationMicroseconds = Atomic<Int>(0)
    /// Upper bounds (seconds) of the webhook processing histogram.
    static let webhookBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
    private let webhookHistogram = Mutex<(buckets: [Int], count: Int, sum: Double)>(
        ([Int](repeating: 0, count: 11), 0, 0))

    /// An empty set of counters.
    public init() {}

    private struct RequestKey: Hashable {
        let lane: String
        let route: String
        let status: Int
    }

    /// One worker's request counts (a class, since a `Mutex` cannot be stored in an array).
    private final class Shard: Sendable {
        let counts = Mutex<[RequestKey: Int]>([:])
    }

    /// Counts one finished request on the calling worker's shard.
    func recordRequest(lane: String, route: String, status: Int, microseconds: Int, worker: Int) {
        requestShards[worker % Self.shardCount].counts.withLock {
            $0[RequestKey(lane: lane, route: route, status: status), default: 0] += 1
        }
        durationMicroseconds.add(microseconds, ordering: .relaxed)
    }

    /// Adds one to a named counter (label set included in the name).
    public func increment(_ name: String) {
        counters.withLock { $0[name, default: 0] += 1 }
    }

    /// Records how long one webhook delivery took to process.
    func observeWebhook(seconds: Double) {
        webhookHistogram.withLock { histogram in
            for (index, bound) in Self.webhookBuckets.enumerated() where seconds <= bound {
                histogram.buckets[index] += 1
            }
            histogram.count += 1
            histogram.sum += seconds
        }
    }

    /// The exposition text; `gauges` are values read at scrape time (the inbox backlog, the
    /// pool). Every series carries `instance`, so the scrape of each process is told apart.
    func render(gauges: [(String, Int)] = [], instance: String) -> String {
        var snapshot = counters.withLock { $0 }
        for shard in requestShards {
            for (key, value) in shard.counts.withLock({ $0 }) {
                snapshot[
                    "payments_http_requests_total{lane=\"\(key.lane)\",route=\"\(key.route)\",status=\"\(key.status)\"}",
                    default: 0] += value
            }
        }
        var requests = 0
        var lines: [String] = []
        var typed: Set<String> = []
        for (name, value) in snapshot.sorted(by: { $0.key < $1.key }) {
            let family = String(name.prefix { $0 != "{" })
            if typed.insert(family).inserted { lines.append("# TYPE \(family) counter") }
            lines.append("\(name) \(value)")
            if family == "payments_http_requests_total" { requests += value }
        }
        let seconds = Double(durationMicroseconds.load(ordering: .relaxed)) / 1_000_000
        lines.append("# TYPE payments_http_request_duration_seconds summary")
        lines.append("payments_http_request_duration_seconds_sum \(seconds)")
        lines.append("payments_http_request_duration_seconds_count \(requests)")

        let histogram = webhookHistogram.withLock { $0 }
        lines.append("# TYPE payments_webhook_processing_seconds histogram")
        for (index, bound) in Self.webhookBuckets.enumerated() {
            lines.append("payments_webhook_processing_seconds_bucket{le=\"\(bound)\"} \(histogram.buckets[index])")
        }
        lines.append("payments_webhook_processing_seconds_bucket{le=\"+Inf\"} \(histogram.count)")
        lines.append("payments_webhook_processing_seconds_sum \(histogram.sum)")
        lines.append("payments_webhook_processing_seconds_count \(histogram.count)")
        var gaugeFamilies: Set<String> = []
        for (name, value) in gauges {
            let family = String(name.prefix { $0 != "{" })
            if gaugeFamilies.insert(family).inserted { lines.append("# TYPE \(family) gauge") }
            lines.append("\(name) \(value)")
        }
        return lines.map { Self.labelled($0, instance: instance) }.joined(separator: "\n") + "\n"
    }

    /// Adds `instance="…"` as the first label of a sample line (comment lines pass through).
    static func labelled(_ line: String, instance: String) -> String {
        guard !line.hasPrefix("#"), let end = line.firstIndex(where: { $0 == "{" || $0 == " " }) else { return line }
        let escaped = instance.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        let label = "instance=\"\(escaped)\""
        return line[end] == "{"
            ? "\(line[...end])\(label),\(line[line.index(after: end)...])"
            : "\(line[..<end]){\(label)}\(line[end...])"
    }
}
