import Foundation

/// Settings of a `ConnectionPool`, with documented defaults.
public struct PoolConfiguration: Sendable {
    /// libpq URI or `key=value` string.
    public var connectionString: String
    /// Most connections the pool opens (`DATABASE_POOL_SIZE`, default 16).
    public var size: Int
    /// How long a caller waits for a free connection before `poolExhausted` (`DATABASE_POOL_TIMEOUT_MS`, default 2 s).
    public var acquireTimeout: Duration
    /// Bound on every statement (0 disables).
    public var statementTimeout: Duration
    /// Bound on connecting.
    public var connectTimeoutSeconds: Int
    /// `application_name`, visible in `pg_stat_activity`.
    public var applicationName: String

    /// Creates a configuration.
    public init(
        connectionString: String, size: Int = 16, acquireTimeout: Duration = .seconds(2),
        statementTimeout: Duration = .seconds(15), connectTimeoutSeconds: Int = 5,
        applicationName: String = "payments"
    ) {
        self.connectionString = connectionString
        self.size = size
        self.acquireTimeout = acquireTimeout
        self.statementTimeout = statementTimeout
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.applicationName = applicationName
    }
}

/// A point-in-time view of a pool, for `/metrics`.
public struct PoolStatistics: Sendable {
    /// Configured maximum.
    public let size: Int
    /// Connections that exist (lent or idle).
    public let open: Int
    /// Connections lent out right now.
    public let inUse: Int
    /// Callers waiting for a connection right now.
    public let waiting: Int
}

/// One bounded set of PostgreSQL connections shared by every thread of the process.
///
/// Connections are lent for the length of one closure (`withConnection`, `withTransaction`)
/// and always come back, whatever the closure does; a lent connection belongs to the borrowing
/// thread alone. A connection that broke (or was left inside a transaction) is closed on return
/// and replaced by a fresh one on demand, so the pool recovers by itself after PostgreSQL restarts.
/// When no connection frees up within `acquireTimeout` the caller gets
/// `DatabaseError(kind: .poolExhausted)` and nothing has been sent to the server.
public final class ConnectionPool: @unchecked Sendable {
    // @unchecked: every mutable field below is read and written only while `condition` is locked.
    private let configuration: PoolConfiguration
    private let condition = NSCondition()
    private var idle: [Connection] = []
    private var open = 0
    private var inUse = 0
    private var waiting = 0

    /// Creates an empty pool; connections open lazily, on first use.
    public init(configuration: PoolConfiguration) {
        precondition(configuration.size >= 1, "a pool needs at least one connection")
        self.configuration = configuration
    }

    /// Lends a connection to `body` and takes it back afterwards.
    public func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        let connection = try acquire()
        defer { release(connection) }
        return try body(connection)
    }

    /// Lends a connection for one transaction: BEGIN, `body`, COMMIT (ROLLBACK when it throws).
    public func withTransaction<T>(_ body: (Connection) throws -> T) throws -> T {
        try withConnection { try $0.withTransaction(body) }
    }

    /// The pool's counters now.
    public var statistics: PoolStatistics {
        condition.lock()
        defer { condition.unlock() }
        return PoolStatistics(size: configuration.size, open: open, inUse: inUse, waiting: waiting)
    }

    private func acquire() throws(DatabaseError) -> Connection {
        let deadline = Date().addingTimeInterval(Self.seconds(configuration.acquireTimeout))
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let connection = idle.popLast() {
                inUse += 1
                return connection
            }
            if open < configuration.size {
                open += 1
                inUse += 1
                // Cheap: a Connection connects on its first statement, outside this lock.
                return Connection(
                    connectionString: configuration.connectionString,
                    applicationName: configuration.applicationName,
                    statementTimeout: configuration.statementTimeout,
                    connectTimeoutSeconds: configuration.connectTimeoutSeconds)
            }
            waiting += 1
            let woken = condition.wait(until: deadline)
            waiting -= 1
            if !woken && idle.isEmpty && open >= configuration.size {
                throw DatabaseError(
                    kind: .poolExhausted, sqlState: nil,
                    serverMessage: "no database connection became free within the pool timeout")
            }
        }
    }

    private func release(_ connection: Connection) {
        // A closure that threw mid-transaction must not hand an open transaction to the next borrower.
        connection.rollbackQuietly()
        let reusable = !connection.isBroken
        condition.lock()
        inUse -= 1
        if reusable { idle.append(connection) } else { open -= 1 }
        condition.signal()
        condition.unlock()
    }

    private static func seconds(_ duration: Duration) -> TimeInterval {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
