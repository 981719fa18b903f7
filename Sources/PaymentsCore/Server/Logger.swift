import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A value in a structured log line.
public enum LogValue: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }

    fileprivate var json: String {
        switch self {
        case .string(let text): return JSONText.quoted(text)
        case .int(let number): return String(number)
        case .double(let number): return Self.fixed3(number)
        case .bool(let flag): return flag ? "true" : "false"
        }
    }

    /// Three decimals without `String(format:)` (which is slow on the per-request path).
    private static func fixed3(_ number: Double) -> String {
        guard number.isFinite else { return "0" }
        let thousandths = Int((abs(number) * 1000).rounded())
        let fraction = thousandths % 1000
        let sign = number < 0 && thousandths > 0 ? "-" : ""
        return "\(sign)\(thousandths / 1000).\(fraction < 10 ? "00" : fraction < 100 ? "0" : "")\(fraction)"
    }
}

/// Writes one JSON object per line to standard error, each with a single `write(2)` so that
/// lines from different threads never interleave. Callers pass only safe fields: never tokens,
/// secrets, request bodies or onboarding URLs.
public struct Logger: Sendable {
    /// The file descriptor lines go to.
    let descriptor: Int32

    /// A logger writing to standard error.
    public init(descriptor: Int32 = 2) {
        self.descriptor = descriptor
    }

    /// Writes `{"ts":…,"level":…,"msg":…, fields…}`.
    public func log(_ level: String, _ message: String, _ fields: [(String, LogValue)] = []) {
        var line = "{\"ts\":\(JSONText.quoted(Self.timestamp())),\"level\":\(JSONText.quoted(level)),"
        line += "\"msg\":\(JSONText.quoted(message))"
        for (key, value) in fields {
            line += ",\(JSONText.quoted(key)):\(value.json)"
        }
        line += "}\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { _ = write(descriptor, $0.baseAddress, $0.count) }
    }

    /// Informational line.
    public func info(_ message: String, _ fields: [(String, LogValue)] = []) { log("info", message, fields) }
    /// Warning line: something an operator should fix, though the request was served.
    public func warning(_ message: String, _ fields: [(String, LogValue)] = []) { log("warning", message, fields) }
    /// Error line.
    public func error(_ message: String, _ fields: [(String, LogValue)] = []) { log("error", message, fields) }

    /// `2026-01-31T12:00:00.123Z`, built digit by digit (this runs once per request).
    private static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var bytes = [UInt8]()
        bytes.reserveCapacity(24)
        func append(_ value: Int, digits: Int) {
            var divisor = 1
            for _ in 1..<digits { divisor *= 10 }
            var remainder = value
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(remainder / divisor % 10))
                remainder %= divisor
                divisor /= 10
            }
        }
        append(Int(parts.tm_year) + 1900, digits: 4)
        bytes.append(UInt8(ascii: "-"))
        append(Int(parts.tm_mon) + 1, digits: 2)
        bytes.append(UInt8(ascii: "-"))
        append(Int(parts.tm_mday), digits: 2)
        bytes.append(UInt8(ascii: "T"))
        append(Int(parts.tm_hour), digits: 2)
        bytes.append(UInt8(ascii: ":"))
        append(Int(parts.tm_min), digits: 2)
        bytes.append(UInt8(ascii: ":"))
        append(Int(parts.tm_sec), digits: 2)
        bytes.append(UInt8(ascii: "."))
        append(Int(now.tv_nsec) / 1_000_000, digits: 3)
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// JSON string quoting shared by the logger and the error envelope.
enum JSONText {
    static func quoted(_ text: String) -> String {
        // Fast path: nothing to escape (request ids, routes, methods).
        if text.utf8.allSatisfy({ $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) {
            return "\"" + text + "\""
        }
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// `LOG_FILE`: the process's standard output and standard error (every log line) go to a file,
/// opened for appending, and `reopen`ed on SIGHUP, after logrotate (or an operator) has moved
/// the old file away. Without it, logs go to stdout/stderr as given (journald under systemd).
public enum LogFile {
    /// Points descriptors 1 and 2 at `path` (created 0640 when missing). A file that cannot be
    /// opened leaves them as they were and throws, naming the path.
    public static func reopen(_ path: String) throws {
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else {
            throw ConfigurationError(description: "LOG_FILE \(path) cannot be opened for appending (errno \(errno))")
        }
        dup2(descriptor, STDOUT_FILENO)
        dup2(descriptor, STDERR_FILENO)
        close(descriptor)
    }
}
