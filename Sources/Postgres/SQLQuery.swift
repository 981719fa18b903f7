import Foundation

/// One parameter as libpq sends it: PostgreSQL's text form, or raw bytes in binary format.
public enum SQLParameter: Sendable, Equatable {
    /// The text form (`42`, `true`, a UUID's lower-case spelling, any string).
    case text(String)
    /// Binary format: a `bytea` parameter's bytes as they are, no encoding either way.
    case binary([UInt8])
}

/// A value that can be sent to PostgreSQL as a parameter.
public protocol SQLBindable {
    /// The parameter, or nil for SQL NULL.
    var sqlParameter: SQLParameter? { get }
}

extension String: SQLBindable { public var sqlParameter: SQLParameter? { .text(self) } }
extension Int: SQLBindable { public var sqlParameter: SQLParameter? { .text(String(self)) } }
extension Int64: SQLBindable { public var sqlParameter: SQLParameter? { .text(String(self)) } }
extension Int32: SQLBindable { public var sqlParameter: SQLParameter? { .text(String(self)) } }
extension Double: SQLBindable { public var sqlParameter: SQLParameter? { .text(String(self)) } }
extension Bool: SQLBindable { public var sqlParameter: SQLParameter? { .text(self ? "true" : "false") } }
extension UUID: SQLBindable { public var sqlParameter: SQLParameter? { .text(uuidString.lowercased()) } }
extension Optional: SQLBindable where Wrapped: SQLBindable {
    public var sqlParameter: SQLParameter? { self?.sqlParameter }
}

/// Raw bytes sent as `bytea` in binary format: byte-exact, and neither side encodes or decodes
/// them (a webhook's payload is most of its statement's bytes).
public struct ByteA: SQLBindable, Sendable {
    /// The bytes.
    public let bytes: [UInt8]
    /// Wraps bytes for binding.
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var sqlParameter: SQLParameter? { .binary(bytes) }
}

/// A SQL statement whose interpolated values become `$1, $2, …` parameters, so that a value can
/// never be spliced into the SQL text. Literal SQL that is not known at compile time must be
/// spelled `SQLQuery(unsafeSQL:)`.
///
///     let query: SQLQuery = "SELECT id FROM profiles WHERE user_id = \(subject)"
public struct SQLQuery: Sendable, ExpressibleByStringInterpolation {
    /// The statement text with `$n` placeholders.
    public private(set) var sql: String
    /// The parameters, in placeholder order.
    public private(set) var binds: [SQLParameter?]
    /// The name this statement is prepared under on each connection (nil: planned on every call).
    public private(set) var preparedName: String?

    /// A statement with no parameters, taken as trusted SQL text (migrations, fixed statements).
    public init(unsafeSQL sql: String) {
        self.sql = sql
        self.binds = []
    }

    /// This statement, prepared once per connection under `name` and executed by name afterwards
    /// (no parse or plan per call; after a reconnect it is prepared again). For hot statements
    /// whose text never varies: every use of a name must have the same SQL text (checked).
    public func prepared(as name: StaticString) -> SQLQuery {
        var query = self
        query.preparedName = "\(name)"
        return query
    }

    public init(stringLiteral value: String) {
        self.init(unsafeSQL: value)
    }

    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        binds = stringInterpolation.binds
    }

    /// Collects literal text and parameters.
    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var binds: [SQLParameter?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        /// Splices another query, renumbering its `$n` placeholders after the ones so far, so
        /// that fragments built by interpolation compose without ever splicing a value.
        public mutating func appendInterpolation(sql fragment: SQLQuery) {
            let offset = binds.count
            var text = Substring(fragment.sql)
            while let dollar = text.firstIndex(of: "$") {
                sql += text[..<dollar]
                let digits = text[text.index(after: dollar)...].prefix { $0.isASCII && $0.isNumber }
                if let number = Int(digits) {
                    sql += "$\(number + offset)"
                } else {
                    sql += "$"
                }
                text = text[text.index(after: dollar)...].dropFirst(digits.count)
            }
            sql += text
            binds += fragment.binds
        }

        /// Appends a parameter placeholder and records its value.
        public mutating func appendInterpolation(_ value: some SQLBindable) {
            binds.append(value.sqlParameter)
            sql += "$\(binds.count)"
        }

        /// Appends a parameter placeholder for an optional value; nil is SQL NULL.
        public mutating func appendInterpolation<Value: SQLBindable>(_ value: Value?) {
            binds.append(value?.sqlParameter)
            sql += "$\(binds.count)"
        }
    }
}
