import Foundation
import Postgres
import Stripe

/// What applying an event did.
enum EffectOutcome: String, CaseIterable {
    /// The effect ran (or was already in place: a repeated or stale event changes nothing).
    case processed
    /// The object it concerns is not in our database yet; retried when it appears.
    case parked
    /// A type (or endpoint) we do not act on.
    case ignored
    /// Handled type, but the event's `account` contradicts what it is about (a Connect
    /// `account.updated` whose `account` is not its object's id; a payment's event from another
    /// account than the one that owns the payment): stored `ignored`, the reason in `last_error`.
    case refused
}

/// An event whose payload cannot be applied (malformed object): recorded as `failed`.
struct WebhookEffectError: Error, CustomStringConvertible {
    let description: String
}

/// A Stripe call an event showed is needed, made after the event's transaction commits, best
/// effort and under a deterministic key (a repeat is harmless): webhook deliveries never wait on
/// Stripe.
enum StripeFollowUp: Equatable {
    /// Cancel an authorisation we gave up on.
    case cancel(IntentCancellation)
    /// Set a connected account's payout delay back to `PAYOUT_DELAY_DAYS`.
    case payoutDelay(PayoutDelayFix)
}

/// A connected account whose `account.updated` showed another payout delay than the configured
/// one: it is set again (`settings.payouts.schedule.delay_days`), under a key naming the event.
struct PayoutDelayFix: Equatable {
    let account: String
    let delayDays: Int
    let eventID: String
}

/// An authorisation Stripe holds for a payment that will not go ahead: cancelled at Stripe
/// after the event's transaction commits (key `payment:{id}:cancel`), on the account that owns
/// the intent (the event's `account`, which the payment's own matched).
struct IntentCancellation: Equatable {
    let paymentID: String
    let intentID: String
    let account: String?
}

/// Applies one Stripe event to our tables, inside the caller's transaction, through the guarded
/// transitions of sql/0002. Notifications and audit rows are written only when a row really
/// changed, so duplicates and stale events leave no trace. Stripe calls the event makes
/// necessary are collected in `followUps` for after the commit.
struct WebhookEffects {
    let event: Event
    let payload: [UInt8]
    let endpoint: WebhookEndpoint
    let connection: Connection
    let audit: AuditContext
    /// The configured payout delay (`PAYOUT_DELAY_DAYS`) that `account.updated` checks; nil: not checked.
    let payoutDelayDays: Int?
    /// Stripe calls to make once the transaction has committed.
    var followUps: [StripeFollowUp] = []

    init(
        event: Event, payload: [UInt8], endpoint: WebhookEndpoint, connection: Connection, audit: AuditContext,
        payoutDelayDays: Int?
    ) {
        self.payoutDelayDays = payoutDelayDays
        self.event = event
        self.payload = payload
        self.endpoint = endpoint
        self.connection = connection
        self.audit = audit
    }

    /// Event types acted on, per endpoint (`WebhookEndpoint.handledEventTypes`, the one list);
    /// everything else is stored as `ignored`.
    static func isHandled(_ type: String, on endpoint: WebhookEndpoint) -> Bool {
        endpoint.handledEventTypes.contains(type)
    }

    mutating func apply() throws -> EffectOutcome {
        guard Self.isHandled(event.type, on: endpoint) else { return .ignored }
        if event.type.hasPrefix("charge."), try isChargeEventFromOtherAccount() { return .refused }
        switch event.type {
        case let type where PaymentIntentEvents.types.contains(type):
            // The effect checks the event's account itself, on the payment row it locks.
            let intent = try object(PaymentIntent.self)
            guard
                let row = try connection.query(
                    """
                    SELECT outcome, cancel_payment::text AS cancel_payment FROM webhook_apply_payment_intent(
                        \(event.id), \(event.type), \(event.created), \(event.account),
                        \(sql: PaymentIntentEvents.effectArguments(intent, type: type, audit: audit)))
                    """
                ).first
            else { throw WebhookEffectError(description: "webhook_apply_payment_intent returned no row") }
            let (outcome, cancellation) = try PaymentIntentEvents.decode(
                row, intentID: intent.id, account: event.account)
            if let cancellation { followUps.append(.cancel(cancellation)) }
            return outcome
        case "charge.succeeded":
            return try chargeAuthorized(try object(Charge.self))
        case "charge.refunded":
            return try chargeRefunded(try object(Charge.self))
        case "charge.refund.updated":
            return try refundUpdated(try object(Refund.self))
        case let type where type.hasPrefix("charge.dispute."):
            return try disputeChanged(try object(Dispute.self))
        case "transfer.created", "transfer.reversed":
            return try transferChanged(try object(Transfer.self))
        case "payout.paid", "payout.failed":
            return try payoutChanged(try object(Payout.self))
        case "account.updated":
            return try accountUpdated(try object(Account.self), followUps: &followUps)
        case "account.application.deauthorized":
            return try accountDeauthorized()
        default:
            return .ignored
        }
    }

    // MARK: Payments

    private enum Recipients {
        case buyer(NotificationKind)
        case seller(NotificationKind)
        case both(NotificationKind)
    }

