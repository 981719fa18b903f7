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
}
