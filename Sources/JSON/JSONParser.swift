/// Parses untrusted JSON bytes (RFC 8259) into a `JSONValue` in one pass: time and memory are
/// linear in the input's size, nesting is limited, and integers stay exact (money is never a
/// floating point here). Foundation's `JSONDecoder` is not used for untrusted documents of
/// unknown shape: decoding `JSONValue` through `Codable` retries every alternative at every
/// level, which costs about the cube of the nesting depth.
///
/// Stricter than the RFC where laxity only helps an attacker: a document of more than
/// `maximumDepth` nested arrays and objects, a key longer than `maximumKeyBytes`, a duplicate
/// key in one object (keys are Swift strings: canonically equivalent spellings are the same
/// key), invalid UTF-8 and lone surrogates are all refused.
public struct JSONParser {
    /// Why a document was refused, with the byte offset where parsing stopped.
    public struct Failure: Error, Equatable, CustomStringConvertible {
        /// What was wrong.
        public let reason: String
        /// Byte offset into the input.
        public let offset: Int

        public var description: String { "\(reason) at byte \(offset)" }
    }

    /// Nesting limit: arrays and objects inside each other.
    public static let defaultMaximumDepth = 32
    /// Longest object key, in UTF-8 bytes. Keys are hashed as Swift strings, which first
    /// normalises them (quadratic in a run of combining marks); field names are short.
    public static let maximumKeyBytes = 256

    private let bytes: [UInt8]
    private let maximumDepth: Int
    private var index = 0

    private init(_ bytes: [UInt8], maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    /// Parses one JSON document (surrounding white space allowed); throws `Failure` otherwise.
    public static func parse(_ bytes: [UInt8], maximumDepth: Int = defaultMaximumDepth) throws(Failure) -> JSONValue {
        var parser = JSONParser(bytes, maximumDepth: maximumDepth)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.failure("unexpected data after the document") }
        return value
    }

    // MARK: Values

