import Synchronization

/// Process-wide counters, exposed in Prometheus text format at `/metrics`.
public final class Metrics: Sendable {
    private let counters = Mutex<[String: Int]>([:])
    private let durationMicroseconds = Atomic<Int>(0)

    /// An empty set of counters.
    public init() {}

    /// Counts one finished request.
    func recordRequest(route: String, status: Int, microseconds: Int) {
        counters.withLock { $0["payments_http_requests_total{route=\"\(route)\",status=\"\(status)\"}", default: 0] += 1 }
        durationMicroseconds.add(microseconds, ordering: .relaxed)
    }

    /// Adds one to a named counter (label set included in the name).
    public func increment(_ name: String) {
        counters.withLock { $0[name, default: 0] += 1 }
    }

    /// The exposition text.
    func render() -> String {
        let snapshot = counters.withLock { $0 }
        var requests = 0
        var lines = ["# TYPE payments_http_requests_total counter"]
        for (name, value) in snapshot.sorted(by: { $0.key < $1.key }) {
            lines.append("\(name) \(value)")
            if name.hasPrefix("payments_http_requests_total") { requests += value }
        }
        let seconds = Double(durationMicroseconds.load(ordering: .relaxed)) / 1_000_000
        lines.append("# TYPE payments_http_request_duration_seconds summary")
        lines.append("payments_http_request_duration_seconds_sum \(seconds)")
        lines.append("payments_http_request_duration_seconds_count \(requests)")
        return lines.joined(separator: "\n") + "\n"
    }
}
