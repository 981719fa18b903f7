import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Process-wide counters, histograms and gauges, exposed in Prometheus text format at
/// `/metrics`. Names carry their labels (`name{label="value"}`), which keeps this a dictionary;
/// every label value is bounded (route patterns, lanes, Stripe operations, outcomes).
public final class Metrics: Sendable {
    /// Every series is sharded by thread, so that workers do not contend for one lock; a scrape
    /// adds the shards up.
    private let shards: [Shard] = (0..<Metrics.shardCount).map { _ in Shard() }
    private static let shardCount = 64

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

    /// One shard of every series (a class, since a `Mutex` cannot be stored in an array).
    private final class Shard: Sendable {
        let counters = Mutex<[String: Int]>([:])
        let requests = Mutex<[RequestKey: Int]>([:])
        let histograms = Mutex<[Series: Histogram]>([:])
        /// Workers of each lane running a request now (lane saturation): a worker marks itself
        /// busy and free again on its own thread, so the shards' sum is the lane's count.
        let busyWorkers = Mutex<[String: Int]>([:])
    }

    /// The calling thread's shard: its thread id, Fibonacci-hashed (thread ids are addresses a
    /// stack size apart, which a plain modulo would fold onto a few shards); its top 6 bits pick one
    /// of the 64.
    private var shard: Shard {
        let thread = UInt64(pthread_self())
        return shards[Int((thread &* 0x9E37_79B9_7F4A_7C15) >> 58)]
    }

    /// Counts one finished request on the calling worker's shard, and its latency by route
    /// pattern and status class.
    func recordRequest(lane: String, route: String, status: Int, microseconds: Int) {
        let shard = shard
        shard.requests.withLock { $0[RequestKey(lane: lane, route: route, status: status), default: 0] += 1 }
        let series = Series(
            family: "payments_http_request_duration_seconds",
            labels: "route=\"\(route)\",status_class=\"\(status / 100)xx\"")
        shard.histograms.withLock {
            $0[series, default: Histogram(bounds: Self.latencyBuckets)].observe(
                Double(microseconds) / 1_000_000, bounds: Self.latencyBuckets)
        }
    }

    /// Counters that exist before their first event, at 0, so that `rate()` and alert rules see
    /// them from the first scrape (a series that appears with its first event hides that event).
    func declare(_ names: [String]) {
        shards[0].counters.withLock { counters in
            for name in names where counters[name] == nil { counters[name] = 0 }
        }
    }

    /// Adds one to a named counter (label set included in the name).
    public func increment(_ name: String) {
        shard.counters.withLock { $0[name, default: 0] += 1 }
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
        shard.histograms.withLock { $0[series, default: Histogram(bounds: bounds)].observe(seconds, bounds: bounds) }
    }

    /// Marks a worker of `lane` busy (`true`) or free again (`false`).
    func setWorkerBusy(lane: String, _ isBusy: Bool) {
        shard.busyWorkers.withLock { $0[lane, default: 0] += isBusy ? 1 : -1 }
    }

    /// The exposition text. `scraped` are the families read at scrape time (the database's
    /// gauges and the sweeper's counters, the pool, the lanes). Every series carries `instance`,
    /// so the scrape of each process is told apart.
    func render(scraped: [ScrapedFamily] = [], instance: String) -> String {
        var snapshot: [String: Int] = [:]
        var histogramSnapshot: [Series: Histogram] = [:]
        for shard in shards {
            snapshot.merge(shard.counters.withLock { $0 }, uniquingKeysWith: +)
            for (key, value) in shard.requests.withLock({ $0 }) {
                snapshot[
                    "payments_http_requests_total{lane=\"\(key.lane)\",route=\"\(key.route)\",status=\"\(key.status)\"}",
                    default: 0] += value
            }
            histogramSnapshot.merge(shard.histograms.withLock { $0 }) { total, more in
                var total = total
                total.add(more)
                return total
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
        let busy = shards.reduce(into: [String: Int]()) { busy, shard in
            busy.merge(shard.busyWorkers.withLock { $0 }, uniquingKeysWith: +)
        }
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
