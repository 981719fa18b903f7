import Foundation
import Postgres
import Stripe

/// The error funnel: every thrown error is classified once and becomes the one envelope.
extension Application {
    /// The one place an error becomes the envelope `{"error":{"code","message","request_id"}}`.
    static func envelope(_ error: APIError, requestID: String) -> Response {
        struct Body: Encodable {
            struct Detail: Encodable {
                let code: String
                let message: String
                let request_id: String
            }
            let error: Detail
        }
        var response = Response.json(
            Body(error: .init(code: error.code, message: error.message, request_id: requestID)), status: error.status)
        response.headers.append(contentsOf: error.headers)
        return response
    }

    /// Classifies any thrown error; unknown errors are logged (type only) and become 500.
    func mapError(_ error: any Error, requestID: String) -> APIError {
        switch error {
        case let apiError as APIError:
            return apiError
        case let stripeError as StripeError:
            shared.logger.error(
                "stripe call failed",
                [
                    ("request_id", .string(requestID)), ("error", .string(stripeError.description)),
                ])
            return .from(stripeError)
        case let databaseError as DatabaseError:
            switch databaseError.kind {
            case .poolExhausted:
                shared.metrics.increment("payments_database_pool_timeouts_total")
                return .databasePoolExhausted
            case .unavailable:
                shared.metrics.increment("payments_database_unavailable_total")
                shared.logger.error("database unavailable", [("request_id", .string(requestID))])
                return .databaseUnavailable
            case .serializationFailure, .deadlockDetected, .lockNotAvailable, .queryCanceled:
                return .databaseBusy
            case .invalidData:
                shared.logger.warning(
                    "database refused a value",
                    [
                        ("request_id", .string(requestID)), ("error", .string(databaseError.description)),
                    ])
                return .invalidInput
            default:
                shared.logger.error(
                    "database error",
                    [
                        ("request_id", .string(requestID)), ("error", .string(databaseError.description)),
                    ])
                return .internalError
            }
        case let rowError as RowDecodingError:
            // A query and the code reading it disagree: our bug, named in the log (columns only).
            shared.logger.error(
                "row decoding failed", [("request_id", .string(requestID)), ("error", .string(rowError.description))])
            return .internalError
        default:
            shared.logger.error(
                "unhandled error",
                [
                    ("request_id", .string(requestID)), ("error_type", .string(String(describing: type(of: error)))),
                ])
            return .internalError
        }
    }
}
