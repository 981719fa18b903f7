import Foundation
// JSONValue and JSONParser live in the JSON module (shared with Stripe); every file of this
// module sees them.
@_exported import JSON
import Postgres

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
