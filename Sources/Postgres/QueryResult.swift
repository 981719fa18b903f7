internal import CLibPQ
import Foundation

/// The rows of one statement, copied out of libpq (text format), with typed accessors.
public struct QueryResult: Sendable {
    /// Column names in order.
    public let columns: [String]
    /// The rows.
    public let rows: [Row]
    /// Rows affected by INSERT/UPDATE/DELETE.
    public let affectedRows: Int

    init(_ result: OpaquePointer) {
        let columnCount = Int(PQnfields(result))
        let names = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var index: [String: Int] = [:]
        for (position, name) in names.enumerated() where index[name] == nil { index[name] = position }
        let rowCount = Int(PQntuples(result))
        rows = (0..<rowCount).map { row in
            Row(
                columnIndex: index,
                values: (0..<columnCount).map { column in
                    PQgetisnull(result, Int32(row), Int32(column)) == 1
                        ? nil : String(cString: PQgetvalue(result, Int32(row), Int32(column)))
                })
        }
        columns = names
        affectedRows = Int(String(cString: PQcmdTuples(result))) ?? 0
    }

    /// The first row, if any.
    public var first: Row? { rows.first }
}

/// One row; values are in PostgreSQL's text format.
public struct Row: Sendable {
    let columnIndex: [String: Int]
    /// Raw text values in column order (nil is SQL NULL).
    public let values: [String?]
}

/// A value read from PostgreSQL's text format.
public protocol SQLDecodable {
    /// The value of `text`, or nil when it is not of this type.
    init?(sqlText text: String)
}

extension String: SQLDecodable {
    public init?(sqlText text: String) { self = text }
}

extension Int: SQLDecodable {
    public init?(sqlText text: String) { self.init(text) }
}

extension Int64: SQLDecodable {
    public init?(sqlText text: String) { self.init(text) }
}

extension Double: SQLDecodable {
    public init?(sqlText text: String) { self.init(text) }
}

extension Bool: SQLDecodable {
    public init?(sqlText text: String) {
        switch text {
        case "t", "true": self = true
        case "f", "false": self = false
        default: return nil
        }
    }
}

extension Array: SQLDecodable where Element == UInt8 {
    /// A `bytea` value in PostgreSQL's hex output format (`\\x…`).
    public init?(sqlText text: String) {
        guard text.hasPrefix("\\x") else { return nil }
        let hex = Array(text.utf8.dropFirst(2))
        guard hex.count % 2 == 0 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(hex.count / 2)
        var i = 0
        while i < hex.count {
            guard let value = UInt8(String(decoding: hex[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(value)
            i += 2
        }
        self = bytes
    }
}

extension UUID: SQLDecodable {
    public init?(sqlText text: String) { self.init(uuidString: text) }
}

/// A row lacks a column the code reads, holds NULL where a value must be, or holds text of
/// another type: a mismatch between a query and the code that reads it, never client input.
public struct RowDecodingError: Error, CustomStringConvertible, Equatable {
    /// What was wrong.
    public enum Problem: String, Sendable {
        case missingColumn = "missing column"
        case null = "NULL where a value is required"
        case mistyped = "value of another type"
    }

    /// What was wrong.
    public let problem: Problem
    /// The column.
    public let column: String
    /// The Swift type asked for.
    public let type: String

    public var description: String { "RowDecodingError(\(problem.rawValue): \(column) as \(type))" }
}

extension Row {
    /// The value of `column`, which must be present, non-NULL and of type `T`.
    public func decode<T: SQLDecodable>(_ column: String, as type: T.Type = T.self) throws(RowDecodingError) -> T {
        guard let value = try decodeIfPresent(column, as: type) else {
            throw RowDecodingError(problem: .null, column: column, type: "\(T.self)")
        }
        return value
    }

    /// The value of `column`, nil when NULL; the column must be present and its value of type `T`.
    public func decodeIfPresent<T: SQLDecodable>(_ column: String, as type: T.Type = T.self) throws(RowDecodingError)
        -> T?
    {
        guard let position = columnIndex[column] else {
            throw RowDecodingError(problem: .missingColumn, column: column, type: "\(T.self)")
        }
        guard let text = values[position] else { return nil }
        guard let value = T(sqlText: text) else {
            throw RowDecodingError(problem: .mistyped, column: column, type: "\(T.self)")
        }
        return value
    }
}

extension SQLDecodable where Self: RawRepresentable, RawValue == String {
    /// A string enum reads its raw value.
    public init?(sqlText text: String) { self.init(rawValue: text) }
}
