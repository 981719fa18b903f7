import Foundation

/// Typed, validated access to a JSON request body. Every failure is `400 invalid_field` naming
/// the field, so bad input never reaches the database.
struct JSONBody {
    let fields: [String: JSONValue]

    /// The body of a `.json` route; an empty body reads as `{}`.
    init(_ request: Request) throws {
        switch request.json {
        case nil: fields = [:]
        case .object(let object)?: fields = object
        default: throw APIError.invalidField("body", "must be a JSON object")
        }
    }

    /// A required UUID.
    func uuid(_ name: String) throws -> UUID {
        guard let value = fields[name], value != .null else { throw APIError.invalidField(name, "is required") }
        guard case .string(let text) = value, text.count == 36, let id = UUID(uuidString: text) else {
            throw APIError.invalidField(name, "must be a UUID")
        }
        return id
    }

    /// An optional integer within `range` (minor units of money, counts).
    func integer(_ name: String, in range: ClosedRange<Int64>) throws -> Int64? {
        guard let value = fields[name], value != .null else { return nil }
        guard case .int(let number) = value else { throw APIError.invalidField(name, "must be an integer") }
        guard range.contains(number) else {
            throw APIError.invalidField(name, "must be from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    /// A required, trimmed, non-empty string of at most `maximumLength` characters; see `optionalString`.
    func string(_ name: String, maximumLength: Int, multiline: Bool = false) throws -> String {
        guard let text = try optionalString(name, maximumLength: maximumLength, multiline: multiline) else {
            throw APIError.invalidField(name, "is required")
        }
        return text
    }

    /// An optional trimmed string; empty counts as absent. Control characters are refused (NUL
    /// among them, which PostgreSQL text cannot hold), except tab and line breaks in `multiline` text.
    func optionalString(_ name: String, maximumLength: Int, multiline: Bool = false) throws -> String? {
        guard let value = fields[name], value != .null else { return nil }
        guard case .string(let raw) = value else { throw APIError.invalidField(name, "must be a string") }
        let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { return nil }
        guard text.count <= maximumLength else {
            throw APIError.invalidField(name, "must be at most \(maximumLength) characters")
        }
        try Self.checkText(text, field: name, multiline: multiline)
        return text
    }

    /// Refuses control characters in `text` (tab, CR and LF pass when `multiline`).
    static func checkText(_ text: String, field: String, multiline: Bool) throws {
        let allowed: Set<Unicode.Scalar> = multiline ? ["\t", "\n", "\r"] : []
        guard !text.unicodeScalars.contains(where: { $0.isControlCharacter && !allowed.contains($0) }) else {
            throw APIError.invalidField(
                field,
                multiline
                    ? "must not contain control characters other than tab and line breaks"
                    : "must not contain control characters")
        }
    }

    /// A required string from a fixed set.
    func choice(_ name: String, from allowed: [String]) throws -> String {
        // Compared byte for byte: `==` on strings normalises them first, quadratic in a run of
        // combining marks an attacker may send.
        guard case .string(let text)? = fields[name], allowed.contains(where: { $0.utf8.elementsEqual(text.utf8) })
        else {
            throw APIError.invalidField(name, "must be one of \(allowed.joined(separator: ", "))")
        }
        return text
    }
}

extension Unicode.Scalar {
    /// C0 controls (NUL … U+001F), DEL and the C1 controls (U+0080 … U+009F).
    var isControlCharacter: Bool {
        value < 0x20 || (0x7F...0x9F).contains(value)
    }
}