    /// Runs a guarded transition in one round trip: the payment row is locked first (the
    /// lateral call references it, so it runs after), then the transition function. No row:
    /// the payment is unknown (parked); a row with no change: stale or repeated (processed).
    private func transition(
        _ intentID: String, operation: String, notify: Recipients, call: SQLQuery,
        changed onChange: (Row) throws -> Void = { _ in }
    ) throws -> EffectOutcome {
        guard
            let row = try connection.query(
                """
                SELECT c.*, b.status AS old_status, (c.id IS NOT NULL) AS changed
                FROM (SELECT stripe_payment_intent_id AS intent, status FROM payments
                      WHERE stripe_payment_intent_id = \(intentID) FOR UPDATE) b
                LEFT JOIN LATERAL \(sql: call) c ON true
                """
            ).first
        else { return .parked }
        guard try row.decode("changed", as: Bool.self) else { return .processed }
        try onChange(row)
        try record(payment: row, operation: operation, oldStatus: try row.decode("old_status"))
        try notifyParties(notify, payment: row)
        return .processed
    }

    /// An uncaptured card authorisation (`charge.succeeded`, `captured: false`) says exactly
    /// until when it can be captured; the payment keeps that instead of the 7-day estimate, and a
    /// held listing stays reserved until then.
    private func chargeAuthorized(_ charge: Charge) throws -> EffectOutcome {
        guard let intentID = charge.paymentIntent, charge.captured == false,
            let captureBefore = charge.paymentMethodDetails?.card?.captureBefore
        else { return .ignored }
        guard
            let payment = try connection.query(
                """
                UPDATE payments SET capture_before = to_timestamp(\(captureBefore))
                WHERE stripe_payment_intent_id = \(intentID)
                  AND status NOT IN ('succeeded', 'canceled', 'failed', 'refunded')
                RETURNING listing_id, kind, status
                """
            ).first
        else {
            let known = try connection.query(
                "SELECT 1 FROM payments WHERE stripe_payment_intent_id = \(intentID)"
            ).first
            return known == nil ? .parked : .processed
        }
        if try payment.decode("kind", as: PaymentKind.self) == .purchase,
            try payment.decode("status", as: PaymentStatus.self) == .requiresCapture
        {
            try connection.query(
                """
                UPDATE listings SET reserved_until = GREATEST(reserved_until, to_timestamp(\(captureBefore)))
                WHERE id = \(try payment.decode("listing_id", as: String.self))::uuid AND status = 'payment_pending'
                """)
        }
        return .processed
    }

    private func chargeRefunded(_ charge: Charge) throws -> EffectOutcome {
        guard let intentID = charge.paymentIntent else { return .ignored }
        let captured = charge.amountCaptured
        if captured > 0 {
            // The refund implies the capture; apply it first in case its event has not arrived yet.
            let outcome = try transition(
                intentID, operation: "payment.succeeded", notify: .both(.paymentSucceeded),
                call: """
                    payment_complete_atomic(b.intent, \(event.created), \(captured), \(charge.id))
                    """)
            if outcome == .parked { return .parked }
        }
        return try transition(
            intentID, operation: "payment.refunded", notify: .both(.paymentRefunded),
            call: """
                payment_refund_atomic(b.intent, \(event.created), \(captured), \(charge.amountRefunded))
                """)
    }

    // MARK: Helpers

    /// Whether a charge's event (the charge, its refunds, its disputes) comes from another
    /// account than the one that owns its payment: the rule of sql/0020
    /// (`payment_event_from_other_account`; the payment_intent events' effect applies it itself),
    /// so that one connected account's events can never move another's payment. An event whose
    /// payment is not known yet passes here; it is parked, and checked again when it is applied.
    private func isChargeEventFromOtherAccount() throws -> Bool {
        struct Link: Decodable { let paymentIntent: String? }
        guard let intentID = (try? Event.object(Link.self, from: payload))?.paymentIntent else { return false }
        return try connection.query(
            "SELECT payment_event_from_other_account(\(intentID), \(event.account)) AS other"
        ).first?.decode("other", as: Bool.self) ?? false
    }

    var eventMetadata: [String: JSONValue] {
        ["event_id": .string(event.id), "event_type": .string(event.type)]
    }

    func object<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try Event.object(type, from: payload)
        } catch {
            throw WebhookEffectError(description: "data.object of \(event.type) is not a valid \(type)")
        }
    }

    /// `payment` is the changed `payments` row a transition function returned.
    private func record(payment: Row, operation: String, oldStatus: PaymentStatus) throws {
        try AuditLog.record(
            AuditEntry(
                operation: operation, entityType: "payment", entityID: try payment.decode("id"),
                oldValues: ["status": .string(oldStatus.rawValue)],
                newValues: [
                    "status": .string(try payment.decode("status", as: PaymentStatus.self).rawValue),
                    "amount_received": .int(try payment.decode("amount_received")),
                    "amount_refunded": .int(try payment.decode("amount_refunded")),
                ],
                metadata: eventMetadata), context: audit, on: connection)
    }

    private func notifyParties(_ audience: Recipients, payment: Row) throws {
        let payload: [String: JSONValue] = [
            "payment_id": .string(try payment.decode("id")),
            "status": .string(try payment.decode("status", as: PaymentStatus.self).rawValue),
            "amount_cents": .int(try payment.decode("amount_cents")),
        ]
        let buyer: String = try payment.decode("buyer_id")
        let seller: String = try payment.decode("seller_id")
        let recipients: [String]
        let kind: NotificationKind
        switch audience {
        case .buyer(let name): (recipients, kind) = ([buyer], name)
        case .seller(let name): (recipients, kind) = ([seller], name)
        case .both(let name): (recipients, kind) = ([buyer, seller], name)
        }
        try Notifier.notify(recipients, kind: kind, payload: payload, on: connection)
    }
}
