/// A Stripe request parameter: scalars, nested objects (ordered), and arrays.
public indirect enum StripeParameter: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    case string(String)
    case integer(Int64)
    case boolean(Bool)
    /// Key order is kept: the encoder emits keys in this order, as Stripe's libraries do.
    case object([(String, StripeParameter)])
    case array([StripeParameter])
    /// Omitted from the encoding (Python's `None`).
    case omitted

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .boolean(value) }
    public init(arrayLiteral elements: StripeParameter...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, StripeParameter)...) { self = .object(elements) }

    public static func == (lhs: StripeParameter, rhs: StripeParameter) -> Bool {
        FormEncoder.pairs(lhs, prefix: "").elementsEqual(FormEncoder.pairs(rhs, prefix: ""), by: ==)
    }
}

/// `application/x-www-form-urlencoded` exactly as Stripe's official libraries build it:
/// nested keys `a[b][c]`, arrays with indexes `expand[0]`, booleans `true`/`false`, omitted
/// values dropped, and `quote_plus` percent-encoding with brackets left literal.
public enum FormEncoder {
    /// The encoded body for top-level parameters.
    public static func encode(_ parameters: [(String, StripeParameter)]) -> String {
        pairs(.object(parameters), prefix: "")
            .map { "\(escape($0.0))=\(escape($0.1))" }
            .joined(separator: "&")
    }

    /// Flattens to (key, value) pairs before escaping.
    static func pairs(_ parameter: StripeParameter, prefix: String) -> [(String, String)] {
        switch parameter {
        case .string(let value): return [(prefix, value)]
        case .integer(let value): return [(prefix, String(value))]
        case .boolean(let value): return [(prefix, value ? "true" : "false")]
        case .omitted: return []
        case .object(let entries):
            return entries.flatMap { key, value in pairs(value, prefix: prefix.isEmpty ? key : "\(prefix)[\(key)]") }
        case .array(let elements):
            return elements.enumerated().flatMap { index, value in pairs(value, prefix: "\(prefix)[\(index)]") }
        }
    }

    /// Python's `quote_plus` (unreserved: letters, digits, `_.-~`; space → `+`), then `%5B`/`%5D`
    /// turned back into brackets everywhere, as stripe-python does with the whole body.
    static func escape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "["), UInt8(ascii: "]"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: " "):
                out += "+"
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
