import Foundation
import Postgres

/// Any JSON document, decoded without loss of integers (money is never a floating point here).
///
/// Untrusted bytes become a `JSONValue` only through `JSONParser` (linear time, bounded depth);
/// the type is deliberately not `Decodable`.
public enum JSONValue: Encodable, Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// Parses bytes as JSON with `JSONParser`'s limits; nil when they are not a JSON document.
    public static func parse(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONParser.parse(bytes)
    }
}

/// The encoder every response uses: sorted keys for stable output.
enum JSONCoding {
    /// One encoder for every worker (configured once, never changed, so shared safely).
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func encode(_ value: some Encodable) -> [UInt8] {
        // Encoding our own response types cannot fail; an empty object keeps the contract if it ever did.
        (try? Array(encoder.encode(value))) ?? Array("{}".utf8)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByNilLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { $1 }))
    }
}

extension JSONValue {
    /// A string, or null when absent.
    init(_ text: String?) {
        self = text.map(JSONValue.string) ?? .null
    }
}

/// An optional that is encoded as JSON `null` when absent, instead of being left out, so that
/// every response of a type has the same fields.
@propertyWrapper
struct Nullable<Value: Encodable & Sendable>: Encodable, Sendable {
    var wrappedValue: Value?

    // Memberwise callers (`Profile(email: row["email"])`) pass a plain optional through this.
    init(wrappedValue: Value?) {
        self.wrappedValue = wrappedValue
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

extension JSONValue: SQLDecodable {
    /// A `json`/`jsonb` column read as text (our own documents, parsed with the same limits).
    public init?(sqlText text: String) {
        guard let value = JSONValue.parse(Array(text.utf8)) else { return nil }
        self = value
    }
}
