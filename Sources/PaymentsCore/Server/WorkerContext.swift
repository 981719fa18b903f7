import Postgres
import Stripe

/// Which lane a route runs on. Routes that call Stripe run on workers of their own, so that a
/// slow Stripe never makes webhooks, reads or health checks wait (nginx routes each location
/// to its lane's socket).
public enum LaneKind: String, Sendable, CaseIterable {
    /// Webhooks, reads, ops: workers that never wait on Stripe.
    case core
    /// Routes that call Stripe.
    case stripe
}

/// What one worker thread owns: its view of the shared database pool and its Stripe client
/// (one curl handle). Created inside the thread and never shared, so responders use them
/// without locks.
public final class WorkerContext {
    /// This thread's view of the process's connection pool: each statement or transaction
    /// borrows a connection for its own length only.
    public let database: Database
    /// This thread's Stripe client.
    public let stripe: StripeClient
    /// Process-wide, read-only state shared by all workers.
    public let shared: SharedState
    /// The lane this worker serves.
    public let lane: LaneKind

    /// Creates a context for one worker; throws only when libcurl cannot allocate a handle.
    public init(shared: SharedState, lane: LaneKind = .core) throws {
        self.shared = shared
        self.lane = lane
        database = Database(pool: shared.pool)
        stripe = try StripeClient(configuration: shared.stripeConfiguration)
    }
}

/// Read-only (or internally synchronised) state every worker shares.
public struct SharedState: Sendable {
    /// Start-up configuration.
    public let configuration: ServerConfiguration
    /// The structured logger.
    public let logger: Logger
    /// Request counters for `/metrics`.
    public let metrics: Metrics
    /// The migration files this binary expects to be applied.
    public let migrations: [Migration]
    /// The process's one PostgreSQL pool.
    public let pool: ConnectionPool
    /// Stripe calls requests hand off instead of waiting for them.
    let followUps: StripeFollowUps
    /// Samples the audit rows of anonymous refusals (see `FailureAudit`).
    let refusalSampler = RefusalSampler()
    /// The configured Stripe settings, with an observer that counts and times every call in `metrics`.
    let stripeConfiguration: StripeConfiguration

    /// Bundles the shared state and opens (lazily) the process's pool.
    public init(configuration: ServerConfiguration, logger: Logger, metrics: Metrics, migrations: [Migration]) {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.migrations = migrations
        pool = ConnectionPool(configuration: configuration.pool)
        var stripe = configuration.stripe
        stripe.observer = { [metrics] call in
            metrics.observeStripeCall(
                operation: call.operation, outcome: call.outcome,
                seconds: Double(call.duration.components.seconds) + Double(call.duration.components.attoseconds) / 1e18)
        }
        stripeConfiguration = stripe
        metrics.declare(
            LaneKind.allCases.map { "payments_lane_rejections_total{lane=\"\($0.rawValue)\"}" }
                + WebhookEndpoint.allCases.flatMap { endpoint in
                    WebhookSignatureFailure.allCases.map {
                        "payments_webhook_signature_failures_total{endpoint=\"\(endpoint.rawValue)\",reason=\"\($0.rawValue)\"}"
                    }
                }
                + StripeFollowUps.kinds.flatMap { kind in
                    ["ok", "failed"].map { "payments_stripe_follow_ups_total{kind=\"\(kind)\",outcome=\"\($0)\"}" }
                        + ["payments_stripe_follow_ups_dropped_total{kind=\"\(kind)\"}"]
                } + [
                    "payments_database_pool_timeouts_total",
                    "payments_database_unavailable_total", "payments_metrics_database_errors_total",
                ])
        followUps = StripeFollowUps(configuration: stripe, metrics: metrics)
    }
}
