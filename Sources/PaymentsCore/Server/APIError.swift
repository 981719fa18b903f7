import Stripe

/// An error a client may see: a stable `code`, an HTTP status and a safe message.
///
/// Responders throw these; the pipeline turns them (and every other error) into the envelope
/// `{"error":{"code","message","request_id"}}` in exactly one place. `message` never carries
/// SQL, keys, tokens or raw payloads. The codes are listed in docs/errors.md.
public struct APIError: Error, CustomStringConvertible, Sendable {
    /// HTTP status.
    public let status: Int
    /// Stable machine-readable code.
    public let code: String
    /// Human-readable, safe message.
    public let message: String
    /// Extra response headers (`Allow`, `Retry-After`).
    public let headers: [(String, String)]

    /// Creates an error.
    public init(status: Int, code: String, message: String, headers: [(String, String)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public var description: String { "APIError(\(status) \(code))" }

    static let notFound = APIError(status: 404, code: "not_found", message: "No such resource.")

    static func methodNotAllowed(allowed: [String]) -> APIError {
        APIError(status: 405, code: "method_not_allowed", message: "Method not allowed; use \(allowed.joined(separator: ", ")).",
                 headers: [("Allow", allowed.joined(separator: ", "))])
    }

    static let unsupportedMediaType = APIError(
        status: 415, code: "unsupported_media_type", message: "The request body must be sent as Content-Type: application/json.")

    static func invalidJSON(_ failure: JSONParser.Failure) -> APIError {
        APIError(status: 400, code: "invalid_json", message: "The request body is not valid JSON: \(failure).")
    }

    /// A value that got past the field checks but cannot be stored (PostgreSQL refused it as
    /// data, SQLSTATE class 22): the client's input, not our fault.
    static let invalidInput = APIError(status: 400, code: "invalid_input",
                                       message: "A value in the request cannot be stored (for example, it contains a NUL character).")

    static func payloadTooLarge(limit: Int) -> APIError {
        APIError(status: 413, code: "payload_too_large", message: "The request body exceeds \(limit) bytes.")
    }

    static let malformedBody = APIError(
        status: 400, code: "malformed_body", message: "The request body is shorter than its Content-Length.")

    static let databaseUnavailable = APIError(
        status: 503, code: "database_unavailable", message: "The database is unavailable; retry shortly.",
        headers: [("Retry-After", "1")])

    static let databaseBusy = APIError(
        status: 503, code: "database_busy", message: "A conflicting change was in progress; retry the request.",
        headers: [("Retry-After", "1")])

    static let databasePoolExhausted = APIError(
        status: 503, code: "database_busy", message: "Every database connection is in use; retry shortly.",
        headers: [("Retry-After", "1")])

    /// The request waited for a free worker of its lane and gave up; nothing of it ran.
    static let serverBusy = APIError(
        status: 503, code: "server_busy", message: "The service is at capacity; retry shortly.",
        headers: [("Retry-After", "1")])

    static let internalError = APIError(status: 500, code: "internal_error", message: "An unexpected error occurred.")

    /// A Stripe failure as the client should see it: card declines are `402 card_declined` with
    /// Stripe's message (written for the cardholder); everything else is `502`, without Stripe's
    /// text, since it describes our request rather than anything the client can fix.
    static func from(_ error: StripeError) -> APIError {
        switch error.kind {
        case .card:
            let decline = error.declineCode.map { " (\($0))" } ?? ""
            return APIError(status: 402, code: "card_declined", message: error.message + decline)
        case .timeout:
            return APIError(status: 504, code: "stripe_timeout",
                            message: "The payment provider did not answer in time; retry with the same Idempotency-Key.",
                            headers: [("Retry-After", "2")])
        case .rateLimited, .api, .connection:
            return APIError(status: 502, code: "stripe_unavailable", message: "The payment provider is unavailable; retry shortly.",
                            headers: [("Retry-After", "5")])
        case .invalidRequest, .idempotency, .authentication, .permission, .invalidResponse:
            return APIError(status: 502, code: "stripe_error", message: "The payment provider rejected the request.")
        }
    }

    /// 400 naming a bad field (`field` is a JSON path like `listing_id`).
    public static func invalidField(_ field: String, _ message: String) -> APIError {
        APIError(status: 400, code: "invalid_field", message: "\(field): \(message)")
    }
}
