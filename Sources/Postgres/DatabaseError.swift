/// A PostgreSQL failure, classified by SQLSTATE so that callers can decide without parsing text.
///
/// `description` carries the class and SQLSTATE only; the server's message (which may echo
/// values) is kept in `serverMessage` for operators' logs and never shown to API clients.
public struct DatabaseError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is.
    public enum Kind: String, Sendable {
        /// The server cannot be reached or the connection broke (class 08, 57P0x, no result).
        case unavailable
        /// No pooled connection became free in time; nothing was sent to the server.
        case poolExhausted
        /// 23505.
        case uniqueViolation
        /// 23503.
        case foreignKeyViolation
        /// 23514.
        case checkViolation
        /// 23502.
        case notNullViolation
        /// 40001: retry the transaction.
        case serializationFailure
        /// 40P01: retry the transaction.
        case deadlockDetected
        /// 55P03.
        case lockNotAvailable
        /// 57014 (statement_timeout or cancel).
        case queryCanceled
        /// Class 22: a value the column or function does not accept.
        case invalidData
        /// P0001: a RAISE from our own SQL functions and triggers.
        case raisedException
        /// Anything else.
        case other
    }

    /// The classification.
    public let kind: Kind
    /// The five-character SQLSTATE, when the server sent one.
    public let sqlState: String?
    /// The server's primary message (for logs, not for clients).
    public let serverMessage: String
    /// The constraint involved, for integrity violations.
    public let constraint: String?

    /// Creates an error.
    public init(kind: Kind, sqlState: String?, serverMessage: String, constraint: String? = nil) {
        self.kind = kind
        self.sqlState = sqlState
        self.serverMessage = serverMessage
        self.constraint = constraint
    }

    /// True for failures that a retry of the whole transaction may cure.
    public var isTransient: Bool {
        switch kind {
        case .unavailable, .poolExhausted, .serializationFailure, .deadlockDetected, .lockNotAvailable, .queryCanceled:
            return true
        default: return false
        }
    }

    public var description: String {
        "DatabaseError(\(kind.rawValue)\(sqlState.map { ", SQLSTATE \($0)" } ?? ""))"
    }

    /// Maps an SQLSTATE to a kind.
    static func kind(forSQLState state: String?) -> Kind {
        guard let state else { return .unavailable }
        switch state {
        case "23505": return .uniqueViolation
        case "23503": return .foreignKeyViolation
        case "23514": return .checkViolation
        case "23502": return .notNullViolation
        case "40001": return .serializationFailure
        case "40P01": return .deadlockDetected
        case "55P03": return .lockNotAvailable
        case "57014": return .queryCanceled
        case "P0001": return .raisedException
        case "57P01", "57P02", "57P03": return .unavailable
        default:
            if state.hasPrefix("08") { return .unavailable }
            if state.hasPrefix("22") { return .invalidData }
            return .other
        }
    }
}
