import Synchronization

/// Process-wide counters, histograms and gauges, exposed in Prometheus text format at
/// `/metrics`. Names carry their labels (`name{label="value"}`), which keeps this a dictionary;
/// every label value is bounded (route patterns, lanes, Stripe operations, outcomes).
public final class Metrics: Sendable {
    private let counters = Mutex<[String: Int]>([:])
    /// Request counts and latencies are sharded by worker so that workers do not contend for one lock.
    private let requestShards: [Shard] = (0..<Metrics.shardCount).map { _ in Shard() }
    private static let shardCount = 64
    /// Histograms other than the requests' (webhook processing, Stripe calls), by series.
    private let histograms = Mutex<[Series: Histogram]>([:])
    /// Workers of each lane running a request now (lane saturation).
    private let busyWorkers = Mutex<[String: Int]>([:])

    /// Upper bounds (seconds) of the webhook processing histogram.
    static let webhookBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
    /// Upper bounds (seconds) of request and Stripe-call latencies: milliseconds for reads up to
    /// the Stripe deadline's range.
    static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30]

    /// An empty set of counters.
    public init() {}

    /// One histogram series: its family and its label pairs (`route="/x",status_class="2xx"`).
    private struct Series: Hashable, Comparable {
        let family: String
        let labels: String
        static func < (lhs: Series, rhs: Series) -> Bool { (lhs.family, lhs.labels) < (rhs.family, rhs.labels) }
    }

    /// Cumulative bucket counts, count and sum of one series.
    private struct Histogram {
        var buckets: [Int]
        var count = 0
        var sum = 0.0

        init(bounds: [Double]) { buckets = [Int](repeating: 0, count: bounds.count) }

        mutating func observe(_ seconds: Double, bounds: [Double]) {
            for (index, bound) in bounds.enumerated() where seconds <= bound { buckets[index] += 1 }
            count += 1
            sum += seconds
        }

        mutating func add(_ other: Histogram) {
            for index in buckets.indices { buckets[index] += other.buckets[index] }
            count += other.count
            sum += other.sum
        }
    }

    private struct RequestKey: Hashable {
        let lane: String
        let route: String
        let status: Int
    }

    /// One worker's request counts and latencies (a class, since a `Mutex` cannot be stored in an array).
    private final class Shard: Sendable {
        let counts = Mutex<[RequestKey: Int]>([:])
        let latencies = Mutex<[Series: Histogram]>([:])
    }

    /// Counts one finished request on the calling worker's shard, and its latency by route
    /// pattern and status class.
    func recordRequest(lane: String, route: String, status: Int, microseconds: Int, worker: Int) {
        let shard = requestShards[worker % Self.shardCount]
        shard.counts.withLock { $0[RequestKey(lane: lane, route: route, status: status), default: 0] += 1 }
        let series = Series(
            family: "payments_http_request_duration_seconds",
            labels: "route=\"\(route)\",status_class=\"\(status / 100)xx\"")
        shard.latencies.withLock {
            $0[series, default: Histogram(bounds: Self.latencyBuckets)].observe(
                Double(microseconds) / 1_000_000, bounds: Self.latencyBuckets)
        }
    }

    /// Counters that exist before their first event, at 0, so that `rate()` and alert rules see
    /// them from the first scrape (a series that appears with its first event hides that event).
    func declare(_ names: [String]) {
        counters.withLock { counters in
            for name in names where counters[name] == nil { counters[name] = 0 }
        }
    }

    /// Adds one to a named counter (label set included in the name).
    public func increment(_ name: String) {
        counters.withLock { $0[name, default: 0] += 1 }
    }

    /// Records how long one webhook delivery took to process.
    func observeWebhook(seconds: Double) {
        observe(Series(family: "payments_webhook_processing_seconds", labels: ""), seconds, bounds: Self.webhookBuckets)
    }

    /// Counts and times one Stripe call (the Stripe client's observer): by operation and outcome,
    /// and its latency by operation.
    func observeStripeCall(operation: String, outcome: String, seconds: Double) {
        increment("payments_stripe_requests_total{operation=\"\(operation)\",outcome=\"\(outcome)\"}")
        observe(
            Series(family: "payments_stripe_request_duration_seconds", labels: "operation=\"\(operation)\""), seconds,
            bounds: Self.latencyBuckets)
    }

    private func observe(_ series: Series, _ seconds: Double, bounds: [Double]) {
        histograms.withLock { $0[series, default: Histogram(bounds: bounds)].observe(seconds, bounds: bounds) }
    }

    /// Marks a worker of `lane` busy (`true`) or free again (`false`).
    func setWorkerBusy(lane: String, _ isBusy: Bool) {
        busyWorkers.withLock { $0[lane, default: 0] += isBusy ? 1 : -1 }
    }

    /// The exposition text. `scraped` are the families read at scrape time (the database's
    /// gauges and the sweeper's counters, the pool, the lanes). Every series carries `instance`,
    /// so the scrape of each process is told apart.
    func render(scraped: [ScrapedFamily] = [], instance: String) -> String {
        var snapshot = counters.withLock { $0 }
        var histogramSnapshot = histograms.withLock { $0 }
        for shard in requestShards {
            for (key, value) in shard.counts.withLock({ $0 }) {
                snapshot[
                    "payments_http_requests_total{lane=\"\(key.lane)\",route=\"\(key.route)\",status=\"\(key.status)\"}",
                    default: 0] += value
            }
            for (series, histogram) in shard.latencies.withLock({ $0 }) {
                histogramSnapshot[series, default: Histogram(bounds: Self.latencyBuckets)].add(histogram)
            }
        }
        var lines: [String] = []
        var typed: Set<String> = []
        for (name, value) in snapshot.sorted(by: { $0.key < $1.key }) {
            let family = String(name.prefix { $0 != "{" })
            if typed.insert(family).inserted { lines.append("# TYPE \(family) counter") }
            lines.append("\(name) \(value)")
        }
        // The webhook histogram is always there (its buckets at zero before the first delivery).
        let webhook = Series(family: "payments_webhook_processing_seconds", labels: "")
        if histogramSnapshot[webhook] == nil { histogramSnapshot[webhook] = Histogram(bounds: Self.webhookBuckets) }
        for (series, histogram) in histogramSnapshot.sorted(by: { $0.key < $1.key }) {
            if typed.insert(series.family).inserted { lines.append("# TYPE \(series.family) histogram") }
            let bounds = series.family == webhook.family ? Self.webhookBuckets : Self.latencyBuckets
            let prefix = series.labels.isEmpty ? "" : series.labels + ","
            let braced = series.labels.isEmpty ? "" : "{\(series.labels)}"
            for (index, bound) in bounds.enumerated() {
                lines.append("\(series.family)_bucket{\(prefix)le=\"\(bound)\"} \(histogram.buckets[index])")
            }
            lines.append("\(series.family)_bucket{\(prefix)le=\"+Inf\"} \(histogram.count)")
            lines.append("\(series.family)_sum\(braced) \(histogram.sum)")
            lines.append("\(series.family)_count\(braced) \(histogram.count)")
        }
        for family in scraped where typed.insert(family.name).inserted {
            lines.append("# TYPE \(family.name) \(family.type.rawValue)")
            for sample in family.samples {
                let braced = sample.labels.isEmpty ? "" : "{\(sample.labels)}"
                lines.append("\(family.name)\(braced) \(Self.format(sample.value))")
            }
        }
        return lines.map { Self.labelled($0, instance: instance) }.joined(separator: "\n") + "\n"
    }

    /// The lanes' gauges: workers and busy workers per lane.
    func laneFamilies(workers: [(lane: String, count: Int)]) -> [ScrapedFamily] {
        let busy = busyWorkers.withLock { $0 }
        return [
            ScrapedFamily(
                name: "payments_lane_workers", type: .gauge,
                samples: workers.map { ("lane=\"\($0.lane)\"", Double($0.count)) }),
            ScrapedFamily(
                name: "payments_lane_busy_workers", type: .gauge,
                samples: workers.map { ("lane=\"\($0.lane)\"", Double(busy[$0.lane] ?? 0)) }),
        ]
    }

    /// Whole numbers without a fraction (counts, amounts, timestamps); others as Swift prints them.
    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
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

/// A metric family whose values are read at scrape time (from the database, the pool, the lanes).
struct ScrapedFamily {
    /// The exposition's type of the family.
    enum Kind: String {
        case gauge, counter
    }

    /// The family's name (`payments_db_pool_size`).
    let name: String
    /// Gauge or counter.
    let type: Kind
    /// Each sample's label pairs (`lane="core"`, or empty) and value.
    let samples: [(labels: String, value: Double)]
}
