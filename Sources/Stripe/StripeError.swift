import HTTPClient

/// A failed Stripe call, typed by Stripe's `error.type`, carrying what the caller needs to
/// decide (status, code, decline code, param, request id) and nothing secret: the description
/// never includes the API key, headers or the request body.
public struct StripeError: Error, CustomStringConvertible, Sendable {
    /// The failure class.
    public enum Kind: String, Sendable {
        /// `card_error` (402): the card was declined.
        case card
        /// `invalid_request_error` (400/404).
        case invalidRequest
        /// `idempotency_error`: the key was reused with other parameters.
        case idempotency
        /// 429 after retries.
        case rateLimited
        /// 401: bad API key.
        case authentication
        /// 403: the key may not do this.
        case permission
        /// `api_error` / 5xx after retries.
        case api
        /// No HTTP response at all (connection refused, reset, TLS failure) after retries.
        case connection
        /// The attempt or the overall deadline ran out.
        case timeout
        /// A 2xx response whose body is not the expected object.
        case invalidResponse
    }

    /// The class.
    public let kind: Kind
    /// HTTP status (0 when there was no response).
    public let httpStatus: Int
    /// Stripe's `error.type`.
    public let type: String?
    /// Stripe's `error.code` (`card_declined`, `resource_missing`, …).
    public let code: String?
    /// Stripe's `error.decline_code` for card errors.
    public let declineCode: String?
    /// The parameter Stripe complained about.
    public let param: String?
    /// Stripe's message (safe to log; shown to clients only for card errors).
    public let message: String
    /// Stripe's `Request-Id`.
    public let requestID: String?
    /// How many attempts were made.
    public let attempts: Int
    /// True when an attempt may have reached Stripe and succeeded there (a lost response, a
    /// timeout, a 5xx): the object may exist, and the same idempotency key recovers it.
    public var mayHaveSucceeded = false

    public var description: String {
        var parts = ["StripeError(\(kind.rawValue)", "status \(httpStatus)"]
        if let code { parts.append("code \(code)") }
        if let declineCode { parts.append("decline_code \(declineCode)") }
        if let param { parts.append("param \(param)") }
        if let requestID { parts.append("request \(requestID)") }
        if mayHaveSucceeded { parts.append("outcome unknown") }
        parts.append("attempts \(attempts))")
        return parts.joined(separator: ", ")
    }

    /// Decodes Stripe's error body `{"error":{"type","code","decline_code","param","message"}}`.
    static func from(status: Int, body: [UInt8], requestID: String?, attempts: Int) -> StripeError {
        struct Envelope: Decodable {
            struct Detail: Decodable {
                let type: String?
                let code: String?
                let declineCode: String?
                let param: String?
                let message: String?
            }
            let error: Detail
        }
        let detail = (try? StripeJSON.decoder.decode(Envelope.self, from: body))?.error
        // The same classification as stripe-python's `specific_v1_api_error`.
        let kind: Kind
        switch status {
        case 400, 404: kind = detail?.type == "idempotency_error" ? .idempotency : .invalidRequest
        case 401: kind = .authentication
        case 402: kind = .card
        case 403: kind = .permission
        case 429: kind = .rateLimited
        default: kind = .api
        }
        return StripeError(
            kind: kind, httpStatus: status, type: detail?.type, code: detail?.code,
            declineCode: detail?.declineCode, param: detail?.param,
            message: detail?.message ?? "Stripe answered HTTP \(status).", requestID: requestID,
            attempts: attempts)
    }

    static func deadlineExceeded(attempts: Int, mayHaveSucceeded: Bool) -> StripeError {
        var error = StripeError(
            kind: .timeout, httpStatus: 0, type: nil, code: nil, declineCode: nil, param: nil,
            message: "Stripe did not answer within the request's deadline.", requestID: nil,
            attempts: attempts)
        error.mayHaveSucceeded = mayHaveSucceeded
        return error
    }

    static func transport(_ error: HTTPClientError, attempts: Int) -> StripeError {
        StripeError(
            kind: error.kind == .timedOut ? .timeout : .connection, httpStatus: 0, type: nil, code: nil,
            declineCode: nil, param: nil, message: "Stripe could not be reached (\(error.kind.rawValue)).",
            requestID: nil, attempts: attempts)
    }
}
