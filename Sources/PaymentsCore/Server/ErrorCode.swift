/// Every error code the app answers with: its HTTP status and a default message. `APIError`
/// is built only from these; docs/errors.md and the OpenAPI error schema are checked against
/// this list (ErrorCatalogueTests), so a new code cannot go undocumented.
public enum ErrorCode: String, CaseIterable, Sendable {
    case invalidJSON = "invalid_json"
    case invalidField = "invalid_field"
    case invalidInput = "invalid_input"
    case malformedBody = "malformed_body"
    case signatureInvalid = "signature_invalid"
    case invalidEvent = "invalid_event"
    case livemodeMismatch = "livemode_mismatch"
    case wrongWebhookEndpoint = "wrong_webhook_endpoint"
    case onboardingStateInvalid = "onboarding_state_invalid"
    case unauthenticated = "unauthenticated"
    case cardDeclined = "card_declined"
    case forbidden = "forbidden"
    case csrfFailed = "csrf_failed"
    case selfPurchase = "self_purchase"
    case profileDisabled = "profile_disabled"
    case notFound = "not_found"
    case listingNotFound = "listing_not_found"
    case milestoneNotFound = "milestone_not_found"
    case methodNotAllowed = "method_not_allowed"
    case idempotencyInProgress = "idempotency_in_progress"
    case listingUnavailable = "listing_unavailable"
    case sellerNotReady = "seller_not_ready"
    case notOnboarded = "not_onboarded"
    case amountTooLarge = "amount_too_large"
    case paymentInProgress = "payment_in_progress"
    case paymentCanceled = "payment_canceled"
    case paymentNotCapturable = "payment_not_capturable"
    case paymentNotCancellable = "payment_not_cancellable"
    case paymentNotCaptured = "payment_not_captured"
    case paymentNotDisputable = "payment_not_disputable"
    case paymentDisputed = "payment_disputed"
    case paymentActionInProgress = "payment_action_in_progress"
    case refundInProgress = "refund_in_progress"
    case nothingToRefund = "nothing_to_refund"
    case disputeAlreadyOpen = "dispute_already_open"
    case disputeNotOpen = "dispute_not_open"
    case disputeResolutionInProgress = "dispute_resolution_in_progress"
    case notAChargeback = "not_a_chargeback"
    case deliveryNotDead = "delivery_not_dead"
    case payloadExpired = "payload_expired"
    case milestoneNotFunded = "milestone_not_funded"
    case milestoneUnavailable = "milestone_unavailable"
    case jobHasOtherBuyer = "job_has_other_buyer"
    case payloadTooLarge = "payload_too_large"
    case unsupportedMediaType = "unsupported_media_type"
    case idempotencyKeyReused = "idempotency_key_reused"
    case refundExceedsCaptured = "refund_exceeds_captured"
    case rateLimited = "rate_limited"
    case internalError = "internal_error"
    case webhookProcessingFailed = "webhook_processing_failed"
    case stripeError = "stripe_error"
    case stripeUnavailable = "stripe_unavailable"
    case databaseUnavailable = "database_unavailable"
    case databaseBusy = "database_busy"
    case serverBusy = "server_busy"
    case migrationsPending = "migrations_pending"
    case schemaMismatch = "schema_mismatch"
    case stripeTimeout = "stripe_timeout"

    /// The HTTP status every answer with this code has.
    public var status: Int {
        switch self {
        case .invalidJSON, .invalidField, .invalidInput, .malformedBody, .signatureInvalid, .invalidEvent,
            .livemodeMismatch, .wrongWebhookEndpoint, .onboardingStateInvalid:
            return 400
        case .unauthenticated:
            return 401
        case .cardDeclined:
            return 402
        case .forbidden, .csrfFailed, .selfPurchase, .profileDisabled:
            return 403
        case .notFound, .listingNotFound, .milestoneNotFound:
            return 404
        case .methodNotAllowed:
            return 405
        case .idempotencyInProgress, .listingUnavailable, .sellerNotReady, .notOnboarded, .amountTooLarge,
            .paymentInProgress, .paymentCanceled, .paymentNotCapturable, .paymentNotCancellable, .paymentNotCaptured,
            .paymentNotDisputable, .paymentDisputed, .paymentActionInProgress, .refundInProgress, .nothingToRefund,
            .disputeAlreadyOpen, .disputeNotOpen, .disputeResolutionInProgress, .notAChargeback, .deliveryNotDead,
            .payloadExpired,
            .milestoneNotFunded, .milestoneUnavailable, .jobHasOtherBuyer, .refundExceedsCaptured:
            return 409
        case .payloadTooLarge:
            return 413
        case .unsupportedMediaType:
            return 415
        case .idempotencyKeyReused:
            return 422
        case .rateLimited:
            return 429
        case .internalError, .webhookProcessingFailed:
            return 500
        case .stripeError, .stripeUnavailable:
            return 502
        case .databaseUnavailable, .databaseBusy, .serverBusy, .migrationsPending, .schemaMismatch:
            return 503
        case .stripeTimeout:
            return 504
        }
    }

