import Postgres
import Stripe

/// The four `payment_intent.*` events, whose effect — the payment locked, the guarded
/// transition, the audit row and the notifications — is defined once, in SQL
/// (`webhook_apply_payment_intent`, sql/0018), so that a new delivery is one statement
/// (`webhook_receive_payment_intent`: stored, applied and marked in one round trip) and a stored
/// event applied again (sweeper, replay, parked events) has exactly the same effect.
enum PaymentIntentEvents {
    static let types: Set<String> = [
        "payment_intent.amount_capturable_updated", "payment_intent.succeeded", "payment_intent.payment_failed",
        "payment_intent.canceled",
    ]

    /// The effect's arguments after the event's id, type and `created`: the intent, its creation
    /// (the capture deadline's estimate), the amount the transition records, the charge, the
    /// failure, and the audit context. Its text is the same for every event (a prepared statement).
    static func effectArguments(_ intent: PaymentIntent, type: String, audit: AuditContext) -> SQLQuery {
        let amount: Int64? =
            switch type {
            case "payment_intent.amount_capturable_updated": intent.amountCapturable ?? intent.amount
            case "payment_intent.succeeded": intent.amountReceived ?? intent.amount
            default: nil
            }
        let charge = type == "payment_intent.succeeded" ? intent.latestCharge?.id : nil
        let failure = type == "payment_intent.payment_failed" ? intent.lastPaymentError : nil
        return """
            \(intent.id), \(intent.created), \(amount), \(charge), \(failure?.declineCode ?? failure?.code),
            \(failure?.message), \(audit.actorRole), \(audit.requestID), \(audit.ip), \(audit.userAgent)
            """
    }

    /// What the effect returned: its outcome (`refused`: the event's `account` is not the one that
    /// owns the payment), and the intent to cancel once committed, on `account`.
    static func decode(_ row: Row, intentID: String, account: String?) throws -> (EffectOutcome, IntentCancellation?) {
        let outcome: String = try row.decode("outcome")
        let cancel: String? = try row.decodeIfPresent("cancel_payment")
        let effect: EffectOutcome =
            switch outcome {
            case EffectOutcome.parked.rawValue: .parked
            case EffectOutcome.refused.rawValue: .refused
            default: .processed
            }
        return (effect, cancel.map { IntentCancellation(paymentID: $0, intentID: intentID, account: account) })
    }
}
