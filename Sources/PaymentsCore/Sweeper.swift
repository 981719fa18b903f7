import Postgres

/// Periodic housekeeping (`payments sweep`). Each task is one idempotent statement, safe to run
/// from several hosts at once; later families add theirs (expired reservations, parked events).
struct Sweeper {
    /// A named task and the statement that performs it.
    struct Task {
        let name: String
        let query: SQLQuery
    }

    static let tasks: [Task] = [
        Task(name: "purge_idempotency_keys",
             query: "DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'"),
        Task(name: "purge_rate_limit_windows",
             query: "DELETE FROM rate_limits WHERE window_start < now() - interval '1 day'"),
    ]

    /// Runs every task once; returns the rows each one touched.
    static func runOnce(on connection: Connection) throws -> [(String, Int)] {
        try tasks.map { task in (task.name, try connection.query(task.query).affectedRows) }
    }
}