    /// What the message says when the caller has nothing more specific to say.
    public var defaultMessage: String {
        switch self {
        case .invalidJSON: return "The request body is not valid JSON."
        case .invalidField: return "A field of the request is missing or malformed."
        case .invalidInput: return "A value in the request cannot be stored (for example, it contains a NUL character)."
        case .malformedBody: return "The request body is shorter than its Content-Length."
        case .signatureInvalid: return "The Stripe-Signature header is invalid."
        case .invalidEvent: return "The body is not a Stripe event."
        case .livemodeMismatch: return "The event's mode is not the mode of this service's Stripe key."
        case .wrongWebhookEndpoint: return "The event belongs to a connected account: send it to the Connect endpoint."
        case .onboardingStateInvalid:
            return "This onboarding link is no longer valid; start again from the marketplace."
        case .unauthenticated: return "Authentication is required."
        case .cardDeclined: return "The card was declined."
        case .forbidden: return "This action is not available to your role."
        case .csrfFailed: return "Cookie-authenticated requests must send X-CSRF-Token matching the CSRF cookie."
        case .selfPurchase: return "You cannot pay for your own listing."
        case .profileDisabled: return "This profile has been disabled by an operator."
        case .notFound: return "No such resource."
        case .listingNotFound: return "No such listing."
        case .milestoneNotFound: return "No such milestone."
        case .methodNotAllowed: return "Method not allowed."
        case .idempotencyInProgress:
            return "A request with this Idempotency-Key is still being processed; retry shortly."
        case .listingUnavailable: return "This listing is not available."
        case .sellerNotReady: return "The seller cannot accept payments yet."
        case .notOnboarded: return "Finish Connect onboarding first."
        case .amountTooLarge: return "The price is more than Stripe can charge."
        case .paymentInProgress: return "This payment is being created; retry shortly."
        case .paymentCanceled: return "This payment was cancelled while it was being created."
        case .paymentNotCapturable: return "Only an authorised payment can be captured."
        case .paymentNotCancellable: return "This payment can no longer be cancelled."
        case .paymentNotCaptured: return "Only captured money can be refunded."
        case .paymentNotDisputable: return "Only an authorised or paid payment can be disputed."
        case .paymentDisputed: return "A dispute is open on this payment."
        case .paymentActionInProgress: return "Another action on this payment is in progress; retry shortly."
        case .refundInProgress: return "A refund of this payment is still being settled with Stripe; retry shortly."
        case .nothingToRefund: return "Everything captured has been refunded already."
        case .disputeAlreadyOpen: return "A dispute is already open on this payment."
        case .disputeNotOpen: return "Only an open platform dispute can be resolved."
        case .disputeResolutionInProgress: return "This dispute is being resolved; retry shortly."
        case .notAChargeback: return "Evidence goes to Stripe for chargebacks only."
        case .deliveryNotDead: return "Only a dead notification delivery can be retried."
        case .payloadExpired:
            return "This event's payload was dropped by the retention policy; it cannot be applied again."
        case .milestoneNotFunded: return "Only a funded milestone can be released."
        case .milestoneUnavailable: return "This milestone cannot be funded now."
        case .jobHasOtherBuyer: return "Another buyer is funding this job."
        case .payloadTooLarge: return "The request body is too large."
        case .unsupportedMediaType: return "The request body must be sent as Content-Type: application/json."
        case .idempotencyKeyReused: return "This Idempotency-Key was already used with a different request."
        case .refundExceedsCaptured: return "The refund is more than can still be refunded on this payment."
        case .rateLimited: return "Too many requests; retry later."
        case .internalError: return "An unexpected error occurred."
        case .webhookProcessingFailed: return "The event was stored and will be retried."
        case .stripeError: return "The payment provider rejected the request."
        case .stripeUnavailable: return "The payment provider is unavailable; retry shortly."
        case .databaseUnavailable: return "The database is unavailable; retry shortly."
        case .databaseBusy: return "A conflicting change was in progress; retry the request."
        case .serverBusy: return "The service is at capacity; retry shortly."
        case .migrationsPending: return "Migrations are not applied yet; run `payments migrate`."
        case .schemaMismatch: return "The database schema does not match this release."
        case .stripeTimeout: return "The payment provider did not answer in time; retry with the same Idempotency-Key."
        }
    }
}
