internal import CLibPQ
import Foundation

/// One PostgreSQL connection, owned by one thread (it is deliberately not Sendable).
///
/// It connects lazily and reconnects by itself: when the server goes away the failing call
/// throws `DatabaseError(kind: .unavailable)`, and the next call tries `PQreset` first, so a
/// process recovers without a restart once the database is back.
public final class Connection {
    private let connectionString: String
    private let settings: [(String, String)]
    private var handle: OpaquePointer?
    /// Statements prepared on the current server session, by name, with their SQL text.
    private var preparedStatements: [String: String] = [:]
    /// Round trips to the server so far (every statement, prepare and transaction command).
    public private(set) var roundTrips = 0

    /// Creates an unconnected connection for a libpq URI or `key=value` string.
    /// `statementTimeout` bounds every statement (0 disables); `connectTimeoutSeconds` bounds connecting.
    public init(
        connectionString: String, applicationName: String = "payments",
        statementTimeout: Duration = .seconds(15), connectTimeoutSeconds: Int = 5
    ) {
        self.connectionString = connectionString
        let timeout =
            statementTimeout.components.seconds * 1000
            + statementTimeout.components.attoseconds / 1_000_000_000_000_000
        settings = [
            ("application_name", applicationName),
            ("connect_timeout", String(connectTimeoutSeconds)),
            // Over TCP, a server that vanished (failover, a lost host) must fail the call, not
            // hang it: keepalives notice an idle peer is gone, tcp_user_timeout unacknowledged data.
            ("keepalives", "1"), ("keepalives_idle", "30"), ("keepalives_interval", "10"), ("keepalives_count", "3"),
            ("tcp_user_timeout", "30000"),
            ("options", "-c statement_timeout=\(timeout) -c client_min_messages=warning"),
        ]
    }

    deinit {
        if let handle { PQfinish(handle) }
    }

    /// Runs one statement and returns its rows.
    @discardableResult
    public func query(_ query: SQLQuery) throws(DatabaseError) -> QueryResult {
        // libpq reads text parameters up to their first NUL: refuse one rather than let a value
        // be silently cut short (`"admin\u{0}x"` must never be looked up as `"admin"`).
        if query.binds.contains(where: { if case .text(let text)? = $0 { text.utf8.contains(0) } else { false } }) {
            throw DatabaseError(
                kind: .invalidData, sqlState: "22021",
                serverMessage: "a parameter contains a NUL character, which text cannot hold")
        }
        let connection = try connected()
        if let name = query.preparedName {
            return try executePrepared(name, query, on: connection, isRetry: true)
        }
        roundTrips += 1
        let result = Self.execute(query, on: connection)
        defer { PQclear(result) }
        return try check(result, connection: connection)
    }

    /// Executes a named statement, preparing it first on this session when needed.
    private func executePrepared(
        _ name: String, _ query: SQLQuery, on connection: OpaquePointer, isRetry: Bool = false
    ) throws(DatabaseError) -> QueryResult {
        if let known = preparedStatements[name] {
            precondition(known == query.sql, "prepared statement \(name) used with two different SQL texts")
        } else {
            roundTrips += 1
            let prepared = PQprepare(connection, name, query.sql, Int32(query.binds.count), nil)
            defer { PQclear(prepared) }
            _ = try check(prepared, connection: connection)
            preparedStatements[name] = query.sql
        }
        roundTrips += 1
        let result = Self.withParameters(query.binds) { count, values, lengths, formats in
            PQexecPrepared(connection, name, count, values, lengths, formats, 0)
        }
        defer { PQclear(result) }
        do {
            return try check(result, connection: connection)
        } catch  where !isRetry && error.sqlState == "26000" && PQtransactionStatus(connection) == PQTRANS_IDLE {
            // The session lost it (`DISCARD ALL` by a pooler in front of the server): prepare again, once.
            preparedStatements[name] = nil
            return try executePrepared(name, query, on: connection, isRetry: true)
        }
    }

    /// Runs `body` inside BEGIN … COMMIT, rolling back when it throws.
    public func withTransaction<T>(_ body: (Connection) throws -> T) throws -> T {
        try query("BEGIN")
        do {
            let value = try body(self)
            try query("COMMIT")
            return value
        } catch {
            rollbackQuietly()
            throw error
        }
    }

    /// Rolls back an open transaction, ignoring failures (the connection may already be gone).
    public func rollbackQuietly() {
        guard let handle, PQstatus(handle) == CONNECTION_OK, PQtransactionStatus(handle) != PQTRANS_IDLE else {
            return
        }
        roundTrips += 1
        PQclear(PQexec(handle, "ROLLBACK"))
    }

    /// True when the connection was opened and has since broken (the server went away), or is
    /// still inside a transaction that could not be rolled back; the pool closes such
    /// connections instead of lending them again.
    public var isBroken: Bool {
        guard let handle else { return false }
        return PQstatus(handle) != CONNECTION_OK || PQtransactionStatus(handle) != PQTRANS_IDLE
    }

