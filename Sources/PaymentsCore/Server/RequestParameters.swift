import Foundation

/// Typed access to `{name}` path segments; malformed values are `400 invalid_field`.
enum PathParameter {
    static func uuid(_ request: Request, _ name: String) throws -> UUID {
        guard let text = request.pathParameters[name], text.count == 36, let id = UUID(uuidString: text) else {
            throw APIError.invalidField(name, "must be a UUID")
        }
        return id
    }
}

extension PathParameter {
    /// A Stripe id with `prefix` (`evt_…`): letters, digits and `_`, at most 255 characters.
    static func stripeID(_ request: Request, _ name: String, prefix: String) throws -> String {
        guard let text = request.pathParameters[name], text.hasPrefix(prefix), text.utf8.count <= 255,
            text.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "_") })
        else {
            throw APIError.invalidField(name, "must be a Stripe id starting with \(prefix)")
        }
        return text
    }
}

/// Typed access to query parameters; malformed values are `400 invalid_field`.
enum QueryParameter {
    static func bool(_ request: Request, _ name: String) throws -> Bool? {
        guard let text = request.query[name] else { return nil }
        switch text {
        case "true", "1": return true
        case "false", "0": return false
        default: throw APIError.invalidField(name, "must be true or false")
        }
    }

    static func uuid(_ request: Request, _ name: String) throws -> UUID? {
        guard let text = request.query[name] else { return nil }
        guard text.count == 36, let id = UUID(uuidString: text) else {
            throw APIError.invalidField(name, "must be a UUID")
        }
        return id
    }

    /// One of `allowed`, or nil when absent.
    static func choice(_ request: Request, _ name: String, from allowed: [String]) throws -> String? {
        guard let text = request.query[name] else { return nil }
        guard allowed.contains(text) else {
            throw APIError.invalidField(name, "must be one of \(allowed.joined(separator: ", "))")
        }
        return text
    }

    /// A moment as Unix seconds (`1765000000`) or RFC 3339 (`2026-12-06T00:00:00Z`); nil when absent.
    static func time(_ request: Request, _ name: String) throws -> Int64? {
        guard let text = request.query[name] else { return nil }
        if text.count <= 12, let seconds = Int64(text), seconds >= 0 { return seconds }
        guard text.count <= 40, let date = ISO8601DateFormatter().date(from: text) else {
            throw APIError.invalidField(name, "must be Unix seconds or an RFC 3339 time such as 2026-12-06T00:00:00Z")
        }
        return Int64(date.timeIntervalSince1970)
    }

    /// `limit`: from 1 to `maximum`, `standard` when absent.
    static func limit(_ request: Request, standard: Int = 20, maximum: Int = 100) throws -> Int {
        guard let text = request.query["limit"] else { return standard }
        guard text.count <= 4, let value = Int(text), (1...maximum).contains(value) else {
            throw APIError.invalidField("limit", "must be from 1 to \(maximum)")
        }
        return value
    }
}
