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
        case .double(let number): return String(format: "%.3f", number)
        case .bool(let flag): return flag ? "true" : "false"
        }
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
    /// Error line.
    public func error(_ message: String, _ fields: [(String, LogValue)] = []) { log("error", message, fields) }

    private static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1,
                      parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, now.tv_nsec / 1_000_000)
    }
}

/// JSON string quoting shared by the logger and the error envelope.
enum JSONText {
    static func quoted(_ text: String) -> String {
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
