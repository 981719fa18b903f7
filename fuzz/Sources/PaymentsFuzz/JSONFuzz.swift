@testable import PaymentsCore

/// `JSONParser.parse`: whatever it accepts is at most 32 levels deep, re-encodes with
/// `JSONCoding` and parses back to the same value; a refusal names an offset inside the input.
enum JSONFuzz {
    static func run(_ bytes: [UInt8]) {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            check(
                (0...bytes.count).contains(error.offset), "refusal offset \(error.offset) outside \(bytes.count) bytes")
            return
        }
        let depth = nesting(of: value)
        check(depth <= JSONParser.defaultMaximumDepth, "accepted a document \(depth) levels deep")

        let encoded = JSONCoding.encode(value)
        do {
            let again = try JSONParser.parse(encoded)
            check(isEquivalent(value, again), "re-encoded document parses to another value: \(shown(encoded))")
        } catch {
            check(false, "re-encoded document is refused (\(error)): \(shown(encoded))")
        }

        // The JWT header limit: a limit of 2 accepts exactly the documents at most 2 levels deep.
        let shallow = try? JSONParser.parse(bytes, maximumDepth: 2)
        check((shallow != nil) == (depth <= 2), "maximumDepth 2 disagrees with a document \(depth) levels deep")
    }

    /// Levels of arrays and objects, counted as the parser does (a scalar is 0, `[]` is 1).
    static func nesting(of value: JSONValue) -> Int {
        switch value {
        case .array(let elements): 1 + (elements.map(nesting(of:)).max() ?? 0)
        case .object(let members): 1 + (members.values.map(nesting(of:)).max() ?? 0)
        default: 0
        }
    }

    /// Equality, except that a number may change between `int` and `double` when re-encoded
    /// (`JSONEncoder` writes `2.0` as `2`) as long as its value is the same.
    static func isEquivalent(_ lhs: JSONValue, _ rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.int(let a), .double(let b)), (.double(let b), .int(let a)): Double(a) == b
        case (.array(let a), .array(let b)): a.count == b.count && zip(a, b).allSatisfy(isEquivalent)
        case (.object(let a), .object(let b)):
            a.count == b.count && a.allSatisfy { key, value in b[key].map { isEquivalent(value, $0) } ?? false }
        default: lhs == rhs
        }
    }

    static func shown(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.prefix(200), as: UTF8.self).debugDescription
    }
}
