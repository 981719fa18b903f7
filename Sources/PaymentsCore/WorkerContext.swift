import Postgres
import Stripe

/// What one worker thread owns: its database connection and its Stripe client (one curl
/// handle). Created inside the thread and never shared, so responders use them without locks.
public final class WorkerContext {
    /// This thread's PostgreSQL connection (reconnects by itself).
    public let database: Connection
    /// This thread's Stripe client.
    public let stripe: StripeClient
    /// Process-wide, read-only state shared by all workers.
    public let shared: SharedState
    /// The worker's index (metrics shard).
    public let workerIndex: Int

    /// Creates a context for one worker; throws only when libcurl cannot allocate a handle.
    public init(shared: SharedState, workerIndex: Int = 0) throws {
        self.shared = shared
        self.workerIndex = workerIndex
        database = Connection(connectionString: shared.configuration.databaseURL)
        stripe = try StripeClient(configuration: shared.configuration.stripe)
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

    /// Bundles the shared state.
    public init(configuration: ServerConfiguration, logger: Logger, metrics: Metrics, migrations: [Migration]) {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.migrations = migrations
    }
}
