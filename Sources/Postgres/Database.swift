/// Runs statements: a lent `Connection` itself, or a `Database` that borrows one per call.
/// Code that only needs to run statements takes `some SQLExecutor`, so it works the same
/// inside a transaction and outside one.
public protocol SQLExecutor {
    /// Runs one statement and returns its rows.
    @discardableResult
    func query(_ query: SQLQuery) throws(DatabaseError) -> QueryResult

    /// Runs `body` inside BEGIN … COMMIT on one connection, rolling back when it throws.
    func withTransaction<T>(_ body: (Connection) throws -> T) throws -> T
}

extension Connection: SQLExecutor {}

/// One thread's view of the process's `ConnectionPool`: every statement or transaction
/// borrows a connection for exactly its own length, so nothing is held while the thread waits
/// on anything else (a Stripe call, a client). Nested calls inside a borrow reuse the lent
/// connection rather than asking the pool for a second one (which could deadlock a small pool).
/// Not Sendable: it belongs to the thread that made it.
public final class Database: SQLExecutor {
    /// The shared pool.
    public let pool: ConnectionPool
    private var lent: Connection?
    /// Round trips to the server made through this view so far (for the request log).
    public private(set) var roundTrips = 0

    /// A view of `pool` for the calling thread.
    public init(pool: ConnectionPool) {
        self.pool = pool
    }

    /// Lends a connection to `body` (the one already lent to this thread, when inside a borrow).
    public func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        if let lent { return try body(lent) }
        return try pool.withConnection { connection in
            lent = connection
            let before = connection.roundTrips
            defer {
                lent = nil
                roundTrips += connection.roundTrips - before
            }
            return try body(connection)
        }
    }

    @discardableResult
    public func query(_ query: SQLQuery) throws(DatabaseError) -> QueryResult {
        do {
            return try withConnection { try $0.query(query) }
        } catch let error as DatabaseError {
            throw error
        } catch {
            preconditionFailure("Connection.query throws only DatabaseError")
        }
    }

    public func withTransaction<T>(_ body: (Connection) throws -> T) throws -> T {
        try withConnection { try $0.withTransaction(body) }
    }
}
