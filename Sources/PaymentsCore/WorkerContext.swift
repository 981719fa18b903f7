import Postgres

/// What one worker thread owns: its database connection. Created inside the thread and never
/// shared, so responders can use it without locks. Later families add their Stripe client here.
public final class WorkerContext {
    /// This thread's PostgreSQL connection (reconnects by itself).
    public let database: Connection
    /// Process-wide, read-only state shared by all workers.
    public let shared: SharedState

    /// Creates a context for one worker.
    public init(shared: SharedState) {
        self.shared = shared
        database = Connection(connectionString: shared.configuration.databaseURL)
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