    private mutating func parseValue(depth: Int) throws(Failure) -> JSONValue {
        guard let byte = peek() else { throw failure("unexpected end of input") }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw failure("unexpected character")
        }
    }

    private mutating func parseObject(depth: Int) throws(Failure) -> JSONValue {
        guard depth <= maximumDepth else { throw failure("nested deeper than \(maximumDepth) levels") }
        index += 1
        var object: [String: JSONValue] = [:]
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw failure("expected a string key") }
            let keyOffset = index
            let key = try parseString()
            guard index - keyOffset <= Self.maximumKeyBytes + 2 || key.utf8.count <= Self.maximumKeyBytes else {
                throw Failure(reason: "object key longer than \(Self.maximumKeyBytes) bytes", offset: keyOffset)
            }
            skipWhitespace()
            try expect(UInt8(ascii: ":"))
            skipWhitespace()
            let value = try parseValue(depth: depth)
            guard object.updateValue(value, forKey: key) == nil else {
                throw Failure(reason: "duplicate key", offset: keyOffset)
            }
            skipWhitespace()
            switch next() {
            case UInt8(ascii: ",")?: continue
            case UInt8(ascii: "}")?: return .object(object)
            default: throw failure("expected , or }", back: 1)
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(Failure) -> JSONValue {
        guard depth <= maximumDepth else { throw failure("nested deeper than \(maximumDepth) levels") }
        index += 1
        var array: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
            return .array(array)
        }
        while true {
            skipWhitespace()
            array.append(try parseValue(depth: depth))
            skipWhitespace()
            switch next() {
            case UInt8(ascii: ",")?: continue
            case UInt8(ascii: "]")?: return .array(array)
            default: throw failure("expected , or ]", back: 1)
            }
        }
    }

    /// Integers that fit in 64 bits stay exact; anything with a fraction or exponent, or
    /// beyond 64 bits, becomes a double (and is refused where an integer is required).
    private mutating func parseNumber() throws(Failure) -> JSONValue {
        let start = index
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), first.isDigit else { throw failure("expected a digit") }
        index += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        var isInteger = true
        if peek() == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard peek()?.isDigit == true else { throw failure("expected a digit after the decimal point") }
            skipDigits()
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard peek()?.isDigit == true else { throw failure("expected a digit in the exponent") }
            skipDigits()
        }
        // Up to 18 digits always fit in 64 bits: summed in place, without a string.
        if isInteger, index - start <= 18 {
            let negative = bytes[start] == UInt8(ascii: "-")
            var value: Int64 = 0
            for digit in bytes[(negative ? start + 1 : start)..<index] { value = value * 10 + Int64(digit &- 0x30) }
            return .int(negative ? -value : value)
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if isInteger, let integer = Int64(text) { return .int(integer) }
        guard let double = Double(text), double.isFinite else {
            throw Failure(reason: "number out of range", offset: start)
        }
        return .double(double)
    }

    // MARK: Strings

    /// A string's contents: escapes decoded, UTF-8 validated, raw control characters refused.
    private mutating func parseString() throws(Failure) -> String {
        index += 1  // the opening quote
        if let plain = plainASCIIString() { return plain }
        var scalars = String.UnicodeScalarView()
        var runStart = index
        while true {
            guard let byte = peek() else { throw failure("unterminated string") }
            switch byte {
            case UInt8(ascii: "\""):
                try appendRun(from: runStart, to: &scalars)
                index += 1
                return String(scalars)
            case UInt8(ascii: "\\"):
                try appendRun(from: runStart, to: &scalars)
                index += 1
                scalars.append(try parseEscape())
                runStart = index
            case 0..<0x20:
                throw failure("control character in a string")
            default:
                index += 1
            }
        }
    }

    /// The common string, printable ASCII up to its closing quote (keys, ids, statuses), made in
    /// one step and its quote consumed; nil (nothing consumed) for any other string.
    private mutating func plainASCIIString() -> String? {
        var end = index
        while end < bytes.count {
            switch bytes[end] {
            case UInt8(ascii: "\""):
                let text = bytes.withUnsafeBufferPointer {
                    String(decoding: UnsafeBufferPointer(rebasing: $0[index..<end]), as: UTF8.self)
                }
                index = end + 1
                return text
            case 0x20..<0x80 where bytes[end] != UInt8(ascii: "\\"):
                end += 1
            default:
                return nil
            }
        }
        return nil
    }

    /// Appends the unescaped bytes `runStart..<index`, which must be valid UTF-8.
    private func appendRun(from runStart: Int, to scalars: inout String.UnicodeScalarView) throws(Failure) {
        guard runStart < index else { return }
        var iterator = bytes[runStart..<index].makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar)
            case .emptyInput: return
            case .error: throw Failure(reason: "invalid UTF-8 in a string", offset: runStart)
            }
        }
    }

    private mutating func parseEscape() throws(Failure) -> Unicode.Scalar {
        guard let byte = next() else { throw failure("unterminated escape") }
        switch byte {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{8}"
        case UInt8(ascii: "f"): return "\u{C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let unit = try parseHex4()
            if (0xD800...0xDBFF).contains(unit) {
                guard next() == UInt8(ascii: "\\"), next() == UInt8(ascii: "u") else { throw failure("lone surrogate") }
                let low = try parseHex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw failure("lone surrogate") }
                let value = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                guard let scalar = Unicode.Scalar(value) else { throw failure("invalid escape") }
                return scalar
            }
            guard let scalar = Unicode.Scalar(UInt32(unit)) else { throw failure("lone surrogate") }
            return scalar
        default:
            throw failure("invalid escape", back: 1)
        }
    }

    private mutating func parseHex4() throws(Failure) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            guard let byte = next() else { throw failure("unterminated escape") }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw failure("invalid \\u escape", back: 1)
            }
            value = value << 4 | UInt16(digit)
        }
        return value
    }

    // MARK: Bytes

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private mutating func next() -> UInt8? {
        guard index < bytes.count else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    private mutating func skipWhitespace() {
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
    }

    private mutating func skipDigits() {
        while peek()?.isDigit == true { index += 1 }
    }

    private mutating func expect(_ byte: UInt8) throws(Failure) {
        guard next() == byte else { throw failure("expected \(Character(Unicode.Scalar(byte)))", back: 1) }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(Failure) {
        let matches = literal.withUTF8Buffer { expected in
            index + expected.count <= bytes.count && expected.elementsEqual(bytes[index..<index + expected.count])
        }
        guard matches else { throw failure("invalid literal") }
        index += literal.utf8CodeUnitCount
    }

    private func failure(_ reason: String, back: Int = 0) -> Failure {
        Failure(reason: reason, offset: max(0, index - back))
    }
}

extension UInt8 {
    fileprivate var isDigit: Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) }
}
