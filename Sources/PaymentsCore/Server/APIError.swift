import Stripe

/// An error a client may see: a stable `code`, an HTTP status and a safe message.
///
/// Responders throw these; the pipeline turns them (and every other error) into the envelope
/// `{"error":{"code","message","request_id"}}` in exactly one place. `message` never carries
/// SQL, keys, tokens or raw payloads. Every code comes from `ErrorCode`, the one catalogue
/// (docs/errors.md is checked against it).
public struct APIError: Error, CustomStringConvertible, Sendable {
    /// HTTP status.
    public let status: Int
    /// Stable machine-readable code.
    public let code: String
    /// Human-readable, safe message.
    public let message: String
    /// Extra response headers (`Allow`, `Retry-After`).
    public let headers: [(String, String)]

    /// An error of a catalogued code, with its status; `message` (default: the code's own)
    /// says what went wrong for this request.
    public init(_ code: ErrorCode, message: String? = nil, headers: [(String, String)] = []) {
        status = code.status
        self.code = code.rawValue
        self.message = message ?? code.defaultMessage
        self.headers = headers
    }

    public var description: String { "APIError(\(status) \(code))" }

    static let notFound = APIError(.notFound)

    static func methodNotAllowed(allowed: [String]) -> APIError {
        APIError(
            .methodNotAllowed, message: "Method not allowed; use \(allowed.joined(separator: ", ")).",
            headers: [("Allow", allowed.joined(separator: ", "))])
    }

    static let unsupportedMediaType = APIError(.unsupportedMediaType)

    static func invalidJSON(_ failure: JSONParser.Failure) -> APIError {
        APIError(.invalidJSON, message: "The request body is not valid JSON: \(failure).")
    }

    /// A value that got past the field checks but cannot be stored (PostgreSQL refused it as
    /// data, SQLSTATE class 22): the client's input, not our fault.
    static let invalidInput = APIError(.invalidInput)

    static func payloadTooLarge(limit: Int) -> APIError {
        APIError(.payloadTooLarge, message: "The request body exceeds \(limit) bytes.")
    }

    static let malformedBody = APIError(.malformedBody)

    static let databaseUnavailable = APIError(.databaseUnavailable, headers: [("Retry-After", "1")])

    static let databaseBusy = APIError(.databaseBusy, headers: [("Retry-After", "1")])

    static let databasePoolExhausted = APIError(
        .databaseBusy, message: "Every database connection is in use; retry shortly.",
        headers: [("Retry-After", "1")])

    /// The request waited for a free worker of its lane and gave up; nothing of it ran.
    static let serverBusy = APIError(.serverBusy, headers: [("Retry-After", "1")])

    static let internalError = APIError(.internalError)

    /// A Stripe failure as the client should see it: card declines are `402 card_declined` with
    /// Stripe's message (written for the cardholder); everything else is `502`, without Stripe's
    /// text, since it describes our request rather than anything the client can fix.
    static func from(_ error: StripeError) -> APIError {
        switch error.kind {
        case .card:
            let decline = error.declineCode.map { " (\($0))" } ?? ""
            return APIError(.cardDeclined, message: error.message + decline)
        case .timeout:
            return APIError(
                .stripeTimeout,
                headers: [("Retry-After", "2")])
        case .rateLimited, .api, .connection:
            return APIError(
                .stripeUnavailable,
                headers: [("Retry-After", "5")])
        case .invalidRequest, .idempotency, .authentication, .permission, .invalidResponse:
            return APIError(.stripeError)
        }
    }

    /// 400 naming a bad field (`field` is a JSON path like `listing_id`).
    public static func invalidField(_ field: String, _ message: String) -> APIError {
        APIError(.invalidField, message: "\(field): \(message)")
    }
}