    private func connected() throws(DatabaseError) -> OpaquePointer {
        if let handle {
            if PQstatus(handle) == CONNECTION_OK { return handle }
            // A new server session: nothing is prepared on it yet.
            preparedStatements.removeAll()
            PQreset(handle)
            if PQstatus(handle) == CONNECTION_OK { return handle }
            throw DatabaseError(kind: .unavailable, sqlState: nil, serverMessage: Self.message(of: handle))
        }
        guard let fresh = openConnection() else {
            throw DatabaseError(
                kind: .unavailable, sqlState: nil, serverMessage: "libpq could not allocate a connection")
        }
        handle = fresh
        guard PQstatus(fresh) == CONNECTION_OK else {
            throw DatabaseError(kind: .unavailable, sqlState: nil, serverMessage: Self.message(of: fresh))
        }
        return fresh
    }

    /// `PQconnectdbParams` with `expand_dbname`: the URI is expanded first, our settings override it.
    private func openConnection() -> OpaquePointer? {
        let keywords = ["dbname"] + settings.map(\.0)
        let values = [connectionString] + settings.map(\.1)
        let cKeywords: [UnsafeMutablePointer<CChar>?] = keywords.map { strdup($0) } + [nil]
        let cValues: [UnsafeMutablePointer<CChar>?] = values.map { strdup($0) } + [nil]
        defer {
            for pointer in cKeywords + cValues { free(pointer) }
        }
        return cKeywords.map { UnsafePointer($0) }.withUnsafeBufferPointer { k in
            cValues.map { UnsafePointer($0) }.withUnsafeBufferPointer { v in
                PQconnectdbParams(k.baseAddress, v.baseAddress, 1)
            }
        }
    }

    private static func execute(_ query: SQLQuery, on connection: OpaquePointer) -> OpaquePointer? {
        guard !query.binds.isEmpty else { return PQexec(connection, query.sql) }
        return withParameters(query.binds) { count, values, lengths, formats in
            PQexecParams(connection, query.sql, count, nil, values, lengths, formats, 0)
        }
    }

    /// Parameters as libpq takes them: each value malloc'd (a C string for text, the raw bytes for
    /// binary; NULL for SQL NULL), with its length and format (libpq reads the length of binary
    /// values only: text ends at its NUL).
    private static func withParameters<T>(
        _ binds: [SQLParameter?],
        _ body: (Int32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> T
    ) -> T {
        let parameters = binds.map { bind -> (value: UnsafeMutablePointer<CChar>?, length: Int32, format: Int32) in
            switch bind {
            case nil: return (nil, 0, 0)
            case .text(let text)?: return (strdup(text), 0, 0)
            case .binary(let bytes)?:
                let copy = malloc(max(bytes.count, 1))?.bindMemory(to: CChar.self, capacity: bytes.count)
                copy.map { UnsafeMutableRawBufferPointer(start: $0, count: bytes.count).copyBytes(from: bytes) }
                return (copy, Int32(clamping: bytes.count), 1)
            }
        }
        defer {
            for parameter in parameters { free(parameter.value) }
        }
        return parameters.map { UnsafePointer($0.value) }.withUnsafeBufferPointer { values in
            parameters.map(\.length).withUnsafeBufferPointer { lengths in
                parameters.map(\.format).withUnsafeBufferPointer { formats in
                    body(Int32(parameters.count), values.baseAddress, lengths.baseAddress, formats.baseAddress)
                }
            }
        }
    }

    /// The one place libpq result statuses and SQLSTATEs become Swift errors.
    private func check(_ result: OpaquePointer?, connection: OpaquePointer) throws(DatabaseError) -> QueryResult {
        guard let result else {
            throw DatabaseError(kind: .unavailable, sqlState: nil, serverMessage: Self.message(of: connection))
        }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return QueryResult(result)
        default:
            let state = Self.field(result, CLIBPQ_DIAG_SQLSTATE)
            let broken = PQstatus(connection) != CONNECTION_OK
            throw DatabaseError(
                kind: broken ? .unavailable : DatabaseError.kind(forSQLState: state),
                sqlState: state,
                serverMessage: Self.field(result, CLIBPQ_DIAG_MESSAGE_PRIMARY) ?? Self.message(of: connection),
                constraint: Self.field(result, CLIBPQ_DIAG_CONSTRAINT_NAME)
            )
        }
    }

    private static func field(_ result: OpaquePointer, _ code: Int32) -> String? {
        PQresultErrorField(result, code).map { String(cString: $0) }
    }

    private static func message(of connection: OpaquePointer) -> String {
        PQerrorMessage(connection).map { String(cString: $0) }?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown libpq error"
    }
}
