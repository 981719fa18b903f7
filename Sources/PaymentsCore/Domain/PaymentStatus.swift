import Postgres

/// A payment's status (`payments.status`): Stripe's PaymentIntent statuses, plus `creating` (our
/// row exists, its intent may not yet), `failed` (final: its intent is cancelled) and
/// `refunded` (everything captured was refunded). docs/payments.md draws the machine.
enum PaymentStatus: String, CaseIterable, SQLDecodable, Encodable {
    case creating
    case requiresPaymentMethod = "requires_payment_method"
    case requiresConfirmation = "requires_confirmation"
    case requiresAction = "requires_action"
    case processing
    case requiresCapture = "requires_capture"
    case succeeded
    case canceled
    case failed
    case refunded

    /// Not authorised yet: the buyer may still pay, or our row lags behind Stripe's webhook.
    var isAwaitingAuthorisation: Bool {
        [.creating, .requiresPaymentMethod, .requiresConfirmation, .requiresAction, .processing].contains(self)
    }

    /// Authorised and waiting for its capture.
    var isCapturable: Bool { self == .requiresCapture }

    /// May still be cancelled: no money has moved yet.
    var isCancellable: Bool {
        [.creating, .requiresPaymentMethod, .requiresConfirmation, .requiresAction, .requiresCapture].contains(self)
    }

    /// Nothing will happen to it any more but refunds of what it captured.
    var isTerminal: Bool { [.canceled, .failed, .refunded].contains(self) }

    /// The statuses with `property`, as the text of a PostgreSQL `text[]` (for `= ANY(…)`).
    static func sqlArray(where property: (PaymentStatus) -> Bool) -> String {
        "{" + allCases.filter(property).map(\.rawValue).joined(separator: ",") + "}"
    }
}
